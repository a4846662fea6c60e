"""A generated shape-scene dataset for detection and segmentation.

Each image shows 1..max_objects (default 2) filled shapes -- rectangle or
ellipse (class ids 1 and 2, 0 is background) -- with random colour,
shading, size (about 40-70% of the image side), aspect ratio and rotation, on a
cluttered background: a colour gradient, a low-frequency texture, thin
distractor lines and soft blurry blobs (neither is an object), and per-pixel
noise over the whole image.

Shapes may overlap; later shapes occlude earlier ones, and every shape
keeps at least half of its own area (and >= 12 pixels) visible. Instance masks
are the visible pixels, boxes are the visible masks' tight boxes, and the
semantic mask is the class id of the topmost shape per pixel.

Everything is drawn with numpy over the pixel grid and is reproducible: image i
of a split depends only on (seed, split, i), so the eval split does not change
with num_train. Records use `coco.detection_example` (JPEG quality 95) and
`data.write_tfrecords`; the eval split also gets a COCO-JSON ground-truth file.

The defaults are a task the tiny CPU proxies (configs/*_tiny.yaml) learn in
about 200 steps. With 4 classes, objects of 20-50% of the side, up to 3 per
image, 400 training images and backgrounds over the whole 0-255 range they
reached AP50 0.02-0.04 after 100-300 steps. Backgrounds stay in the middle of
the colour range (objects do not): an image brighter or more saturated than
the training images made a briefly trained network fire everywhere with its
batch norms' moving statistics, though not with batch statistics.
"""

import os
from typing import List, NamedTuple, Tuple

import numpy as np
import tensorflow as tf

from trainer.datasets import coco
from trainer.datasets import data

# Two classes: a tiny SpineNet's AP50 after 200 steps was 0.21-0.22 with a
# third (triangles), 0.42 with these two.
CLASS_NAMES = ('rectangle', 'ellipse')
NUM_CLASSES = len(CLASS_NAMES) + 1  # Model Garden convention: + background 0.
ANNOTATION_FILE = 'validation_annotations.json'  # COCO ground truth, eval
EVAL_ID_OFFSET = 1_000_000  # eval image ids are 1_000_001, ...; train 1, ...
_VERSION = 2  # bump when the drawing changes, so old directories are redone.
_MIN_VISIBLE_FRACTION = 0.5
_MIN_VISIBLE_PIXELS = 12
_HALF_SIZE = (0.2, 0.35)  # an object's half-size, as a fraction of the side
_BACKGROUND_RANGE = (64, 192)  # background, line and blob colour channels


class SceneData(NamedTuple):
  train_glob: str
  eval_glob: str
  eval_annotation_file: str
  num_classes: int  # K + 1: class ids 1..K plus background 0.
  num_train: int
  num_eval: int


def _grid(size: int) -> Tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates (y, x), each (size, size)."""
  c = np.arange(size, dtype=np.float32) + 0.5
  return np.meshgrid(c, c, indexing='ij')


def shape_mask(cls: int, yy, xx, cy, cx, a, b, angle) -> np.ndarray:
  """Boolean mask of shape `cls` (1 rectangle, 2 ellipse) with half-sizes a
  (along the rotated x axis) and b, centred at (cy, cx), rotated by `angle`
  radians."""
  dx, dy = xx - cx, yy - cy
  cos, sin = np.cos(angle), np.sin(angle)
  u = dx * cos + dy * sin
  v = -dx * sin + dy * cos
  if cls == 1:  # rectangle
    return (np.abs(u) <= a) & (np.abs(v) <= b)
  if cls == 2:  # ellipse
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0
  raise ValueError(f'unknown shape class {cls}')


def _upsample(coarse: np.ndarray, size: int) -> np.ndarray:
  """Bilinear upsampling of a (g, g, C) array to (size, size, C)."""
  g = coarse.shape[0]
  pos = np.linspace(0.0, g - 1.0, size)
  i0 = np.minimum(pos.astype(int), g - 2)
  w = (pos - i0)[:, None]
  rows = coarse[i0] * (1 - w[..., None]) + coarse[i0 + 1] * w[..., None]
  cols = rows[:, i0] * (1 - w[None]) + rows[:, i0 + 1] * w[None]
  return cols


def _background(rng, size, yy, xx) -> np.ndarray:
  c0, c1 = (rng.uniform(*_BACKGROUND_RANGE, 3),
            rng.uniform(*_BACKGROUND_RANGE, 3))
  phi = rng.uniform(0, 2 * np.pi)
  t = (xx * np.cos(phi) + yy * np.sin(phi)) / size
  t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
  image = c0 + t[..., None] * (c1 - c0)
  image += _upsample(rng.normal(0, 18, (5, 5, 3)), size)
  for _ in range(rng.integers(1, 5)):  # distractor lines
    p, q = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
    d = q - p
    s = np.clip(((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / max(d @ d, 1e-6),
                0, 1)
    dist = np.hypot(yy - (p[0] + s * d[0]), xx - (p[1] + s * d[1]))
    image[dist <= rng.uniform(0.5, 1.3)] = rng.uniform(*_BACKGROUND_RANGE, 3)
  for _ in range(rng.integers(0, 3)):  # soft blobs
    cy, cx = rng.uniform(0, size, 2)
    sigma = rng.uniform(1.5, 0.06 * size + 1.5)
    alpha = 0.8 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    image += alpha[..., None] * (rng.uniform(*_BACKGROUND_RANGE, 3) - image)
  return image


def _place(rng, size, yy, xx, cls):
  """A random shape of class `cls` fully inside the image."""
  half = rng.uniform(*_HALF_SIZE) * size
  aspect = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
  a, b = half * np.sqrt(aspect), half / np.sqrt(aspect)
  if cls == 1:  # a rectangle leans a little; an ellipse turns freely
    angle = rng.uniform(-0.45, 0.45)
  else:
    angle = rng.uniform(0, 2 * np.pi)
  reach = min(np.hypot(a, b), size / 2 - 1)
  cy, cx = rng.uniform(reach, size - reach, 2)
  return shape_mask(cls, yy, xx, cy, cx, a, b, angle)


def render_scene(rng: np.random.Generator, size: int, max_objects: int):
  """(image uint8 (H,W,3), classes (N,), visible masks (N,H,W) uint8)."""
  yy, xx = _grid(size)
  image = _background(rng, size, yy, xx)
  classes: List[int] = []
  full: List[np.ndarray] = []
  visible: List[np.ndarray] = []
  for _ in range(rng.integers(1, max_objects + 1)):
    cls = int(rng.integers(1, len(CLASS_NAMES) + 1))
    for _ in range(20):
      mask = _place(rng, size, yy, xx, cls)
      area = int(mask.sum())
      if area < _MIN_VISIBLE_PIXELS:
        continue
      still = [v & ~mask for v in visible]
      if all(s.sum() >= max(_MIN_VISIBLE_PIXELS,
                            _MIN_VISIBLE_FRACTION * f.sum())
             for s, f in zip(still, full)):
        break
    else:
      continue  # no placement keeps everything visible: fewer objects.
    visible = still + [mask]
    full.append(mask)
    classes.append(cls)
    # Colour far enough from the background under it, with a little shading.
    under = image[mask].mean(axis=0)
    for _ in range(10):
      colour = rng.uniform(0, 255, 3)
      if np.abs(colour - under).sum() >= 120:
        break
    phi = rng.uniform(0, 2 * np.pi)
    shade = 1.0 + 0.2 * ((xx * np.cos(phi) + yy * np.sin(phi)) / size - 0.5)
    image[mask] = (colour[None] * shade[mask][:, None])
  image += rng.normal(0, rng.uniform(2, 9), image.shape)
  image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
  masks = np.asarray(visible, np.uint8).reshape(len(visible), size, size)
  return image, np.asarray(classes, np.int64), masks


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
  """Tight normalised [ymin, xmin, ymax, xmax] of each non-empty mask."""
  n, h, w = masks.shape
  boxes = np.zeros((n, 4), np.float64)
  for k, m in enumerate(masks):
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    boxes[k] = [rows[0] / h, cols[0] / w, (rows[-1] + 1) / h,
                (cols[-1] + 1) / w]
  return boxes


def scene(seed: int, split: int, index: int, size: int, max_objects: int,
          image_id: int) -> Tuple[coco.AnnotatedImage, np.ndarray]:
  """Image `index` of `split` (0 train, 1 eval): annotations and pixels."""
  rng = np.random.default_rng([seed, split, index])
  image, classes, masks = render_scene(rng, size, max_objects)
  n = len(classes)
  record = coco.AnnotatedImage(
      image_id=image_id, height=size, width=size,
      boxes=boxes_from_masks(masks), classes=classes,
      areas=masks.reshape(n, -1).sum(axis=1).astype(np.float32),
      is_crowd=np.zeros(n, np.int64), masks=masks)
  return record, image


def make_scenes(out_dir: str, image_size: int = 64, num_train: int = 1000,
                num_eval: int = 128, seed: int = 0,
                max_objects: int = 2) -> SceneData:
  """Writes (or reuses) the scene train/validation TFRecords.

  Files: `train-0000{0,1}-of-00002`, `validation-00000-of-00001`,
  `validation_annotations.json` (COCO ground truth for the eval split) and
  the marker of `data.build_once`, which generates them once per machine.
  """
  if image_size < 16:
    raise ValueError(f'image_size must be >= 16, got {image_size}')
  if max_objects < 1 or num_train < 1 or num_eval < 1:
    raise ValueError('max_objects, num_train and num_eval must be >= 1')
  result = SceneData(os.path.join(out_dir, 'train-*'),
                     os.path.join(out_dir, 'validation-*'),
                     os.path.join(out_dir, ANNOTATION_FILE),
                     NUM_CLASSES, num_train, num_eval)

  def write(folder):
    eval_records: List[coco.AnnotatedImage] = []

    def examples(split, count):
      for i in range(count):
        image_id = i + 1 + (EVAL_ID_OFFSET if split else 0)
        record, image = scene(seed, split, i, image_size, max_objects,
                              image_id)
        if split:
          eval_records.append(record)
        encoded = tf.io.encode_jpeg(image, quality=95).numpy()
        yield coco.annotated_example(record, encoded)

    data.write_tfrecords(examples(0, num_train), os.path.join(folder, 'train'),
                         2)
    data.write_tfrecords(examples(1, num_eval),
                         os.path.join(folder, 'validation'), 1)
    coco.write_coco_annotations(os.path.join(folder, ANNOTATION_FILE),
                                eval_records, CLASS_NAMES)

  data.build_once(out_dir, {
      'dataset': 'scenes', 'version': _VERSION, 'image_size': image_size,
      'num_train': num_train, 'num_eval': num_eval, 'seed': seed,
      'max_objects': max_objects}, write)
  return result
