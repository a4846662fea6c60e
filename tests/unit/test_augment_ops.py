"""The augmentation ops do what the platform's do, to pixels, boxes and masks.

Boxes are checked against the pixels: a rectangle of class k is drawn in the
mask with its box, and after a geometric op the box must still frame the
class-k pixels (or be zeroed exactly when none are left).
"""

import numpy as np
import pytest
import tensorflow as tf

from augment import ops
import search_spaces

SIZE = 96
# Pixel constants scaled to a 96 px image: a full-magnitude translation moves
# 30 px, enough to push the edge rectangle fully out, not the central one.
OPTIONS = ops.AugmentOptions(translate_const=30.0, translate_bbox_const=8.0,
                             cutout_const=12.0)
# Seeds whose random sign differs for the geometric ops.
SEEDS = ([1, 1], [2, 2])
# (top, left, bottom, right) pixel rectangles, class ids 1 and 2: one central,
# one at the left edge.
RECTANGLES = ((30, 24, 62, 64), (36, 2, 60, 20))
GEOMETRIC_OPS = ('TranslateX', 'TranslateY', 'ShearX', 'ShearY', 'Rotate')
SEGMENTATION_OPS = sorted(set(ops.AUTOAUGMENT_OPS['segmentation']) |
                          set(ops.RANDAUGMENT_OPS['segmentation']))


def _noise_image(seed=0):
  return tf.constant(np.random.RandomState(seed).randint(
      0, 256, (SIZE, SIZE, 3)).astype(np.uint8))


def _rectangles_sample(rectangles=RECTANGLES):
  """Image, mask with rectangle k of class k, and their boxes."""
  mask = np.zeros((SIZE, SIZE, 1), np.uint8)
  boxes = []
  for class_id, (top, left, bottom, right) in enumerate(rectangles, 1):
    mask[top:bottom, left:right] = class_id
    boxes.append([top / SIZE, left / SIZE, bottom / SIZE, right / SIZE])
  return {'image': _noise_image(), 'mask': tf.constant(mask),
          'boxes': tf.constant(boxes, tf.float32)}


def _seed(values):
  return tf.constant(values, tf.int32)


def _tight_box(mask, class_id):
  """Normalised box framing the pixels of `class_id`; None if there are none."""
  rows, cols = np.nonzero(mask[..., 0] == class_id)
  if not rows.size:
    return None
  edges = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
  return np.array(edges) / SIZE


def _iou(a, b):
  height = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  width = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = height * width
  union = ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) -
           inter)
  return inter / union


@pytest.mark.parametrize('magnitude', [5, 10])
@pytest.mark.parametrize('name', GEOMETRIC_OPS)
def test_geometric_ops_move_boxes_with_the_pixels(name, magnitude):
  assert name in ops.RANDAUGMENT_OPS['detection']
  outputs = []
  for seed in SEEDS:
    out = ops.OPS[name](_rectangles_sample(), magnitude, _seed(seed), OPTIONS)
    mask, boxes = out['mask'].numpy(), out['boxes'].numpy()
    for class_id, box in enumerate(boxes, 1):
      tight = _tight_box(mask, class_id)
      if tight is None:
        assert box.tolist() == [0, 0, 0, 0], (seed, class_id)
      else:
        assert np.all((box >= 0) & (box <= 1))
        assert _iou(box, tight) >= 0.9, (seed, class_id, box, tight)
    outputs.append(mask)
  # The seeds give both signs, so the two results differ.
  assert not np.array_equal(outputs[0], outputs[1])


def test_translation_pushes_edge_box_out_and_zeroes_only_it():
  out = ops.translate_x(_rectangles_sample(), 10, _seed(SEEDS[0]), OPTIONS)
  mask, boxes = out['mask'].numpy(), out['boxes'].numpy()
  assert _tight_box(mask, 2) is None and boxes[1].tolist() == [0, 0, 0, 0]
  assert _tight_box(mask, 1) is not None and boxes[0].any()


def test_translation_by_magnitude_pixels():
  sample = _rectangles_sample()
  shifts = set()
  for seed in SEEDS:
    out = ops.translate_y(sample, 5, _seed(seed), OPTIONS)
    moved = out['boxes'].numpy()[0] - sample['boxes'].numpy()[0]
    np.testing.assert_allclose(moved[[1, 3]], 0, atol=1e-6)
    shifts.add(round(moved[0] * SIZE, 3))
  assert shifts == {15.0, -15.0}  # m/10 * translate_const = 15 px


def test_shear_at_full_magnitude_widens_box_by_0_3_of_its_height():
  sample = _rectangles_sample()
  out = ops.shear_x(sample, 10, _seed(SEEDS[0]), OPTIONS)
  before, after = sample['boxes'].numpy()[0], out['boxes'].numpy()[0]
  height = before[2] - before[0]
  np.testing.assert_allclose(after[3] - after[1],
                             before[3] - before[1] + 0.3 * height, atol=1e-5)


def _principal_angle_degrees(mask, class_id):
  """Orientation of the class's pixels (image y axis pointing down)."""
  rows, cols = np.nonzero(mask[..., 0] == class_id)
  cov = np.cov(np.stack([cols, rows]).astype(np.float64))
  return np.degrees(0.5 * np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1]))


def test_rotate_at_full_magnitude_turns_by_30_degrees():
  bar = _rectangles_sample(rectangles=((44, 16, 52, 80),))
  angles = []
  for seed in SEEDS:
    out = ops.rotate(bar, 10, _seed(seed), OPTIONS)
    angles.append(_principal_angle_degrees(out['mask'].numpy(), 1))
  np.testing.assert_allclose(sorted(angles), [-30, 30], atol=1.5)


def test_solarize_at_5_inverts_pixels_from_128():
  image = tf.reshape(tf.range(256 * 3, dtype=tf.int32) % 256, [16, 16, 3])
  image = tf.cast(image, tf.uint8)
  out = ops.solarize({'image': image}, 5, _seed([0, 0]))['image'].numpy()
  original = image.numpy()
  expected = np.where(original >= 128, 255 - original, original)
  np.testing.assert_array_equal(out, expected)


def test_solarize_add_at_10_adds_110_below_128():
  image = tf.cast(tf.reshape(tf.range(16 * 16 * 3) % 256, [16, 16, 3]),
                  tf.uint8)
  out = ops.solarize_add({'image': image}, 10, _seed([0, 0]))['image'].numpy()
  original = image.numpy().astype(np.int64)
  expected = np.where(original < 128, np.minimum(original + 110, 255), original)
  np.testing.assert_array_equal(out, expected)


def test_color_factor_is_magnitude_scaled():
  image = _noise_image()
  identity = ops.color({'image': image}, 5, _seed([0, 0]))['image']  # 1.0
  np.testing.assert_array_equal(identity.numpy(), image.numpy())
  faded = ops.color({'image': image}, 0, _seed([0, 0]))['image'].numpy()  # 0.1

  def channel_spread(pixels):
    return pixels.max(axis=-1).astype(int) - pixels.min(axis=-1)

  spread_before = channel_spread(image.numpy())
  assert np.all(channel_spread(faded) <= 0.1 * spread_before + 1)


def test_cutout_fills_a_square_of_the_scaled_size():
  sample = _rectangles_sample()
  for name in ('CutoutImage', 'CutoutSegmentation'):
    out = ops.OPS[name](sample, 10, _seed([3, 4]), OPTIONS)
    cut = np.any(out['image'].numpy() != sample['image'].numpy(), axis=-1)
    rows, cols = np.nonzero(cut)
    assert 0 < rows.max() - rows.min() + 1 <= 24  # 2 * 12 px
    assert 0 < cols.max() - cols.min() + 1 <= 24
    assert np.all(out['image'].numpy()[cut] == 128)
    mask_changed = out['mask'].numpy() != sample['mask'].numpy()
    if name == 'CutoutImage':
      assert not mask_changed.any()
    else:
      np.testing.assert_array_equal(mask_changed[..., 0], cut)
      assert np.all(out['mask'].numpy()[mask_changed] == 255)


@pytest.mark.parametrize('name', sorted(ops.OPS))
def test_masks_hold_only_original_ids_and_ignore(name):
  sample = _rectangles_sample()
  for seed in SEEDS:
    out = ops.OPS[name](sample, 10, _seed(seed), OPTIONS)
    assert out['mask'].dtype == tf.uint8
    assert out['mask'].shape == (SIZE, SIZE, 1)
    assert set(np.unique(out['mask'].numpy())) <= {0, 1, 2, 255}
    if name in ('TranslateX', 'TranslateY', 'Rotate', 'CutoutSegmentation'):
      assert 255 in out['mask'].numpy()


def test_segmentation_tables_cover_search_space_ops():
  for task in search_spaces.AUGMENTATION_TASKS:
    num_ops = search_spaces.AUTOAUGMENT_NUM_OPS[task]
    assert len(ops.AUTOAUGMENT_OPS[task]) == num_ops
    assert len(ops.RANDAUGMENT_OPS[task]) == 10
    assert set(ops.AUTOAUGMENT_OPS[task]) <= set(ops.OPS)
  assert set(SEGMENTATION_OPS) & ops.BBOX_ONLY_OPS == set()
  assert ops.AUTOAUGMENT_OPS['segmentation'][12] == 'CutoutSegmentation'
  assert ops.AUTOAUGMENT_OPS['detection'][20] == 'Flip_Only_BBoxes'


def _pixels_outside(boxes):
  """Bool [H, W]: pixels no box overlaps."""
  outside = np.ones((SIZE, SIZE), bool)
  for top, left, bottom, right in boxes:
    outside[int(np.floor(top * SIZE)):int(np.ceil(bottom * SIZE)),
            int(np.floor(left * SIZE)):int(np.ceil(right * SIZE))] = False
  return outside


@pytest.mark.parametrize('name', sorted(ops.BBOX_ONLY_OPS))
def test_bbox_only_ops_change_only_pixels_inside_boxes(name):
  sample = _rectangles_sample()
  out = ops.OPS[name](sample, 7, _seed([5, 6]), OPTIONS, prob=1.0)
  outside = _pixels_outside(sample['boxes'].numpy())
  changed = np.any(out['image'].numpy() != sample['image'].numpy(), axis=-1)
  assert changed.any() and not changed[outside].any()
  np.testing.assert_array_equal(out['boxes'].numpy(), sample['boxes'].numpy())
  untouched = ops.OPS[name](sample, 7, _seed([5, 6]), OPTIONS, prob=0.0)
  np.testing.assert_array_equal(untouched['image'].numpy(),
                                sample['image'].numpy())


def test_flip_only_bboxes_flips_box_content():
  sample = _rectangles_sample()
  out = ops.flip_only_bboxes(sample, 0, _seed([0, 0]), OPTIONS, prob=1.0)
  image, flipped = sample['image'].numpy(), out['image'].numpy()
  for top, left, bottom, right in RECTANGLES:
    np.testing.assert_array_equal(flipped[top:bottom, left:right],
                                  image[top:bottom, left:right][:, ::-1])


def test_bbox_cutout_size_is_a_fraction_of_the_box():
  sample = _rectangles_sample(rectangles=(RECTANGLES[0],))
  out = ops.cutout_only_bboxes(sample, 4, _seed([1, 2]), OPTIONS, prob=1.0)
  rows, cols = np.nonzero(
      np.any(out['image'].numpy() != sample['image'].numpy(), axis=-1))
  # pad = 0.4 * 0.75 of the 32 x 40 box: at most 2 * 9 x 2 * 12 pixels.
  assert 0 < rows.max() - rows.min() + 1 <= 18
  assert 0 < cols.max() - cols.min() + 1 <= 24


def test_dropped_box_stays_zero_and_border_line_box_gets_a_band():
  sample = {'image': _noise_image(),
            'boxes': tf.constant([[0, 0, 0, 0], [0, 0.2, 0, 0.6]], tf.float32)}
  rotated = ops.rotate(sample, 3, _seed([0, 1]), OPTIONS)['boxes'].numpy()
  assert rotated[0].tolist() == [0, 0, 0, 0]
  moved = ops.translate_x(sample, 2, _seed([0, 1]), OPTIONS)['boxes'].numpy()
  np.testing.assert_allclose(moved[1, [0, 2]], [0.0, 0.05])


def test_ops_keep_static_shapes_in_a_graph_with_any_number_of_boxes():
  @tf.function(input_signature=[
      tf.TensorSpec([SIZE, SIZE, 3], tf.uint8),
      tf.TensorSpec([None, 4], tf.float32),
      tf.TensorSpec([2], tf.int64)])
  def all_ops(image, boxes, seed):
    outs = []
    for name in sorted(ops.OPS):
      sample = {'image': image, 'boxes': boxes}
      outs.append(ops.OPS[name](sample, tf.constant(7.0), seed, OPTIONS))
    return outs

  for out in all_ops.get_concrete_function().structured_outputs:
    assert out['image'].shape == (SIZE, SIZE, 3)
    assert out['image'].dtype == tf.uint8
    assert out['boxes'].shape.as_list() == [None, 4]
  for num_boxes in (0, 3):
    boxes = tf.tile(tf.constant([[0.1, 0.2, 0.6, 0.7]]), [num_boxes, 1])
    for out in all_ops(_noise_image(), boxes, tf.constant([1, 2], tf.int64)):
      assert out['boxes'].shape == (num_boxes, 4)


def test_same_seed_same_output():
  sample = _rectangles_sample()
  for name in ('CutoutImage', 'Rotate', 'Cutout_Only_BBoxes'):
    first = ops.OPS[name](sample, 8, _seed([4, 2]), OPTIONS)
    again = ops.OPS[name](sample, 8, _seed([4, 2]), OPTIONS)
    np.testing.assert_array_equal(first['image'].numpy(),
                                  again['image'].numpy())
