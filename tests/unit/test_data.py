"""Built-in digits are written in Model Garden's classification format."""

import tensorflow as tf

from official.vision.dataloaders import classification_input
from trainer.datasets import data


def test_digits_tfrecords_decode_with_model_garden(tmp_path):
  paths = data.make_digits(str(tmp_path / 'digits'), image_size=32)
  assert paths.num_train + paths.num_eval == 1797
  assert paths.num_eval == round(1797 * 0.2)
  decoder = classification_input.Decoder()
  labels, shapes = [], set()
  for record in tf.data.TFRecordDataset(tf.io.gfile.glob(paths.eval)):
    decoded = decoder.decode(record)
    image = tf.io.decode_jpeg(decoded['image/encoded'])
    shapes.add(tuple(image.shape))
    labels.append(int(decoded['image/class/label']))
  assert len(labels) == paths.num_eval
  assert shapes == {(32, 32, 3)}
  assert set(labels) == set(range(10))
  # A second call reuses the finished files rather than rewriting them.
  mtime = tf.io.gfile.stat(tf.io.gfile.glob(paths.train)[0]).mtime_nsec
  again = data.make_digits(str(tmp_path / 'digits'), image_size=32)
  assert again == paths
  assert tf.io.gfile.stat(tf.io.gfile.glob(paths.train)[0]).mtime_nsec == mtime


def test_split_is_seeded(tmp_path):
  a = data.make_digits(str(tmp_path / 'a'), image_size=16, seed=4)
  b = data.make_digits(str(tmp_path / 'b'), image_size=16, seed=4)
  c = data.make_digits(str(tmp_path / 'c'), image_size=16, seed=5)

  def records(pattern):
    return [r.numpy() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern))]

  assert len(records(a.train)) == a.num_train
  assert records(a.eval) == records(b.eval)
  assert records(a.eval) != records(c.eval)
