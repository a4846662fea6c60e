"""NIfTI image/label folders -> 3D segmentation TFRecords: the records hold
exactly the voxels and labels nibabel reads, and bad cases are refused,
naming the file, before any record is written."""

import glob
import os

import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf

from trainer.datasets import nifti
from trainer.datasets import volumes


def _save(array, path):
  nib.save(nib.Nifti1Image(array, np.diag([1.2, 1.0, 2.5, 1.0])), str(path))


def write_cases(folder, count, size=16, seed=0):
  """BraTS-like generated cases as NIfTI pairs; returns them by name."""
  cases = {}
  (folder / 'images').mkdir(parents=True)
  (folder / 'labels').mkdir(parents=True)
  for i in range(count):
    image, labels = volumes.render_volume(np.random.default_rng([seed, i]),
                                          size)
    name = f'case{i:02d}.nii.gz'
    _save(image, folder / 'images' / name)
    _save(labels.astype(np.uint8), folder / 'labels' / name)
    cases[name] = (image, labels)
  return cases


def read_records(pattern, shape, channels, classes):
  """(image, labels) of every record under `pattern`, in shard order."""
  features = {'image/encoded': tf.io.FixedLenFeature([], tf.string),
              'image/class/label': tf.io.FixedLenFeature([], tf.string)}
  cases = []
  for path in sorted(glob.glob(pattern)):
    for record in tf.data.TFRecordDataset(path):
      example = tf.io.parse_single_example(record, features)
      image = np.frombuffer(example['image/encoded'].numpy(), np.float32)
      one_hot = np.frombuffer(example['image/class/label'].numpy(),
                              volumes.LABEL_DTYPE).reshape(*shape, classes)
      assert (one_hot.sum(-1) == 1).all()
      cases.append((image.reshape(*shape, channels), one_hot.argmax(-1)))
  return cases


def test_records_hold_the_files_voxels_and_labels(tmp_path):
  cases = write_cases(tmp_path, 3)
  converted = nifti.nifti_to_tfrecords(
      str(tmp_path / 'images'), str(tmp_path / 'labels'),
      str(tmp_path / 'out' / 'vol'))
  assert converted.num_cases == 3
  assert converted.volume_shape == (16, 16, 16)
  assert converted.num_channels == volumes.NUM_CHANNELS
  assert converted.num_classes == volumes.NUM_CLASSES
  records = read_records(str(tmp_path / 'out' / 'vol-*'), (16, 16, 16),
                         volumes.NUM_CHANNELS, volumes.NUM_CLASSES)
  for (image, labels), (record_image, record_labels) in zip(
      [cases[n] for n in sorted(cases)], records):
    np.testing.assert_array_equal(record_image, image)
    np.testing.assert_array_equal(record_labels, labels)


def test_a_3d_image_is_one_channel_and_classes_go_to_the_largest_label(
    tmp_path):
  (tmp_path / 'images').mkdir()
  (tmp_path / 'labels').mkdir()
  rng = np.random.default_rng(1)
  image = rng.normal(size=(8, 12, 16)).astype(np.float32)
  labels = np.zeros((8, 12, 16), np.int16)
  labels[2:4, 3:9, 5:7] = 6
  _save(image, tmp_path / 'images' / 'a.nii')
  _save(labels, tmp_path / 'labels' / 'a.nii')
  converted = nifti.nifti_to_tfrecords(
      str(tmp_path / 'images'), str(tmp_path / 'labels'),
      str(tmp_path / 'vol'), num_shards=2)
  assert (converted.volume_shape, converted.num_channels,
          converted.num_classes) == ((8, 12, 16), 1, 7)
  [(record_image, record_labels)] = read_records(
      str(tmp_path / 'vol-*'), (8, 12, 16), 1, 7)
  np.testing.assert_array_equal(record_image[..., 0], image)
  np.testing.assert_array_equal(record_labels, labels)


@pytest.mark.parametrize('break_case, message', [
    ('label_shape', "labels/case01.nii.gz: label shape (16, 16, 8) differs "
                    "from its image's (16, 16, 16)"),
    ('case_shape', "images/case01.nii.gz: shape (8, 8, 8, 2) differs from "),
    ('no_label', "images/case01.nii.gz has no label file "),
    ('fractional', 'labels/case01.nii.gz: labels must be whole class ids'),
    ('not_nifti', 'images/case01.nii.gz is not a readable NIfTI file'),
])
def test_a_bad_case_is_refused_naming_its_file_and_nothing_is_written(
    tmp_path, break_case, message):
  write_cases(tmp_path, 3)
  image = tmp_path / 'images' / 'case01.nii.gz'
  label = tmp_path / 'labels' / 'case01.nii.gz'
  if break_case == 'label_shape':
    _save(np.zeros((16, 16, 8), np.uint8), label)
  elif break_case == 'case_shape':
    _save(np.zeros((8, 8, 8, 2), np.float32), image)
    _save(np.zeros((8, 8, 8), np.uint8), label)
  elif break_case == 'no_label':
    label.unlink()
  elif break_case == 'fractional':
    _save(np.full((16, 16, 16), 0.5, np.float32), label)
  else:
    image.write_bytes(b'not a volume')
  with pytest.raises((ValueError, FileNotFoundError)) as raised:
    nifti.nifti_to_tfrecords(str(tmp_path / 'images'),
                             str(tmp_path / 'labels'), str(tmp_path / 'vol'))
  assert message in str(raised.value)
  assert str(tmp_path) in str(raised.value)
  assert '\n' not in str(raised.value)
  assert not glob.glob(str(tmp_path / 'vol*'))


def test_an_empty_or_missing_folder_is_refused(tmp_path):
  (tmp_path / 'images').mkdir()
  (tmp_path / 'labels').mkdir()
  with pytest.raises(ValueError, match='holds no .nii or .nii.gz images'):
    nifti.nifti_to_tfrecords(str(tmp_path / 'images'),
                             str(tmp_path / 'labels'), str(tmp_path / 'v'))
  with pytest.raises(FileNotFoundError, match='does not exist'):
    nifti.nifti_to_tfrecords(str(tmp_path / 'nope'), str(tmp_path / 'labels'),
                             str(tmp_path / 'v'))
  assert not os.path.exists(tmp_path / 'v-00000-of-00001')
