"""NASNet space (Zoph et al. 2018): its decisions, NASNet-A as a DNA of it
with tf_keras.applications.NASNetMobile's parameter count, every operation
building, ScheduledDropPath's schedule, and NASNet as a RetinaNet
backbone."""

import math
import random

import numpy as np
import pyglove as pg
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.core import task_factory
import configs
import search_spaces
from trainer.training import architectures
from trainer.training import experiments
from trainer.training.architectures import nasnet

MOBILE_PARAMS = 5_326_716  # tf_keras.applications.NASNetMobile(weights=None)
# NASNet-A built with the paper's rule (concatenate only the states no block
# takes): the normal cells drop state 1 (the cell before last, 44 to 176
# channels) from their output and the reduction cells drop state 3 (block
# 1's output), so every next cell's 1x1 convs and projections read fewer
# channels.
PAPER_RULE_MOBILE_PARAMS = 4_809_254


def _space():
  return search_spaces.get_search_space('nasnet')


def test_space_has_two_cells_of_five_blocks():
  spec = search_spaces.dna_spec(_space())
  assert len(spec.decision_points) == 2 * 5 * 5
  # Per block b: inputs from 2 + b states, 13 ops each, 2 combinations.
  per_cell = math.prod((2 + b) ** 2 * 13 ** 2 * 2 for b in range(5))
  assert spec.space_size == per_cell ** 2
  assert len(search_spaces.NASNET_OPS) == 13


@pytest.mark.parametrize('seed', range(3))
def test_samples_round_trip_and_build_every_level(seed):
  space = _space()
  spec = search_spaces.dna_spec(space)
  dna = pg.random_dna(spec, random.Random(seed))
  params = search_spaces.nas_params_from_dna(dna)
  assert search_spaces.dna_from_nas_params(space, params) == dna
  arch = search_spaces.materialize(space, dna)
  backbone = nasnet.NasNet(pg.to_json_str(arch), num_cells=1, num_filters=8,
                           stem_filters=8)
  outputs = backbone(tf.zeros([2, 64, 64, 3]))
  assert {l: o.shape[1] for l, o in outputs.items()} == {
      '1': 32, '2': 16, '3': 8, '4': 4, '5': 2}
  tf_keras.backend.clear_session()


def test_nasnet_a_is_a_dna_of_the_space():
  space = _space()
  dna = pg.template(space).encode(search_spaces.nasnet_a_spec())
  assert search_spaces.materialize(space, dna) == search_spaces.nasnet_a_spec()
  dna.use_spec(search_spaces.dna_spec(space))
  params = search_spaces.nas_params_from_dna(dna)
  assert '"normal_cell.blocks[0].left_op": "11/13 (\'sep_conv_5x5\')"' in params


def _mobile(spec):
  """At NASNet-A Mobile's setting: 224 px, 1000 classes, 4 @ 1056."""
  params = exp_factory.get_exp_config('nas_image_classification')
  params.task.model.num_classes = 1000
  params.task.model.input_size = [224, 224, 3]
  architectures.apply_architecture(params, spec)
  backbone = params.task.model.backbone.tunable_nasnet
  assert (backbone.num_cells, backbone.num_filters * 24) == (4, 1056)
  return task_factory.get_task(params.task).build_model()


def test_nasnet_a_mobile_has_the_parameters_of_tf_keras_applications():
  assert tf_keras.applications.NASNetMobile(
      weights=None).count_params() == MOBILE_PARAMS
  tf_keras.backend.clear_session()
  released = _mobile(search_spaces.nasnet_a_spec(released_outputs=True))
  assert released.count_params() == MOBILE_PARAMS
  assert released.backbone.output_specs['5'][1:] == (7, 7, 1056)
  tf_keras.backend.clear_session()
  # The same DNA under the paper's concatenation rule: its own count.
  paper = _mobile(search_spaces.nasnet_a_spec())
  assert paper.count_params() == PAPER_RULE_MOBILE_PARAMS
  assert paper.backbone.output_specs['5'][-1] == 5 * 176
  tf_keras.backend.clear_session()


def _cell(ops, combination, chained):
  """A cell of blocks applying `ops` (pairs): to earlier blocks' outputs
  (`chained`: stride 1 in any cell, inputs of another width after a
  concatenation) or to the cell's inputs (strided in a reduction cell)."""
  return search_spaces.NasNetCellSpec(blocks=[
      search_spaces.NasNetBlockSpec(
          left_input=b if chained else 0, left_op=left,
          right_input=b + 1 if chained else 1, right_op=right,
          combination=combination)
      for b, (left, right) in enumerate(ops)])


@pytest.mark.parametrize('first_op, combination', [(0, 'add'),
                                                   (3, 'concat')])
def test_every_operation_builds_at_both_strides(first_op, combination):
  """Ten of the 13 ops (the cases together: all of them) in a normal cell
  and, on the cell inputs, strided in a reduction cell; every weight gets a
  gradient, and the network is rebuilt from its config."""
  ops = search_spaces.NASNET_OPS[first_op:first_op + 10]
  pairs = list(zip(ops[0::2], ops[1::2]))
  spec = search_spaces.NasNetSpec(
      normal_cell=_cell(pairs, combination, chained=True),
      reduction_cell=_cell(pairs, combination, chained=False))
  backbone = nasnet.NasNet(pg.to_json_str(spec), num_cells=1, num_filters=8,
                           stem_filters=8)
  with tf.GradientTape() as tape:  # Eager: faster than tracing here.
    outputs = backbone(tf.random.normal([2, 32, 32, 3]), training=True)
    loss = sum(tf.reduce_mean(o ** 2) for o in outputs.values())
  assert outputs['5'].shape[1:3] == (1, 1)
  gradients = tape.gradient(loss, backbone.trainable_weights)
  assert all(g is not None and np.isfinite(g.numpy()).all() for g in gradients)
  rebuilt = nasnet.NasNet.from_config(backbone.get_config())
  assert rebuilt.count_params() == backbone.count_params()
  tf_keras.backend.clear_session()


def test_a_block_taking_a_later_state_is_refused():
  with pytest.raises(ValueError, match='block 0 of a NASNet cell takes hidden '
                     'state 2; it can take 0 to 1'):
    search_spaces.NasNetCellSpec(blocks=[search_spaces.NasNetBlockSpec(
        left_input=2, left_op='identity', right_input=0, right_op='identity')])


def test_scheduled_drop_path_rises_linearly_and_never_drops_in_evaluation():
  layer = nasnet.ScheduledDropPath(drop_rate=0.4, total_steps=100)
  x = tf.ones([4000, 1, 1, 1])
  layer(x)  # builds the step counter
  rates = {}
  for step in (0, 50, 100, 200):
    layer.step.assign(step)
    rates[step] = float(layer.drop_rate())
    kept = layer(x, training=True).numpy().ravel()
    dropped = float(np.mean(kept == 0))
    assert dropped == pytest.approx(rates[step], abs=0.03), step
    # Kept paths are scaled so that the mean is unchanged.
    np.testing.assert_allclose(kept[kept != 0], 1 / (1 - rates[step]),
                               rtol=1e-6)
    assert int(layer.step) == step + 1  # One training call, one step.
  assert rates == pytest.approx({0: 0.0, 50: 0.2, 100: 0.4, 200: 0.4})
  # Evaluation: the input unchanged at any step, and the schedule stays.
  assert np.array_equal(layer(x, training=False).numpy(), x.numpy())
  assert np.array_equal(layer(x).numpy(), x.numpy())
  assert int(layer.step) == 201


def test_drop_path_grows_with_cell_depth_and_follows_the_trainers_steps():
  """apply_nasnet spans the schedule over trainer.train_steps; each op but
  identity gets a drop path whose final rate scales with its cell's depth."""
  params = exp_factory.get_exp_config('nas_image_classification')
  params.trainer.train_steps = 321
  params.task.model.backbone.tunable_nasnet.drop_path_rate = 0.3
  architectures.apply_architecture(params, search_spaces.nasnet_a_spec())
  config = params.task.model.backbone.tunable_nasnet
  assert config.drop_path_steps == 321
  backbone = nasnet.NasNet(config.block_specs_json, num_cells=1,
                           num_filters=8, stem_filters=8,
                           drop_path_rate=0.3, drop_path_steps=321)
  layers = [l for l in backbone.layers
            if isinstance(l, nasnet.ScheduledDropPath)]
  finals = sorted({l.get_config()['drop_rate'] for l in layers})
  # 2 stem cells, 3 normal cells, 2 reductions: cell k ends at 0.3 * k / 7.
  assert finals == pytest.approx([0.3 * k / 7 for k in range(1, 8)])
  assert {l.get_config()['total_steps'] for l in layers} == {321}
  # NASNet-A: 8 non-identity ops per normal cell, 9 per reduction cell.
  assert len(layers) == 3 * 8 + 4 * 9
  tf_keras.backend.clear_session()


def test_nasnet_is_a_retinanet_backbone_under_fpn():
  """The shipped detection config: NASNet-A's levels 3-5 feed the FPN and
  the head predicts at each."""
  params = experiments.load_experiment_config(
      'nas_retinanet', configs.resolve('nasnet_detection_search_cpu'))
  architectures.apply_architecture(params, search_spaces.nasnet_a_spec())
  model = task_factory.get_task(params.task).build_model()
  assert isinstance(model.backbone, nasnet.NasNet)
  outputs = model(tf.zeros([1, 64, 64, 3]), training=True)
  assert sorted(outputs['cls_outputs']) == ['3', '4', '5']
  assert outputs['cls_outputs']['5'].shape[1:3] == (2, 2)
  tf_keras.backend.clear_session()
