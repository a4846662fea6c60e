"""Generated shape-and-texture crops: the built-in classification task.

On the built-in digits one architecture's seed-to-seed spread of top-1
exceeded the spread of a whole reference set, so it could not rank
architectures. Here the class is the shape (disc, square, triangle, cross,
ring) times the texture (solid, stripes, checks) of the object near the
centre of a 64 px crop: 15 classes. The object's size, aspect, rotation,
position, colours and stripe period vary; partial distractor objects of any
shape and texture sit at the crop border, on a colour-gradient background
with blotches and faint stripes, under colour jitter and pixel noise.
Object colours differ from the background in brightness too, so a small
network finds the silhouette within a few hundred steps.

Images are drawn in vectorised numpy, a batch at a time, each batch from
its own generator seeded by (seed, split, batch): the same seed gives the
same bytes, and the classes are balanced within one image in each split.
"""

from concurrent import futures
import os
from typing import List, Tuple

import numpy as np
import tensorflow as tf

from trainer.datasets import data

SHAPES = ('disc', 'square', 'triangle', 'cross', 'ring')
TEXTURES = ('solid', 'stripes', 'checks')
NUM_CLASSES = len(SHAPES) * len(TEXTURES)  # label = shape * 3 + texture
IMAGE_SIZE = 64
_VERSION = 1  # bump when the drawing changes, so old directories are redone.
_BATCH = 250  # images drawn at once
# Object radius, as a fraction of the image side: the class object, and the
# CLUTTER distractors (each drawn with probability 0.8) at the border.
RADIUS = (0.25, 0.35)
CLUTTER = 2
CLUTTER_RADIUS = (0.12, 0.24)
CLUTTER_INSET = (-0.05, 0.12)  # centre's distance inside the border
ROTATION = 0.15  # radians either way: objects stay upright-ish
STRIPE_ROTATION = 0.5  # radians either way, of the stripes and checks
STRIPE_PERIOD = (4.5, 8.0)  # pixels
# Object colours differ from the background under them and from each other
# by at least this much: L1 over RGB, and in brightness (luma).
MIN_COLOUR_DISTANCE = 100
MIN_LUMA_DISTANCE = 50
BACKGROUND_STRIPES = 12  # largest amplitude of the background's stripes
NOISE_STD = (2, 8)  # per-pixel noise, drawn per image
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def class_name(label: int) -> str:
  return f'{TEXTURES[label % len(TEXTURES)]} {SHAPES[label // len(TEXTURES)]}'


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Mask of `shape` in object coordinates |u|, v (it spans about [-1, 1])."""
  if shape == 0:  # disc
    return u * u + v * v <= 1.0
  if shape == 1:  # square
    return (u <= 0.85) & (np.abs(v) <= 0.85)
  if shape == 2:  # triangle, apex at v = -1
    return (v <= 0.8) & (u <= 0.55 * (v + 1.0))
  if shape == 3:  # cross, arms 0.36 thick
    v = np.abs(v)
    return (np.maximum(u, v) <= 1.0) & (np.minimum(u, v) <= 0.36)
  r2 = u * u + v * v  # ring
  return (r2 <= 1.0) & (r2 >= 0.25)


def _wave(rng: np.random.Generator, period: np.ndarray, theta: np.ndarray,
          yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
  """sin(2 pi (x cos theta + y sin theta) / period + random phase), (B, H, W),
  from its separable factors: products instead of a sine per pixel."""
  k = (2 * np.pi / period).astype(np.float32)[:, None, None]
  theta = theta.astype(np.float32)[:, None, None]
  phase = rng.uniform(0, 2 * np.pi, (len(k), 1, 1)).astype(np.float32)
  ax = k * np.cos(theta) * xx + phase
  ay = k * np.sin(theta) * yy
  return np.sin(ax) * np.cos(ay) + np.cos(ax) * np.sin(ay)


def _texture(texture: np.ndarray, rng: np.random.Generator, yy: np.ndarray,
             xx: np.ndarray) -> np.ndarray:
  """Foreground weights in [0, 1] (B, H, W): 1 for solid, else stripes or
  checks, softened at their edges so no pixel aliasing decides the class."""
  weight = np.ones((len(texture), yy.size, xx.size), np.float32)
  t = np.flatnonzero(texture)
  period = rng.uniform(*STRIPE_PERIOD, len(t))
  theta = rng.uniform(-STRIPE_ROTATION, STRIPE_ROTATION, len(t))
  wave = _wave(rng, period, theta, yy, xx)
  checks = texture[t] == 2
  wave[checks] *= _wave(rng, period[checks], theta[checks] + np.pi / 2, yy, xx)
  weight[t] = np.clip(0.5 + 1.5 * wave, 0.0, 1.0)
  return weight


def _colour(rng: np.random.Generator, avoid: List[np.ndarray]) -> np.ndarray:
  """A colour (B, 3) per image far from each of `avoid` (each (B, 3)), where
  16 draws find one."""
  colour = rng.uniform(0, 255, avoid[0].shape).astype(np.float32)
  for _ in range(16):
    close = np.zeros(len(colour), bool)
    for other in avoid:
      close |= np.abs(colour - other).sum(axis=1) < MIN_COLOUR_DISTANCE
      close |= np.abs((colour - other) @ _LUMA) < MIN_LUMA_DISTANCE
    if not close.any():
      break
    colour[close] = rng.uniform(0, 255, (int(close.sum()), 3))
  return colour


def _draw_objects(image: np.ndarray, rng: np.random.Generator,
                  shape: np.ndarray, texture: np.ndarray, centre: np.ndarray,
                  radius: np.ndarray, present: np.ndarray) -> None:
  """Paints an object (shape, texture, centre (B, 2) in pixels, radius (B,))
  into each image of `image` (B, H, W, 3) where `present`, with a random
  aspect, rotation and colours."""
  b, size = len(shape), image.shape[1]
  yy = np.arange(size, dtype=np.float32)[:, None] + 0.5
  xx = yy.T
  angle = rng.uniform(-ROTATION, ROTATION, (b, 1, 1)).astype(np.float32)
  aspect = np.exp(rng.uniform(-0.2, 0.2, (b, 1, 1))).astype(np.float32)
  r = radius.astype(np.float32)[:, None, None]
  dy = yy - centre[:, 0, None, None].astype(np.float32)
  dx = xx - centre[:, 1, None, None].astype(np.float32)
  u = (dx * np.cos(angle) + dy * np.sin(angle)) / (r * aspect)
  v = (dy * np.cos(angle) - dx * np.sin(angle)) * (aspect / r)
  cy, cx = np.clip(centre.astype(int), 0, size - 1).T
  under = image[np.arange(b), cy, cx]  # The background at the centre.
  fg = _colour(rng, [under])
  bg = _colour(rng, [under, fg])
  weight = _texture(texture, rng, yy, xx)
  for k in range(len(SHAPES)):
    i = np.flatnonzero((shape == k) & present)
    j, y, x = np.nonzero(_inside(k, np.abs(u[i]), v[i]))
    j = i[j]  # Paint only the object's pixels: a fraction of the image.
    image[j, y, x] = bg[j] + weight[j, y, x, None] * (fg[j] - bg[j])


def _background(rng: np.random.Generator, b: int, size: int) -> np.ndarray:
  """A colour gradient with low-frequency blotches and faint stripes."""
  yy = np.arange(size, dtype=np.float32)[:, None] + 0.5
  xx = yy.T
  c0 = rng.uniform(0, 255, (b, 1, 1, 3)).astype(np.float32)
  c1 = rng.uniform(0, 255, (b, 1, 1, 3)).astype(np.float32)
  phi = rng.uniform(0, 2 * np.pi, (b, 1, 1)).astype(np.float32)
  t = (xx * np.cos(phi) + yy * np.sin(phi)) / (size * np.sqrt(2)) + 0.5
  image = c0 + t[..., None] * (c1 - c0)
  coarse = rng.normal(0, 30, (b, 5, 5, 3)).astype(np.float32)
  image += tf.image.resize(coarse, [size, size], 'bilinear').numpy()
  stripes = _wave(rng, rng.uniform(4, 12, b), rng.uniform(0, np.pi, b), yy,
                  xx) * rng.uniform(0, BACKGROUND_STRIPES, (b, 1, 1)).astype(
                      np.float32)
  image += stripes[..., None]
  return image


def _clutter_centres(rng: np.random.Generator, b: int,
                     size: int) -> np.ndarray:
  """Centres (B, 2) near a random side, CLUTTER_INSET of the side inside."""
  side = rng.integers(0, 4, b)
  along = rng.uniform(0, size, b)
  depth = rng.uniform(*CLUTTER_INSET, b) * size
  edge = np.where(side % 2 == 0, depth, size - depth)
  return np.where((side < 2)[:, None], np.stack([edge, along], 1),
                  np.stack([along, edge], 1))


def render(rng: np.random.Generator, labels: np.ndarray,
           size: int = IMAGE_SIZE) -> np.ndarray:
  """uint8 crops (B, size, size, 3) of the given labels."""
  b = len(labels)
  image = _background(rng, b, size)
  for _ in range(CLUTTER):  # behind the class object
    _draw_objects(image, rng, rng.integers(0, len(SHAPES), b),
                  rng.integers(0, len(TEXTURES), b),
                  _clutter_centres(rng, b, size),
                  rng.uniform(*CLUTTER_RADIUS, b) * size, rng.random(b) < 0.8)
  centre = size / 2 + rng.uniform(-0.1, 0.1, (b, 2)) * size
  _draw_objects(image, rng, labels // len(TEXTURES), labels % len(TEXTURES),
                centre, rng.uniform(*RADIUS, b) * size, np.ones(b, bool))
  # Colour jitter (contrast, per-channel shift) and brightness noise, in place.
  image -= 128
  image *= rng.uniform(0.7, 1.2, (b, 1, 1, 1)).astype(np.float32)
  image += 128.5 + rng.normal(0, 12, (b, 1, 1, 3)).astype(np.float32)
  noise = rng.standard_normal((b, size, size, 1), np.float32)
  noise *= rng.uniform(*NOISE_STD, (b, 1, 1, 1)).astype(np.float32)
  image += noise
  return np.clip(image, 0, 255, out=image).astype(np.uint8)  # rounded: +0.5


def balanced_labels(rng: np.random.Generator, count: int) -> np.ndarray:
  """`count` labels, every class within one of count / NUM_CLASSES, shuffled."""
  return rng.permutation(np.arange(count) % NUM_CLASSES)


def split_arrays(seed: int, split: int, count: int,
                 size: int = IMAGE_SIZE) -> Tuple[np.ndarray, np.ndarray]:
  """Images and labels of a split (0 train, 1 validation): a function of
  (seed, split, count, size) only. Batches have their own generators, so
  they render in parallel threads (numpy releases the GIL) and still give
  the same bytes."""
  labels = balanced_labels(np.random.default_rng([seed, split]), count)

  def batch(start):
    rng = np.random.default_rng([seed, split, start])
    return render(rng, labels[start:start + _BATCH], size)

  with futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    images = np.concatenate(list(pool.map(batch, range(0, count, _BATCH))))
  return images, labels


def make_shapes(out_dir: str, image_size: int = IMAGE_SIZE,
                num_train: int = 12000, num_eval: int = 3000,
                seed: int = 0) -> data.DataPaths:
  """Writes (or reuses) the train/validation TFRecords in Model Garden's
  classification format (through `data.build_once`: generated once per
  machine)."""
  def write(folder):
    for split, name, count, shards in ((0, 'train', num_train, 2),
                                       (1, 'validation', num_eval, 1)):
      images, labels = split_arrays(seed, split, count, image_size)
      data.write_tfrecords(_examples(images, labels),
                           os.path.join(folder, name), shards)

  data.build_once(out_dir, {
      'dataset': 'shapes', 'version': _VERSION, 'image_size': image_size,
      'num_train': num_train, 'num_eval': num_eval, 'seed': seed}, write)
  return data.DataPaths(os.path.join(out_dir, 'train-*'),
                        os.path.join(out_dir, 'validation-*'), NUM_CLASSES,
                        num_train, num_eval)


def _examples(images: np.ndarray, labels: np.ndarray):
  for image, label in zip(images, labels):
    encoded = tf.io.encode_jpeg(image, quality=95).numpy()
    yield data.classification_example(encoded, int(label))
