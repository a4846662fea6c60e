"""NIfTI image/label pairs -> the 3D segmentation TFRecords of volumes.py.

A case is an image file in the image folder (`.nii` or `.nii.gz`: a 3D
volume, or 4D with the channels, e.g. MRI contrasts, last) and the label
file of the same name in the label folder (3D, whole non-negative class
ids, 0 background). Voxels keep the files' axis order (i, j, k), so
reading the records back gives the arrays nibabel reads. Every case must
share one shape: Model Garden's 3D reader takes one `input_size`.
"""

import os
from typing import List, NamedTuple, Tuple

import nibabel as nib
import numpy as np

from trainer.datasets import data
from trainer.datasets import volumes

_SUFFIXES = ('.nii.gz', '.nii')


class ConvertedVolumes(NamedTuple):
  paths: List[str]
  num_cases: int
  volume_shape: Tuple[int, int, int]
  num_channels: int
  num_classes: int


def _cases(image_dir: str, label_dir: str) -> List[Tuple[str, str]]:
  """(image, label) paths, sorted by name; a missing folder or label is an
  error naming the path."""
  for folder in (image_dir, label_dir):
    if not os.path.isdir(folder):
      raise FileNotFoundError(f'NIfTI folder {folder} does not exist')
  names = sorted(n for n in os.listdir(image_dir) if n.endswith(_SUFFIXES))
  if not names:
    raise ValueError(f'{image_dir} holds no .nii or .nii.gz images')
  cases = []
  for name in names:
    label = os.path.join(label_dir, name)
    if not os.path.isfile(label):
      raise FileNotFoundError(f'{os.path.join(image_dir, name)} has no label '
                              f'file {label}')
    cases.append((os.path.join(image_dir, name), label))
  return cases


def _load(path: str) -> np.ndarray:
  try:
    return np.asarray(nib.load(path).dataobj)
  except Exception as e:  # nibabel raises many types for a bad file.
    raise ValueError(f'{path} is not a readable NIfTI file: {e}') from None


def read_case(image_path: str, label_path: str
              ) -> Tuple[np.ndarray, np.ndarray]:
  """The case's float32 (i, j, k, C) image and integer (i, j, k) labels."""
  image = _load(image_path)
  if image.ndim == 3:
    image = image[..., None]
  if image.ndim != 4:
    raise ValueError(f'{image_path}: a 3D or 4D image expected, got shape '
                     f'{image.shape}')
  labels = _load(label_path)
  if labels.shape != image.shape[:3]:
    raise ValueError(f'{label_path}: label shape {labels.shape} differs from '
                     f'its image\'s {image.shape[:3]} ({image_path})')
  if not np.array_equal(labels, np.round(labels)) or labels.min() < 0:
    raise ValueError(f'{label_path}: labels must be whole class ids >= 0')
  return image.astype(np.float32), labels.astype(np.int64)


def nifti_to_tfrecords(image_dir: str, label_dir: str, output_prefix: str,
                       num_shards: int = 1) -> ConvertedVolumes:
  """Converts every case of the folders into `<output_prefix>-0000i-of-
  0000n`. Classes are 0 to the largest label found; every case is checked
  before a record is written."""
  cases = _cases(image_dir, label_dir)
  shape, num_classes = None, 0
  for image_path, label_path in cases:
    image, labels = read_case(image_path, label_path)
    if shape is None:
      shape, first = image.shape, image_path
    elif image.shape != shape:
      raise ValueError(f'{image_path}: shape {image.shape} differs from '
                       f'{first}\'s {shape}; every case needs one shape')
    num_classes = max(num_classes, int(labels.max()) + 1)

  def examples():
    for image_path, label_path in cases:
      yield volumes.volume_example(*read_case(image_path, label_path),
                                   num_classes=num_classes)

  paths = data.write_tfrecords(examples(), output_prefix, num_shards)
  return ConvertedVolumes(paths, len(cases), tuple(shape[:3]), shape[3],
                          num_classes)
