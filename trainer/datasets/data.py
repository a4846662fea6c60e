"""Built-in datasets, written as TFRecords in Model Garden's tf.Example formats.

The same reader path then serves built-in data and a user's own TFRecords.
Files are written to a temporary name and renamed, and a dataset directory is
reused only once its completion marker holds the settings it was written
with, so an interrupted write never leaves a half dataset that later runs
would trust. Each built-in dataset is generated once per machine, in the
cache (`build_once`), and copied into every job dir that uses it.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Callable, Iterable, List, NamedTuple, Optional

from google.protobuf import message
import numpy as np
import tensorflow as tf

from trainer import fileio

DIGITS_CLASSES = 10
DIGITS_COUNT = 1797  # scikit-learn's bundled 8x8 digits
MARKER = 'COMPLETE'
# Where built-in data is generated once; empty: in each job dir instead.
CACHE_ENV = 'NAS_GARDEN_DATA_CACHE'


class DataPaths(NamedTuple):
  train: str
  eval: str
  num_classes: int
  num_train: int
  num_eval: int


def classification_example(encoded_image: bytes, label: int) -> tf.train.Example:
  """One example in Model Garden's classification format."""
  return tf.train.Example(features=tf.train.Features(feature={
      'image/encoded': tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[encoded_image])),
      'image/format': tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[b'jpeg'])),
      'image/class/label': tf.train.Feature(
          int64_list=tf.train.Int64List(value=[label])),
  }))


def write_tfrecords(examples: Iterable[tf.train.Example], path_prefix: str,
                    num_shards: int = 1) -> List[str]:
  """Writes examples round-robin into `<prefix>-0000i-of-0000n` shards
  (the prefix's folder made if missing)."""
  if os.path.dirname(path_prefix):
    fileio.makedirs(os.path.dirname(path_prefix))
  paths = [f'{path_prefix}-{i:05d}-of-{num_shards:05d}' for i in range(num_shards)]
  writers = [tf.io.TFRecordWriter(p + '.tmp') for p in paths]
  try:
    for i, example in enumerate(examples):
      writers[i % num_shards].write(example.SerializeToString())
  finally:
    for w in writers:
      w.close()
  for p in paths:
    tf.io.gfile.rename(p + '.tmp', p, overwrite=True)
  return paths


def digits_images(image_size: int) -> tuple:
  """scikit-learn's bundled 8x8 digits as uint8 RGB images of `image_size`."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  gray = (digits.images / 16.0 * 255.0).astype(np.float32)[..., None]
  resized = tf.image.resize(gray, [image_size, image_size], method='bilinear')
  rgb = tf.cast(tf.clip_by_value(tf.repeat(resized, 3, axis=-1), 0, 255), tf.uint8)
  return rgb.numpy(), digits.target.astype(np.int64)


def build_once(out_dir: str, settings: dict,
               write: Callable[[str], None]) -> None:
  """Makes `out_dir` hold the dataset that `write(folder)` writes for
  `settings` (JSON; a generator's version among them).

  A folder whose marker holds the same settings is reused as it is. Else the
  files come from this machine's cache of built-in data ($NAS_GARDEN_DATA_CACHE,
  default the user cache's `data`), generated there on first use, and are
  copied in: a job dir stays self-contained (a Ray worker or a URL job dir
  reads its own copy) and a new job dir costs a copy, not a generation.
  """
  marker = os.path.join(out_dir, MARKER)
  if _marked(marker, settings):
    return
  fileio.remove(marker)  # Other settings: rewritten below.
  fileio.makedirs(out_dir)
  cached = _cached(settings, write)
  if cached:
    for name in sorted(os.listdir(cached)):
      if name != MARKER:
        fileio.copy(os.path.join(cached, name), os.path.join(out_dir, name))
  else:
    write(out_dir)
  fileio.write_text(marker, json.dumps(settings, sort_keys=True))


def _marked(marker: str, settings: dict) -> bool:
  if not fileio.exists(marker):
    return False
  try:
    return json.loads(fileio.read_text(marker)) == settings
  except ValueError:  # Cut short: not complete.
    return False


def _cached(settings: dict, write: Callable[[str], None]) -> Optional[str]:
  """The cache's complete folder for `settings`, generated (in a staging
  folder, renamed into place) if it is not there; None when the cache is
  off or cannot be written (the caller writes into the job dir)."""
  root = os.environ.get(CACHE_ENV, fileio.user_cache('data'))
  if not root:
    return None
  key = json.dumps(settings, sort_keys=True)
  folder = os.path.join(root, hashlib.sha256(key.encode()).hexdigest()[:16])
  if _marked(os.path.join(folder, MARKER), settings):
    return folder
  try:
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(dir=root, prefix='.staging-')
  except OSError:
    return None
  try:
    write(staging)
    fileio.write_text(os.path.join(staging, MARKER), key)
    if os.path.isdir(folder) and not _marked(os.path.join(folder, MARKER),
                                             settings):
      shutil.rmtree(folder)  # Damaged (no matching marker): ours replaces it.
    os.rename(staging, folder)
  except OSError:  # Another process put it there first.
    if not _marked(os.path.join(folder, MARKER), settings):
      raise
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return folder


def make_digits(out_dir: str, image_size: int = 32,
                validation_fraction: float = 0.2, seed: int = 0) -> DataPaths:
  """Writes (or reuses) the digits train/validation split as JPEG TFRecords."""
  # The split is known without loading scikit-learn (a second per trial).
  order = np.random.default_rng(seed).permutation(DIGITS_COUNT)
  num_eval = int(round(len(order) * validation_fraction))
  eval_idx, train_idx = order[:num_eval], order[num_eval:]

  def write(folder):
    images, labels = digits_images(image_size)
    assert len(labels) == DIGITS_COUNT, len(labels)

    def examples(indices):
      for i in indices:
        encoded = tf.io.encode_jpeg(images[i], quality=95).numpy()
        yield classification_example(encoded, int(labels[i]))
    write_tfrecords(examples(train_idx), os.path.join(folder, 'train'), 2)
    write_tfrecords(examples(eval_idx), os.path.join(folder, 'validation'), 1)

  build_once(out_dir, {'dataset': 'digits', 'image_size': image_size,
                       'validation_fraction': validation_fraction,
                       'seed': seed}, write)
  return DataPaths(os.path.join(out_dir, 'train-*'),
                   os.path.join(out_dir, 'validation-*'), DIGITS_CLASSES,
                   len(train_idx), len(eval_idx))


def check_files(pattern: str, flag: str) -> List[str]:
  """Files matching a data glob, each of whose first record is a tf.Example;
  a one-line error naming the flag, or the file, otherwise. (Reading every
  record would take minutes on COCO; a trial names a file corrupt further
  in, see find_corrupt_record.)"""
  files = tf.io.gfile.glob(pattern)
  if not files:
    raise FileNotFoundError(f'no files match {flag}={pattern}')
  for path in files:
    try:
      for record in tf.data.TFRecordDataset(path).take(1):
        tf.train.Example.FromString(record.numpy())
    except (tf.errors.OpError, message.DecodeError) as e:
      raise ValueError(f'{path} ({flag}) is not a TFRecord file of '
                       f'tf.Examples: {_reason(e)}') from None
  return files


def find_corrupt_record(input_paths: Iterable[str]) -> Optional[str]:
  """'<file>: <problem>' for the first file of Model Garden input paths
  (globs, comma-separated) holding an unreadable record, read whole; None
  if all read. What TensorFlow's DataLossError does not say."""
  for input_path in input_paths:
    for pattern in filter(None, str(input_path).split(',')):
      for path in tf.io.gfile.glob(pattern):
        try:
          for _ in tf.data.TFRecordDataset(path):
            pass
        except tf.errors.OpError as e:
          return f'{path}: {_reason(e)}'
  return None


def _reason(error: Exception) -> str:
  """The message of a TensorFlow op error without its function-node prefix
  and op suffix."""
  text = error.message if isinstance(error, tf.errors.OpError) else str(error)
  text = re.sub(r'\{\{function_node [^}]*\}\}|\[Op:\w+\].*$', '', text)
  return ' '.join(text.split())
