"""Built-in classification data (digits, generated shapes) is written in
Model Garden's classification format."""

import os

import numpy as np
import pytest
import tensorflow as tf

from official.vision.dataloaders import classification_input
import configs
from tests.conftest import mnasnet_sample
from trainer import spec as spec_lib
from trainer.datasets import data
from trainer.datasets import shapes
from trainer.training import experiments
from trainer.training import trial

SMALL = 'task.model.input_size=[32,32,3]'


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


def test_shapes_are_deterministic_balanced_and_64_px():
  images, labels = shapes.split_arrays(seed=3, split=1, count=600)
  again, same_labels = shapes.split_arrays(seed=3, split=1, count=600)
  assert images.shape == (600, 64, 64, 3) and images.dtype == np.uint8
  assert np.array_equal(images, again) and np.array_equal(labels, same_labels)
  other, _ = shapes.split_arrays(seed=4, split=1, count=600)
  assert not np.array_equal(images, other)
  counts = np.bincount(labels, minlength=shapes.NUM_CLASSES)
  assert shapes.NUM_CLASSES >= 10 and len(counts) == shapes.NUM_CLASSES
  assert counts.max() - counts.min() <= 1
  # Not blank: every image has the spread of a drawn scene.
  assert images.reshape(600, -1).std(axis=1).min() > 10


def test_shapes_tfrecords_decode_with_model_garden(tmp_path, monkeypatch):
  monkeypatch.setenv(data.CACHE_ENV, '')  # Generated here, each time.
  paths = shapes.make_shapes(str(tmp_path / 'shapes'), num_train=60,
                             num_eval=45)
  assert (paths.num_classes, paths.num_train, paths.num_eval) == (
      shapes.NUM_CLASSES, 60, 45)
  decoder = classification_input.Decoder()
  labels = []
  for record in tf.data.TFRecordDataset(tf.io.gfile.glob(paths.eval)):
    decoded = decoder.decode(record)
    assert tuple(tf.io.decode_jpeg(decoded['image/encoded']).shape) == (
        64, 64, 3)
    labels.append(int(decoded['image/class/label']))
  assert sorted(labels) == sorted(np.arange(45) % shapes.NUM_CLASSES)
  # Written once: the same settings reuse the files, and the same seed gives
  # the same bytes in another directory.
  mtime = tf.io.gfile.stat(tf.io.gfile.glob(paths.train)[0]).mtime_nsec
  assert shapes.make_shapes(str(tmp_path / 'shapes'), num_train=60,
                            num_eval=45) == paths
  assert tf.io.gfile.stat(tf.io.gfile.glob(paths.train)[0]).mtime_nsec == mtime
  copy = shapes.make_shapes(str(tmp_path / 'copy'), num_train=60, num_eval=45)

  def records(pattern):
    return [r.numpy() for r in tf.data.TFRecordDataset(
        sorted(tf.io.gfile.glob(pattern)))]

  assert records(copy.train) == records(paths.train)


class Generator:
  """A tiny dataset writer that counts its calls."""

  def __init__(self):
    self.calls = 0

  def __call__(self, folder):
    self.calls += 1
    with open(os.path.join(folder, 'train-00000-of-00001'), 'w') as f:
      f.write(f'records of call {self.calls}')


def _files(folder):
  return {name: (folder / name).read_text() for name in os.listdir(folder)
          if name != data.MARKER}


def test_built_in_data_is_generated_once_per_machine(tmp_path, monkeypatch):
  monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / 'cache'))
  write, settings = Generator(), {'dataset': 'toy', 'version': 1}
  data.build_once(str(tmp_path / 'job1'), settings, write)
  data.build_once(str(tmp_path / 'job2'), settings, write)
  assert write.calls == 1  # The second job dir got a copy.
  assert _files(tmp_path / 'job1') == _files(tmp_path / 'job2') == {
      'train-00000-of-00001': 'records of call 1'}
  data.build_once(str(tmp_path / 'job2'), settings, write)  # Complete: kept.
  assert write.calls == 1
  # Other settings (a new generator version): generated anew, and the job
  # dir holding the old version is rewritten.
  data.build_once(str(tmp_path / 'job2'), {**settings, 'version': 2}, write)
  assert write.calls == 2
  assert _files(tmp_path / 'job2') == {'train-00000-of-00001': 'records of call 2'}
  assert len(os.listdir(tmp_path / 'cache')) == 2  # No staging left behind.


def test_a_damaged_cache_entry_is_generated_again(tmp_path, monkeypatch):
  monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / 'cache'))
  write, settings = Generator(), {'dataset': 'toy', 'version': 1}
  data.build_once(str(tmp_path / 'job1'), settings, write)
  [entry] = os.listdir(tmp_path / 'cache')
  os.remove(tmp_path / 'cache' / entry / data.MARKER)  # e.g. half deleted
  data.build_once(str(tmp_path / 'job2'), settings, write)
  assert write.calls == 2
  assert _files(tmp_path / 'job2') == {'train-00000-of-00001': 'records of call 2'}


@pytest.mark.parametrize('cache', ['', 'unwritable'])
def test_without_a_usable_cache_data_is_written_in_the_job_dir(
    tmp_path, monkeypatch, cache):
  if cache:
    (tmp_path / 'file').write_text('not a folder')
    cache = str(tmp_path / 'file' / 'cache')
  monkeypatch.setenv(data.CACHE_ENV, cache)
  write = Generator()
  data.build_once(str(tmp_path / 'job'), {'dataset': 'toy'}, write)
  assert write.calls == 1
  assert _files(tmp_path / 'job') == {'train-00000-of-00001': 'records of call 1'}
  assert sorted(os.listdir(tmp_path)) == sorted(['job'] + (['file'] if cache else []))



def test_builtin_data_is_chosen_by_name(tmp_path):
  params = experiments.load_experiment_config(
      'nas_image_classification',
      configs.resolve('mnasnet_classification_search_cpu'))
  assert params.task.builtin_data == 'shapes'  # The default.

  def prepare(name):
    return trial.prepare(spec_lib.TrialSpec(
        'mnasnet', nas_params_str=mnasnet_sample(),
        params_override=f'task.builtin_data={name},{SMALL}'), str(tmp_path))

  task = prepare('digits').params.task
  assert task.model.num_classes == data.DIGITS_CLASSES
  assert task.train_data.input_path == str(tmp_path / 'digits_32' / 'train-*')
  with pytest.raises(experiments.ConfigError,
                     match="unknown task.builtin_data 'mnist'; valid: digits, "
                           'shapes'):
    prepare('mnist')
  assert os.listdir(tmp_path) == ['digits_32']
