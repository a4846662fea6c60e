"""Model Garden's vision code traces unconverted by AutoGraph, to the same
graph; Orbit's loops stay converted."""

import collections

import tensorflow as tf
from tensorflow.python.autograph.core import config as autograph_config
from tensorflow.python.autograph.impl import conversion

from official.vision.modeling.layers import nn_blocks
from official.vision.ops import preprocess_ops
from orbit.utils import loop_fns
from trainer.training import autograph_rules
from trainer.training import experiments  # pylint: disable=unused-import  (applies the rules)


def test_vision_modules_are_skipped_and_orbit_loops_are_not():
  assert conversion.is_allowlisted(preprocess_ops.resize_and_crop_image)
  assert conversion.is_allowlisted(nn_blocks.InvertedBottleneckBlock.call)
  assert not conversion.is_allowlisted(loop_fns.create_tf_while_loop_fn)
  rules = autograph_config.CONVERSION_RULES
  autograph_rules.skip_model_garden_vision()  # Again: nothing added.
  assert autograph_config.CONVERSION_RULES == rules


def _op_types(function, *args):
  graph = tf.function(function).get_concrete_function(*args).graph
  return collections.Counter(op.type for op in graph.get_operations())


def test_unconverted_code_traces_to_the_same_graph(monkeypatch):
  """An input pipeline op and a searched block, traced with and without
  the rules: the same ops."""
  block = nn_blocks.InvertedBottleneckBlock(
      in_filters=8, out_filters=8, expand_ratio=3, strides=1, se_ratio=0.25)
  spec = tf.TensorSpec([2, 16, 16, 8])

  def preprocess(image):
    return preprocess_ops.resize_and_crop_image(
        image, [32, 32], [32, 32], aug_scale_min=0.5, aug_scale_max=2.0)

  def traced():
    return (_op_types(preprocess, tf.TensorSpec([24, 40, 3])),
            _op_types(lambda x: block(x, training=True), spec))

  unconverted = traced()
  monkeypatch.setattr(autograph_config, 'CONVERSION_RULES', tuple(
      rule for rule in autograph_config.CONVERSION_RULES
      if not str(rule).endswith(autograph_rules.UNCONVERTED_MODULES)))
  assert not conversion.is_allowlisted(preprocess_ops.resize_and_crop_image)
  assert traced() == unconverted
