"""A generated multi-channel volume dataset for 3D segmentation (BraTS-like).

Each volume is a head-like tissue ellipsoid in air with a few smooth
"organ" ellipsoids inside it (background class), and one tumour: an
ellipsoidal core (class 2) with an enhancing rim (class 3) where the
T1c-like channel is bright, inside a larger irregular oedema (class 1) that
is bright in the FLAIR-like channel. Every structure has a smooth intensity
(a random linear ramp), the whole volume a multiplicative low-frequency
bias field (as MRI's) and Gaussian noise, so no single channel's threshold
segments a class.

Records are Model Garden's 3D segmentation format
(`official.projects.volumetric_models.dataloaders.segmentation_input_3d`):
`image/encoded` the raw float32 bytes of a (D, H, W, C) volume, and
`image/class/label` the raw bytes of its one-hot (D, H, W, K) labels in
`LABEL_DTYPE` (the data config's `label_dtype`), so the same reader serves
these files and converted NIfTI data. Volume i of a split depends only on
(seed, split, i).
"""

import os
from typing import NamedTuple, Tuple

import numpy as np
import tensorflow as tf

from trainer.datasets import data

CLASS_NAMES = ('background', 'oedema', 'tumour core', 'enhancing tumour')
NUM_CLASSES = len(CLASS_NAMES)
CHANNEL_NAMES = ('t1c', 'flair')  # The two contrasts the classes need.
NUM_CHANNELS = len(CHANNEL_NAMES)
LABEL_DTYPE = 'uint8'
_VERSION = 1  # bump when the drawing changes, so old directories are redone.
# Mean intensity of each structure per channel (t1c, flair): the classes
# differ in their combination of channels, not in either alone.
_AIR = (0.0, 0.0)
_TISSUE = (0.45, 0.35)
_ORGAN = (0.65, 0.5)
_OEDEMA = (0.45, 0.85)
_CORE = (0.25, 0.6)
_ENHANCING = (0.95, 0.65)


class VolumeData(NamedTuple):
  train_glob: str
  eval_glob: str
  num_classes: int
  num_channels: int
  num_train: int
  num_eval: int


def _grid(size: int) -> np.ndarray:
  """Voxel-centre coordinates scaled to [-1, 1], shape (3, size, size, size)."""
  c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
  return np.stack(np.meshgrid(c, c, c, indexing='ij'))


def _rotation(rng: np.random.Generator) -> np.ndarray:
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  return q * np.sign(np.diag(r))


def _ellipsoid(rng, grid, centre, radii) -> np.ndarray:
  """(size,)*3 values of the ellipsoid's implicit function: < 1 inside."""
  local = np.einsum('ij,j...->i...', _rotation(rng),
                    grid - np.reshape(centre, (3, 1, 1, 1)))
  return sum((local[i] / radii[i]) ** 2 for i in range(3))


def _smooth(rng, grid, mean, spread=0.08) -> np.ndarray:
  """A per-channel intensity `mean` with a random linear ramp, (C, ...)."""
  ramp = np.einsum('i,i...->...', rng.normal(0, spread, 3), grid)
  return np.stack([m + ramp * (m > 0) for m in mean])


def render_volume(rng: np.random.Generator,
                  size: int) -> Tuple[np.ndarray, np.ndarray]:
  """(image float32 (D, H, W, C), labels uint8 (D, H, W)) of one volume."""
  grid = _grid(size)
  image = np.zeros((NUM_CHANNELS,) + (size,) * 3, np.float32)
  labels = np.zeros((size,) * 3, np.uint8)

  def paint(region, mean, label=None):
    image[:, region] = _smooth(rng, grid, mean)[:, region]
    if label is not None:
      labels[region] = label

  head = _ellipsoid(rng, grid, rng.uniform(-0.05, 0.05, 3),
                    rng.uniform(0.8, 0.95, 3)) < 1
  paint(head, _TISSUE)
  for _ in range(rng.integers(1, 4)):
    paint(head & (_ellipsoid(rng, grid, rng.uniform(-0.4, 0.4, 3),
                             rng.uniform(0.1, 0.25, 3)) < 1), _ORGAN)
  centre = rng.uniform(-0.35, 0.35, 3)
  core_radii = rng.uniform(0.3, 0.45, 3)
  # Oedema: a larger ellipsoid, made irregular by a low-frequency wobble.
  wobble = np.einsum('i,i...->...', rng.normal(0, 0.6, 3), np.sin(
      3 * grid + rng.uniform(0, 2 * np.pi, (3, 1, 1, 1))))
  oedema = head & (_ellipsoid(rng, grid, centre, core_radii *
                              rng.uniform(1.4, 1.8)) + 0.3 * wobble < 1)
  paint(oedema, _OEDEMA, 1)
  tumour = _ellipsoid(rng, grid, centre, core_radii)
  paint(head & (tumour < 1), _ENHANCING, 3)
  paint(head & (tumour < rng.uniform(0.35, 0.55)), _CORE, 2)
  # MRI-like: a smooth multiplicative bias field, then noise.
  bias = 1 + np.einsum('i,i...->...', rng.normal(0, 0.12, 3), grid)
  image = image * bias + rng.normal(0, rng.uniform(0.04, 0.08), image.shape)
  return np.moveaxis(image, 0, -1).astype(np.float32), labels


def volume_example(image: np.ndarray, labels: np.ndarray,
                   num_classes: int = NUM_CLASSES) -> tf.train.Example:
  """One example in Model Garden's 3D segmentation format: raw float32
  (D, H, W, C) image bytes, one-hot (D, H, W, K) label bytes in
  LABEL_DTYPE."""
  one_hot = np.eye(num_classes, dtype=LABEL_DTYPE)[labels]
  return tf.train.Example(features=tf.train.Features(feature={
      'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[np.ascontiguousarray(image, np.float32).tobytes()])),
      'image/class/label': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[one_hot.tobytes()])),
  }))


def make_volumes(out_dir: str, volume_size: int = 32, num_train: int = 96,
                 num_eval: int = 24, seed: int = 0) -> VolumeData:
  """Writes (or reuses) the volume train/validation TFRecords:
  `train-0000{0,1}-of-00002`, `validation-00000-of-00001` and the marker
  of `data.build_once`."""
  if volume_size < 16 or volume_size % 8:
    raise ValueError('volume_size must be a multiple of 8 and >= 16 (three '
                     f'halvings of a 4-level UNet), got {volume_size}')
  if num_train < 1 or num_eval < 1:
    raise ValueError('num_train and num_eval must be >= 1')

  def write(folder):
    def examples(split, count):
      for i in range(count):
        rng = np.random.default_rng([seed, split, i])
        yield volume_example(*render_volume(rng, volume_size))

    data.write_tfrecords(examples(0, num_train), os.path.join(folder, 'train'),
                         2)
    data.write_tfrecords(examples(1, num_eval),
                         os.path.join(folder, 'validation'), 1)

  data.build_once(out_dir, {
      'dataset': 'volumes', 'version': _VERSION, 'volume_size': volume_size,
      'num_train': num_train, 'num_eval': num_eval, 'seed': seed}, write)
  return VolumeData(os.path.join(out_dir, 'train-*'),
                    os.path.join(out_dir, 'validation-*'), NUM_CLASSES,
                    NUM_CHANNELS, num_train, num_eval)
