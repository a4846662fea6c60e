"""Policies built from materialised augmentation specs run as the platform's."""

import json
import os

import numpy as np
import pyglove as pg
import pytest
import tensorflow as tf

from augment import ops
from augment import policies
import search_spaces
from tests.conftest import FIXTURES

SIZE = 64
OPTIONS = ops.AugmentOptions(translate_const=16.0, translate_bbox_const=6.0,
                             cutout_const=8.0)
BOXES = [[0.1, 0.1, 0.5, 0.6], [0.55, 0.4, 0.95, 0.9]]


def _image(seed=0):
  return tf.constant(np.random.RandomState(seed).randint(
      0, 256, (SIZE, SIZE, 3)).astype(np.uint8))


def _mask():
  mask = np.zeros((SIZE, SIZE, 1), np.uint8)
  mask[8:40, 10:50] = 1
  mask[44:60, 20:60] = 2
  return tf.constant(mask)


def _seed(values):
  return tf.constant(values, tf.int32)


def _fixture_specs(space_name):
  with open(os.path.join(FIXTURES, f'{space_name}.json')) as f:
    samples = json.load(f)['nas_params_str_samples']
  space = search_spaces.get_search_space(space_name)
  return [search_spaces.materialize(
      space, search_spaces.dna_from_nas_params(space, params))
          for params in samples]


def _autoaugment(sub_policy, task='detection'):
  """A spec whose 5 sub-policies are all `sub_policy` [(op, m, p), ...]."""
  op_indices, magnitudes, probs = (
      [list(values) for _ in range(search_spaces.AUTOAUGMENT_NUM_SUB_POLICIES)]
      for values in zip(*sub_policy))
  return [op_indices, magnitudes, probs]


@pytest.mark.parametrize('space_name', [
    'randaugment_detection', 'randaugment_segmentation',
    'autoaugment_detection', 'autoaugment_segmentation'])
def test_every_fixture_spec_runs_as_a_policy(space_name):
  task = space_name.split('_')[1]
  image = _image()
  for number, spec in enumerate(_fixture_specs(space_name)):
    policy = policies.make_policy(spec, task, OPTIONS)
    for seed in ([number, 0], [number, 1]):
      if task == 'detection':
        out_image, boxes, mask = policy(image, tf.constant(BOXES),
                                        seed=_seed(seed))
        assert mask is None and boxes.shape == (2, 4)
        assert np.all((boxes.numpy() >= 0) & (boxes.numpy() <= 1))
      else:
        out_image, boxes, mask = policy(image, mask=_mask(), seed=_seed(seed))
        assert boxes is None
        assert mask.dtype == tf.uint8 and mask.shape == (SIZE, SIZE, 1)
        assert set(np.unique(mask.numpy())) <= {0, 1, 2, 255}
      assert out_image.dtype == tf.uint8 and out_image.shape == (SIZE, SIZE, 3)


def test_shapes_and_dtypes_are_stable_in_tf_function_and_tf_data():
  policy = policies.make_policy(
      search_spaces.RandAugmentSpec(num_ops=2, magnitude=10, task='detection'),
      'detection', OPTIONS)
  traced = tf.function(policy.distort_with_boxes).get_concrete_function(
      tf.TensorSpec([SIZE, SIZE, 3], tf.uint8), tf.TensorSpec([None, 4]))
  image_spec, boxes_spec = traced.structured_outputs
  assert image_spec.shape == (SIZE, SIZE, 3) and image_spec.dtype == tf.uint8
  assert boxes_spec.shape.as_list() == [None, 4]

  dataset = tf.data.Dataset.from_generator(
      lambda: ((_image(i), np.reshape(b, [-1, 4]).astype(np.float32))
               for i, b in enumerate([BOXES, [], BOXES[:1]])),
      output_signature=(tf.TensorSpec([SIZE, SIZE, 3], tf.uint8),
                        tf.TensorSpec([None, 4], tf.float32)))
  augmented = dataset.map(policy.distort_with_boxes)
  assert augmented.element_spec == dataset.element_spec
  counts = [int(b.shape[0]) for _, b in augmented]
  assert counts == [2, 0, 1]

  segmentation = policies.make_policy(
      _fixture_specs('autoaugment_segmentation')[0], 'segmentation', OPTIONS)
  masks = tf.data.Dataset.from_tensors((_image(), _mask())).map(
      lambda image, mask: segmentation(image, mask=mask)[::2])
  assert masks.element_spec == (tf.TensorSpec([SIZE, SIZE, 3], tf.uint8),
                                tf.TensorSpec([SIZE, SIZE, 1], tf.uint8))


def test_same_seed_same_output_and_different_seeds_differ():
  spec = search_spaces.RandAugmentSpec(num_ops=2, magnitude=10,
                                       task='segmentation')
  policy = tf.function(policies.make_policy(spec, 'segmentation', OPTIONS))
  image, mask = _image(), _mask()
  results = [policy(image, mask=mask, seed=_seed([7, seed]))
             for seed in (1, 1, 2, 3)]
  for got, want in zip(results[0], results[1]):
    if want is not None:
      np.testing.assert_array_equal(got.numpy(), want.numpy())
  distinct = {results[i][0].numpy().tobytes() for i in (0, 2, 3)}
  assert len(distinct) == 3


def test_unseeded_policy_follows_the_global_seed():
  policy = policies.make_policy(_autoaugment([(9, 10, 1.0), (3, 10, 1.0)]),
                                'detection', OPTIONS)
  outputs = []
  for _ in range(2):
    tf.random.set_seed(11)
    outputs.append(policy.distort(_image()).numpy())
  np.testing.assert_array_equal(outputs[0], outputs[1])


def test_autoaugment_reads_op_k_of_sub_policy_s_across_the_three_lists():
  solarize = ops.AUTOAUGMENT_OPS['detection'].index('Solarize')
  rotate = ops.AUTOAUGMENT_OPS['detection'].index('Rotate')
  # Solarize at m=5 always, Rotate never.
  spec = _autoaugment([(solarize, 5, 1.0), (rotate, 10, 0.0)])
  policy = policies.make_policy(spec, 'detection', OPTIONS)
  image = _image()
  out_image, boxes, _ = policy(image, tf.constant(BOXES), seed=_seed([1, 2]))
  original = image.numpy()
  np.testing.assert_array_equal(
      out_image.numpy(), np.where(original >= 128, 255 - original, original))
  np.testing.assert_array_equal(boxes.numpy(), np.float32(BOXES))


def test_bbox_only_op_probability_is_per_box_and_divided_by_3():
  flip = ops.AUTOAUGMENT_OPS['detection'].index('Flip_Only_BBoxes')
  policy = policies.make_policy(_autoaugment([(flip, 0, 1.0)]), 'detection')
  # 64 boxes of 8 x 8 pixels, each with a left-right ramp a flip reverses.
  image = np.tile(np.arange(8, dtype=np.uint8)[None, :, None] * 30,
                  (SIZE, SIZE // 8, 3))
  cells = np.arange(0, SIZE, 8) / SIZE
  boxes = [[y, x, y + 8 / SIZE, x + 8 / SIZE] for y in cells for x in cells]
  in_graph = tf.function(policy)
  out = in_graph(tf.constant(image), tf.constant(boxes), seed=_seed([3, 1]))[0]
  flipped = out.numpy()[::8, ::8, 0] != image[::8, ::8, 0]
  assert 0.15 < flipped.mean() < 0.55  # about 1/3 of the boxes


def test_policy_from_json_equals_make_policy():
  spec = _fixture_specs('autoaugment_detection')[1]
  from_json = policies.policy_from_json(pg.to_json_str(spec), 'detection',
                                        OPTIONS)
  direct = policies.make_policy(spec, 'detection', OPTIONS)
  image, boxes = _image(), tf.constant(BOXES)
  for seed in ([0, 0], [0, 1], [5, 5]):
    a = from_json(image, boxes, seed=_seed(seed))
    b = direct(image, boxes, seed=_seed(seed))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())


def test_float_image_round_trips_its_dtype():
  policy = policies.make_policy(_autoaugment([(0, 0, 1.0), (1, 5, 1.0)]),
                                'segmentation')
  image = tf.cast(_image(), tf.float32)
  out_image, _, mask = policy(image, mask=tf.cast(_mask(), tf.int32),
                              seed=_seed([0, 0]))
  assert out_image.dtype == tf.float32 and mask.dtype == tf.int32


@pytest.mark.parametrize('spec, task, message', [
    (search_spaces.RandAugmentSpec(num_ops=2, magnitude=5, task='detection'),
     'classification', 'task'),
    (search_spaces.RandAugmentSpec(num_ops=2, magnitude=5, task='detection'),
     'segmentation', 'for task'),
    (search_spaces.RandAugmentSpec(num_ops=0, magnitude=5, task='detection'),
     'detection', 'num_ops'),
    (search_spaces.RandAugmentSpec(num_ops=1, magnitude=11, task='detection'),
     'detection', 'magnitude'),
    (_autoaugment([(21, 5, 0.5)]), 'detection', 'op index 21'),
    (_autoaugment([(13, 5, 0.5)]), 'segmentation', 'op index 13'),
    (_autoaugment([(1, 12, 0.5)]), 'detection', 'magnitude'),
    (_autoaugment([(1, 5, 1.5)]), 'detection', 'probability'),
    ([[[1]], [[5]]], 'detection', 'RandAugmentSpec or an AutoAugment'),
    ([[[1, 2]], [[5]], [[0.5]]], 'detection', 'different lengths'),
    ('RandAugment', 'detection', 'RandAugmentSpec or an AutoAugment'),
])
def test_bad_specs_give_one_line_value_errors(spec, task, message):
  with pytest.raises(ValueError, match=message) as error:
    policies.make_policy(spec, task)
  assert '\n' not in str(error.value)
