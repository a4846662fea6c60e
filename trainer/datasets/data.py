"""Built-in datasets, written as TFRecords in Model Garden's tf.Example formats.

The same reader path then serves built-in data and a user's own TFRecords.
Files are written to a temporary name and renamed, and a dataset directory is
reused only once its completion marker exists, so an interrupted write never
leaves a half dataset that later runs would trust.
"""

import os
import re
from typing import Iterable, List, NamedTuple, Optional

from google.protobuf import message
import numpy as np
import tensorflow as tf

from trainer import fileio

DIGITS_CLASSES = 10


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
  """Writes examples round-robin into `<prefix>-0000i-of-0000n` shards."""
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


def make_digits(out_dir: str, image_size: int = 32,
                validation_fraction: float = 0.2, seed: int = 0) -> DataPaths:
  """Writes (or reuses) the digits train/validation split as JPEG TFRecords."""
  done = os.path.join(out_dir, 'COMPLETE')
  train_glob = os.path.join(out_dir, 'train-*')
  eval_glob = os.path.join(out_dir, 'validation-*')
  if fileio.exists(done):
    num_train, num_eval = (int(n) for n in fileio.read_text(done).split())
    return DataPaths(train_glob, eval_glob, DIGITS_CLASSES, num_train, num_eval)
  images, labels = digits_images(image_size)
  order = np.random.default_rng(seed).permutation(len(labels))
  num_eval = int(round(len(labels) * validation_fraction))
  eval_idx, train_idx = order[:num_eval], order[num_eval:]
  fileio.makedirs(out_dir)

  def examples(indices):
    for i in indices:
      encoded = tf.io.encode_jpeg(images[i], quality=95).numpy()
      yield classification_example(encoded, int(labels[i]))

  write_tfrecords(examples(train_idx), os.path.join(out_dir, 'train'), 2)
  write_tfrecords(examples(eval_idx), os.path.join(out_dir, 'validation'), 1)
  fileio.write_text(done, f'{len(train_idx)} {len(eval_idx)}\n')
  return DataPaths(train_glob, eval_glob, DIGITS_CLASSES, len(train_idx),
                   len(eval_idx))


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
