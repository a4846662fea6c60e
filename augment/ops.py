"""The augmentation ops of Vertex AI NAS's detection and segmentation policies.

Each op follows the platform's `nas_lib/augmentation_2d` (magnitude scaling,
fill values, op tables) on Model Garden's pixel kernels. Model Garden's own
box-aware ops are not used: they draw random numbers internally, so a seed
cannot reproduce an image, and they walk boxes with `tf.map_fn`. Here every
random choice comes from a `seed` argument (stateless ops) and box math is
vectorised.

A sample is a dict: 'image' uint8 [H, W, 3]; optional 'boxes' float32 [N, 4]
(normalised [ymin, xmin, ymax, xmax], N may be 0 or unknown); optional 'mask'
uint8 [H, W, 1] (class ids, 255 = ignore). Every op is
`op(sample, magnitude, seed, options) -> sample` with the same keys, dtypes and
static shapes; `magnitude` is a Python or tensor float in [0, 10] and `seed`
an int32/int64 [2] tensor. Ops transform whichever of boxes and mask are
present, so one table serves detection and segmentation.

Geometric ops (Translate, Shear, Rotate) move box corners with the same affine
map as the pixels, clip to [0, 1], and zero a box ([0, 0, 0, 0]) that left the
image; Model Garden's RetinaNet parser then drops zero boxes with their
classes. Masks are warped nearest-neighbour, uncovered pixels become 255.
"""

import dataclasses
import math
from typing import Callable, Dict

from official.vision.ops import augment
import tensorflow as tf

import search_spaces

MAX_MAGNITUDE = 10.0
SOLARIZE_MAX_THRESHOLD = 256
SOLARIZE_ADD_MAX_ADDITION = 110
SOLARIZE_ADD_THRESHOLD = 128
ENHANCE_FACTOR_SPAN = 1.8
ENHANCE_MIN_FACTOR = 0.1
SHEAR_MAX_LEVEL = 0.3
ROTATE_MAX_DEGREES = 30.0
# The platform gives a zero-height (zero-width) box on the image border a band
# of this size, so it keeps a positive area.
DEGENERATE_BOX_DELTA = 0.05


@dataclasses.dataclass(frozen=True)
class AugmentOptions:
  """Pixel constants and fill values; defaults are the platform's.

  The pixel constants suit ~512-640 px images: configs for tiny images pass
  proportionally smaller ones.
  """
  translate_const: float = 250.0
  translate_bbox_const: float = 120.0
  cutout_const: float = 100.0
  bbox_cutout_fraction: float = 0.75
  fill_value: int = 128
  mask_fill_value: int = 255


DEFAULT_OPTIONS = AugmentOptions()


def _fraction(magnitude) -> tf.Tensor:
  """magnitude / 10 as a float32 tensor, for Python and tensor magnitudes."""
  return tf.cast(magnitude, tf.float32) / MAX_MAGNITUDE


def _random_sign(seed) -> tf.Tensor:
  """+1.0 or -1.0 with equal chance: the platform negates geometric ops."""
  return tf.where(tf.random.stateless_uniform([], seed) < 0.5, -1.0, 1.0)


def _keep_static_shape(new: tf.Tensor, old: tf.Tensor) -> tf.Tensor:
  """`new` with `old`'s static shape (Model Garden's reshapes drop it)."""
  new.set_shape(old.shape)
  return new


def _replace(sample: Dict[str, tf.Tensor], **values) -> Dict[str, tf.Tensor]:
  """A copy of `sample` with some entries replaced (ops never mutate input)."""
  out = dict(sample)
  out.update(values)
  return out


def _map_image(sample, image_fn):
  """Applies a pixel-only function; boxes and mask pass through."""
  image = sample['image']
  return _replace(sample, image=_keep_static_shape(image_fn(image), image))


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor) -> tf.Tensor:
  """PIL ImageEnhance: degenerate + factor * (image - degenerate), clipped.

  Ours because Model Garden's `blend` branches on `factor` in Python, which a
  tensor magnitude inside a graph cannot do.
  """
  start = tf.cast(degenerate, tf.float32)
  blended = start + factor * (tf.cast(image, tf.float32) - start)
  return tf.cast(tf.clip_by_value(blended, 0.0, 255.0), tf.uint8)


def _enhance_factor(magnitude) -> tf.Tensor:
  return _fraction(magnitude) * ENHANCE_FACTOR_SPAN + ENHANCE_MIN_FACTOR


# ---------------------------------------------------------------------------
# Photometric ops: the image changes, boxes and mask do not.
# ---------------------------------------------------------------------------


def equalize(sample, magnitude, seed, options=DEFAULT_OPTIONS):
  """Histogram equalisation per channel (no strength, no randomness)."""
  del magnitude, seed, options
  return _map_image(sample, augment.equalize)


def solarize(sample, magnitude, seed, options=DEFAULT_OPTIONS):
  """Inverts pixels >= m/10 * 256."""
  del seed, options
  threshold = tf.cast(_fraction(magnitude) * SOLARIZE_MAX_THRESHOLD, tf.int32)
  # int32, since the threshold reaches 256 (no pixel inverted) at m=10.
  return _map_image(sample, lambda image: tf.cast(
      augment.solarize(tf.cast(image, tf.int32), threshold), tf.uint8))


def solarize_add(sample, magnitude, seed, options=DEFAULT_OPTIONS):
  """Adds m/10 * 110 to pixels below 128 (saturating)."""
  del seed, options
  addition = tf.cast(_fraction(magnitude) * SOLARIZE_ADD_MAX_ADDITION, tf.int64)
  return _map_image(sample, lambda image: augment.solarize_add(
      image, addition, threshold=SOLARIZE_ADD_THRESHOLD))


def color(sample, magnitude, seed, options=DEFAULT_OPTIONS):
  """Saturation: blends with the greyscale image by m/10 * 1.8 + 0.1."""
  del seed, options
  factor = _enhance_factor(magnitude)
  return _map_image(
      sample, lambda image: _blend(augment.grayscale(image), image, factor))


def sharpness(sample, magnitude, seed, options=DEFAULT_OPTIONS):
  """Sharpness: blends with the smoothed image by m/10 * 1.8 + 0.1."""
  del seed, options
  factor = _enhance_factor(magnitude)
  # Model Garden's sharpness at factor 0 is its smoothed (degenerate) image.
  return _map_image(sample, lambda image: _blend(
      augment.sharpness(image, 0.0), image, factor))


# ---------------------------------------------------------------------------
# Cutout: a filled rectangle; CutoutSegmentation also marks the mask ignored.
# ---------------------------------------------------------------------------


def _cut_rectangle(sample, half_height, half_width, seed, options, cut_mask):
  """Fills the 2*half rectangle around a random pixel, clipped to the image."""
  image = sample['image']
  size = tf.shape(image)[:2]
  center = tf.cast(
      tf.random.stateless_uniform([2], seed) * tf.cast(size, tf.float32),
      tf.int32)
  rows = tf.range(size[0])
  cols = tf.range(size[1])
  in_rows = (rows >= center[0] - half_height) & (rows < center[0] + half_height)
  in_cols = (cols >= center[1] - half_width) & (cols < center[1] + half_width)
  inside = (in_rows[:, None] & in_cols[None, :])[:, :, None]

  def cut(pixels, fill_value):
    return _keep_static_shape(
        tf.where(inside, tf.constant(fill_value, tf.uint8), pixels), pixels)

  out = {'image': cut(image, options.fill_value)}
  if cut_mask and 'mask' in sample:
    out['mask'] = cut(sample['mask'], options.mask_fill_value)
  return _replace(sample, **out)


def cutout_image(sample, magnitude, seed, options=DEFAULT_OPTIONS):
  """Cuts a square of side 2 * m/10 * cutout_const from the image only."""
  half = tf.cast(_fraction(magnitude) * options.cutout_const, tf.int32)
  return _cut_rectangle(sample, half, half, seed, options, cut_mask=False)


def cutout_segmentation(sample, magnitude, seed, options=DEFAULT_OPTIONS):
  """Like CutoutImage, and the cut mask pixels become the ignore label."""
  half = tf.cast(_fraction(magnitude) * options.cutout_const, tf.int32)
  return _cut_rectangle(sample, half, half, seed, options, cut_mask=True)


# ---------------------------------------------------------------------------
# Geometric ops. An affine map is 6 floats [a0, a1, a2, b0, b1, b2]: the output
# pixel with index (x, y) samples the input at (a0 x + a1 y + a2,
# b0 x + b1 y + b2), as ImageProjectiveTransformV3 reads it.
# ---------------------------------------------------------------------------


def _warp_pixels(pixels, affine, fill_value):
  """Nearest-neighbour warp; pixels mapped from outside get `fill_value`."""
  transforms = tf.concat([affine, tf.zeros([2])], 0)
  warped = augment.transform(pixels, transforms, interpolation='nearest',
                             fill_mode='constant', fill_value=fill_value)
  return _keep_static_shape(warped, pixels)


def _warp_boxes(boxes, affine, image_size):
  """Boxes through the inverse of `affine`: corners, then min/max.

  Pixel index i covers [i, i+1) in continuous coordinates, where boxes live,
  so corners are shifted by half a pixel into index space and back.
  """
  a0, a1, a2, b0, b1, b2 = tf.unstack(affine)
  det = a0 * b1 - a1 * b0
  height, width = tf.unstack(tf.cast(image_size, tf.float32))
  ymin, xmin, ymax, xmax = tf.unstack(boxes, num=4, axis=1)
  # Input index (x, y) relative to the map's offset, for the 4 corners.
  x = tf.stack([xmin, xmax, xmin, xmax], axis=1) * width - 0.5 - a2
  y = tf.stack([ymin, ymin, ymax, ymax], axis=1) * height - 0.5 - b2
  out_x = (b1 * x - a1 * y) / det + 0.5
  out_y = (a0 * y - b0 * x) / det + 0.5
  moved = tf.stack([
      tf.reduce_min(out_y, axis=1) / height,
      tf.reduce_min(out_x, axis=1) / width,
      tf.reduce_max(out_y, axis=1) / height,
      tf.reduce_max(out_x, axis=1) / width,
  ], axis=1)
  return _settle_boxes(boxes, moved)


def _settle_boxes(original, moved):
  """Clips moved boxes to the image; zeros those that left it entirely.

  A box left with zero height (width) on the image border gets the
  platform's DEGENERATE_BOX_DELTA band. An all-zero input box (one dropped
  before) stays zero rather than being moved back into view.
  """
  ymin, xmin, ymax, xmax = tf.unstack(moved, num=4, axis=1)
  overlaps = ((ymin <= 1.0) & (ymax >= 0.0) & (xmin <= 1.0) & (xmax >= 0.0) &
              tf.reduce_any(original != 0.0, axis=1))
  ymin, xmin, ymax, xmax = tf.unstack(
      tf.clip_by_value(moved, 0.0, 1.0), num=4, axis=1)
  flat = tf.equal(ymax, ymin)
  ymin = tf.where(flat, tf.minimum(ymin, 1.0 - DEGENERATE_BOX_DELTA), ymin)
  ymax = tf.where(flat, tf.maximum(ymax, DEGENERATE_BOX_DELTA), ymax)
  thin = tf.equal(xmax, xmin)
  xmin = tf.where(thin, tf.minimum(xmin, 1.0 - DEGENERATE_BOX_DELTA), xmin)
  xmax = tf.where(thin, tf.maximum(xmax, DEGENERATE_BOX_DELTA), xmax)
  settled = tf.stack([ymin, xmin, ymax, xmax], axis=1)
  return tf.where(overlaps[:, None], settled, tf.zeros_like(settled))


def _warp(sample, affine, options):
  """Applies one affine map to the image, the mask and the boxes present."""
  image = sample['image']
  out = {'image': _warp_pixels(image, affine, options.fill_value)}
  if 'mask' in sample:
    out['mask'] = _warp_pixels(sample['mask'], affine, options.mask_fill_value)
  if 'boxes' in sample:
    out['boxes'] = _warp_boxes(sample['boxes'], affine, tf.shape(image)[:2])
  return _replace(sample, **out)


def _translate(sample, magnitude, seed, pixels_at_max, horizontal, options):
  """Shifts the content by +/- m/10 * pixels_at_max along one axis."""
  shift = _random_sign(seed) * _fraction(magnitude) * pixels_at_max
  zero = tf.zeros([])
  if horizontal:
    affine = tf.stack([1.0, zero, -shift, zero, 1.0, zero])
  else:
    affine = tf.stack([1.0, zero, zero, zero, 1.0, -shift])
  return _warp(sample, affine, options)


def _shear(sample, magnitude, seed, horizontal, options):
  """Shears about the top-left corner by +/- m/10 * 0.3 (as the platform)."""
  level = _random_sign(seed) * _fraction(magnitude) * SHEAR_MAX_LEVEL
  zero = tf.zeros([])
  if horizontal:
    affine = tf.stack([1.0, level, zero, zero, 1.0, zero])
  else:
    affine = tf.stack([1.0, zero, zero, level, 1.0, zero])
  return _warp(sample, affine, options)


def translate_x(sample, magnitude, seed, options=DEFAULT_OPTIONS):
  """Shifts by +/- m/10 * translate_const pixels horizontally."""
  return _translate(sample, magnitude, seed, options.translate_const,
                    horizontal=True, options=options)


def translate_y(sample, magnitude, seed, options=DEFAULT_OPTIONS):
  """Shifts by +/- m/10 * translate_const pixels vertically."""
  return _translate(sample, magnitude, seed, options.translate_const,
                    horizontal=False, options=options)


def shear_x(sample, magnitude, seed, options=DEFAULT_OPTIONS):
  """Shifts row y sideways by level * y pixels, level = +/- m/10 * 0.3."""
  return _shear(sample, magnitude, seed, horizontal=True, options=options)


def shear_y(sample, magnitude, seed, options=DEFAULT_OPTIONS):
  """Shifts column x up or down by level * x pixels, level = +/- m/10 * 0.3."""
  return _shear(sample, magnitude, seed, horizontal=False, options=options)


def rotate(sample, magnitude, seed, options=DEFAULT_OPTIONS):
  """Rotates about the image centre by +/- m/10 * 30 degrees."""
  radians = (_random_sign(seed) * _fraction(magnitude) * ROTATE_MAX_DEGREES *
             (math.pi / 180.0))
  cos, sin = tf.cos(radians), tf.sin(radians)
  height, width = tf.unstack(tf.cast(tf.shape(sample['image'])[:2], tf.float32))
  center_x, center_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
  affine = tf.stack([
      cos, -sin, center_x - cos * center_x + sin * center_y,
      sin, cos, center_y - sin * center_x - cos * center_y])
  return _warp(sample, affine, options)


# ---------------------------------------------------------------------------
# Bbox-only ops: an op on the pixels inside each selected box, boxes unchanged.
# ---------------------------------------------------------------------------


def _box_pixel_ranges(boxes, image_size):
  """[N] int32 top, bottom, left, right (exclusive): pixels a box overlaps."""
  height, width = tf.unstack(image_size)
  ymin, xmin, ymax, xmax = tf.unstack(boxes, num=4, axis=1)

  def span(low, high, size):
    size_f = tf.cast(size, tf.float32)
    start = tf.floor(tf.clip_by_value(low, 0.0, 1.0) * size_f)
    stop = tf.math.ceil(tf.clip_by_value(high, 0.0, 1.0) * size_f)
    return tf.cast(start, tf.int32), tf.cast(stop, tf.int32)

  top, bottom = span(ymin, ymax, height)
  left, right = span(xmin, xmax, width)
  return top, bottom, left, right


def _apply_inside_boxes(sample, content_op, seed, prob):
  """Runs `content_op(crop_sample, seed)` on each box picked with `prob`.

  Boxes are visited in a seeded random order, each sees the pixels left by
  the previous ones (overlapping boxes), as on the platform.
  """
  boxes = sample['boxes']
  order_seed, pick_seed, content_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  num_boxes = tf.shape(boxes)[0]
  top, bottom, left, right = _box_pixel_ranges(
      boxes, tf.shape(sample['image'])[:2])
  picked = ((bottom > top) & (right > left) &
            (tf.random.stateless_uniform([num_boxes], pick_seed) < prob))
  order = tf.argsort(tf.random.stateless_uniform([num_boxes], order_seed))
  visits = tf.boolean_mask(order, tf.gather(picked, order))
  pixels = {key: sample[key] for key in ('image', 'mask') if key in sample}

  def visit_box(step, pixels):
    box = visits[step]
    begin = tf.stack([top[box], left[box], 0])
    end = tf.stack([bottom[box], right[box], 1])
    crops = {key: tf.strided_slice(value, begin, end, end_mask=0b100)
             for key, value in pixels.items()}
    changed = content_op(
        crops, tf.random.experimental.stateless_fold_in(content_seed, box))
    pasted = {
        key: tf.raw_ops.TensorStridedSliceUpdate(
            input=value, begin=begin, end=end, strides=[1, 1, 1],
            value=changed[key], end_mask=0b100)
        for key, value in pixels.items()}
    return step + 1, pasted

  _, pixels = tf.while_loop(
      lambda step, _: step < tf.shape(visits)[0], visit_box, (0, pixels))
  return _replace(sample, **pixels)


def _bbox_only(content_op, doc):
  """A bbox-only op from `content_op(crop_sample, magnitude, seed, options)`."""

  def op(sample, magnitude, seed, options=DEFAULT_OPTIONS, *, prob=1.0):
    if 'boxes' not in sample:
      return sample
    return _apply_inside_boxes(
        sample, lambda crop, crop_seed: content_op(
            crop, magnitude, crop_seed, options), seed, prob)

  op.__doc__ = (
      f'{doc} inside each box picked with probability `prob` (per box, used '
      'as given: AutoAugment policies pass their p / 3); boxes unchanged.')
  return op


def _flip_content(crop, magnitude, seed, options):
  del magnitude, seed, options
  return {key: tf.reverse(value, axis=[1]) for key, value in crop.items()}


def _cutout_content(crop, magnitude, seed, options):
  """The platform's BBoxCutout: pad = m/10 * 0.75 of the box's height/width."""
  fraction = _fraction(magnitude) * options.bbox_cutout_fraction
  half = tf.cast(
      fraction * tf.cast(tf.shape(crop['image'])[:2], tf.float32), tf.int32)
  return _cut_rectangle(crop, half[0], half[1], seed, options, cut_mask=False)


def _translate_content(horizontal):
  def content_op(crop, magnitude, seed, options):
    return _translate(crop, magnitude, seed, options.translate_bbox_const,
                      horizontal=horizontal, options=options)
  return content_op


solarize_only_bboxes = _bbox_only(solarize, 'Solarize')
cutout_only_bboxes = _bbox_only(_cutout_content, 'BBoxCutout')
translate_x_only_bboxes = _bbox_only(
    _translate_content(horizontal=True),
    'TranslateX by +/- m/10 * translate_bbox_const pixels')
translate_y_only_bboxes = _bbox_only(
    _translate_content(horizontal=False),
    'TranslateY by +/- m/10 * translate_bbox_const pixels')
shear_x_only_bboxes = _bbox_only(shear_x, 'ShearX')
shear_y_only_bboxes = _bbox_only(shear_y, 'ShearY')
rotate_only_bboxes = _bbox_only(rotate, 'Rotate')
equalize_only_bboxes = _bbox_only(equalize, 'Equalize')
flip_only_bboxes = _bbox_only(_flip_content, 'Horizontal flip')


# ---------------------------------------------------------------------------
# Tables, in platform order.
# ---------------------------------------------------------------------------

OPS: Dict[str, Callable] = {
    'Equalize': equalize,
    'Solarize': solarize,
    'Color': color,
    'Sharpness': sharpness,
    'SolarizeAdd': solarize_add,
    'CutoutImage': cutout_image,
    'CutoutSegmentation': cutout_segmentation,
    'TranslateX': translate_x,
    'TranslateY': translate_y,
    'ShearX': shear_x,
    'ShearY': shear_y,
    'Rotate': rotate,
    'Solarize_Only_BBoxes': solarize_only_bboxes,
    'Cutout_Only_BBoxes': cutout_only_bboxes,
    'TranslateX_Only_BBoxes': translate_x_only_bboxes,
    'TranslateY_Only_BBoxes': translate_y_only_bboxes,
    'ShearX_Only_BBoxes': shear_x_only_bboxes,
    'ShearY_Only_BBoxes': shear_y_only_bboxes,
    'Rotate_Only_BBoxes': rotate_only_bboxes,
    'Equalize_Only_BBoxes': equalize_only_bboxes,
    'Flip_Only_BBoxes': flip_only_bboxes,
}

BBOX_ONLY_OPS = frozenset(name for name in OPS if name.endswith('_Only_BBoxes'))


def _randaugment_table(cutout_name):
  return ('Equalize', 'Solarize', 'Color', cutout_name, 'SolarizeAdd',
          'TranslateX', 'TranslateY', 'ShearX', 'ShearY', 'Rotate')


RANDAUGMENT_OPS = {
    'detection': _randaugment_table('CutoutImage'),
    'segmentation': _randaugment_table('CutoutSegmentation'),
}

# Indices 3 and 11 are both CutoutImage on the platform; kept so op indices
# of Vertex policies mean the same here.
_AUTOAUGMENT_BASE_OPS = _randaugment_table('CutoutImage') + (
    'Sharpness', 'CutoutImage')

AUTOAUGMENT_OPS = {
    'detection': _AUTOAUGMENT_BASE_OPS + (
        'Solarize_Only_BBoxes', 'Cutout_Only_BBoxes', 'TranslateX_Only_BBoxes',
        'TranslateY_Only_BBoxes', 'ShearX_Only_BBoxes', 'ShearY_Only_BBoxes',
        'Rotate_Only_BBoxes', 'Equalize_Only_BBoxes', 'Flip_Only_BBoxes'),
    'segmentation': _AUTOAUGMENT_BASE_OPS + ('CutoutSegmentation',),
}

assert all(len(AUTOAUGMENT_OPS[task]) == search_spaces.AUTOAUGMENT_NUM_OPS[task]
           for task in search_spaces.AUGMENTATION_TASKS), (
               'AutoAugment op tables disagree with search_spaces')
