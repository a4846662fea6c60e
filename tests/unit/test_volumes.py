"""The generated 3D segmentation volumes, read by Model Garden's 3D parser."""

import numpy as np
import pytest
import tensorflow as tf
from official.projects.volumetric_models.dataloaders import (
    segmentation_input_3d)

from trainer.datasets import volumes


@pytest.fixture(scope='module')
def made(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('volumes'))
  return volumes.make_volumes(out, volume_size=16, num_train=4, num_eval=3,
                              seed=5)


def _parsed(glob, size):
  parser = segmentation_input_3d.Parser(
      input_size=[size] * 3, num_classes=volumes.NUM_CLASSES,
      num_channels=volumes.NUM_CHANNELS, label_dtype=volumes.LABEL_DTYPE)
  decoder = segmentation_input_3d.Decoder()
  files = tf.io.gfile.glob(glob)
  return [parser.parse_fn(is_training=False)(decoder.decode(record))
          for record in tf.data.TFRecordDataset(sorted(files))]


def test_records_parse_as_model_gardens_3d_format(made):
  eval_volumes = _parsed(made.eval_glob, 16)
  assert len(eval_volumes) == made.num_eval == 3
  assert len(_parsed(made.train_glob, 16)) == made.num_train == 4
  for i, (image, one_hot) in enumerate(eval_volumes):
    expected_image, expected_labels = volumes.render_volume(
        np.random.default_rng([5, 1, i]), 16)
    assert image.shape == (16, 16, 16, volumes.NUM_CHANNELS)
    assert one_hot.shape == (16, 16, 16, volumes.NUM_CLASSES)
    np.testing.assert_array_equal(image.numpy(), expected_image)
    np.testing.assert_array_equal(np.argmax(one_hot.numpy(), -1),
                                  expected_labels)
    assert set(np.unique(one_hot.numpy())) == {0.0, 1.0}
    np.testing.assert_array_equal(one_hot.numpy().sum(-1), 1.0)


def test_every_class_is_in_every_volume_and_needs_both_channels():
  means = np.zeros((volumes.NUM_CLASSES, volumes.NUM_CHANNELS))
  for i in range(6):
    image, labels = volumes.render_volume(np.random.default_rng([0, 0, i]), 32)
    counts = np.bincount(labels.ravel(), minlength=volumes.NUM_CLASSES)
    assert (counts > 0).all() and counts[0] < 0.97 * labels.size, counts
    for k in range(volumes.NUM_CLASSES):
      means[k] += image[labels == k].mean(axis=0) / 6
  t1c, flair = means.T
  oedema, core, enhancing = 1, 2, 3
  assert flair[oedema] == flair.max()  # Oedema: bright in FLAIR only.
  assert t1c[enhancing] == t1c.max()  # Enhancing rim: bright in T1c.
  assert t1c[core] < t1c[oedema] < t1c[enhancing]


def test_volumes_are_reproducible_from_the_seed():
  a = volumes.render_volume(np.random.default_rng([1, 0, 2]), 16)
  b = volumes.render_volume(np.random.default_rng([1, 0, 2]), 16)
  c = volumes.render_volume(np.random.default_rng([1, 0, 3]), 16)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize('size', [12, 20])
def test_a_volume_size_a_unet_cannot_halve_is_refused(tmp_path, size):
  with pytest.raises(ValueError, match='multiple of 8'):
    volumes.make_volumes(str(tmp_path), volume_size=size)
