"""KITTI 3D object data -> the lidar scene TFRecords of lidar.py.

A KITTI folder holds `velodyne/<frame>.bin` (float32 x, y, z, reflectance
per point, velodyne frame), `label_2/<frame>.txt` (one object per line:
type, truncation, occlusion, alpha, 2D box, h, w, l, the bottom centre x,
y, z in the rectified camera frame and rotation_y) and `calib/<frame>.txt`
(R0_rect and Tr_velo_to_cam among others). Boxes are moved to the velodyne
frame (lidar.py's box convention: centre, l, w, h, yaw about z). Cars,
pedestrians and cyclists are kept as classes 1-3, KITTI's other types
(Van, Truck, Person_sitting, Tram, Misc, DontCare) are left out, and any
other type is an error.
"""

import os
from typing import Dict, List, NamedTuple, Tuple

import numpy as np

from trainer.datasets import data
from trainer.datasets import lidar

KITTI_CLASSES = {'Car': 1, 'Pedestrian': 2, 'Cyclist': 3}
KITTI_OTHER_TYPES = ('Van', 'Truck', 'Person_sitting', 'Tram', 'Misc',
                     'DontCare')


class ConvertedScenes(NamedTuple):
  paths: List[str]
  num_frames: int
  num_objects: Dict[str, int]


def _frames(kitti_dir: str) -> List[Tuple[str, str, str, str]]:
  """(frame, points, label, calib paths) of every velodyne file, sorted."""
  velodyne = os.path.join(kitti_dir, 'velodyne')
  if not os.path.isdir(velodyne):
    raise FileNotFoundError(f'KITTI folder {kitti_dir} has no velodyne/ '
                            'folder')
  frames = []
  for name in sorted(os.listdir(velodyne)):
    if not name.endswith('.bin'):
      continue
    frame = name[:-len('.bin')]
    paths = (os.path.join(velodyne, name),
             os.path.join(kitti_dir, 'label_2', frame + '.txt'),
             os.path.join(kitti_dir, 'calib', frame + '.txt'))
    for path in paths[1:]:
      if not os.path.isfile(path):
        raise FileNotFoundError(f'{paths[0]} has no {path}')
    frames.append((frame, *paths))
  if not frames:
    raise ValueError(f'{velodyne} holds no .bin point clouds')
  return frames


def read_points(path: str) -> np.ndarray:
  size = os.path.getsize(path)
  if size % 16:
    raise ValueError(f'{path}: {size} bytes is not a whole number of points '
                     '(4 float32 each: x, y, z, reflectance)')
  return np.fromfile(path, np.float32).reshape(-1, 4)


def read_calib(path: str) -> Tuple[np.ndarray, np.ndarray]:
  """R0_rect (3, 3) and Tr_velo_to_cam (3, 4) of a calib file."""
  values = {}
  with open(path) as f:
    for line in f:
      key, sep, numbers = line.partition(':')
      if sep:
        try:
          values[key.strip()] = np.array(numbers.split(), np.float64)
        except ValueError:
          raise ValueError(f'{path}: {key.strip()} is not a list of '
                           'numbers') from None
  for key, size in (('R0_rect', 9), ('Tr_velo_to_cam', 12)):
    if values.get(key, np.zeros(0)).size != size:
      raise ValueError(f'{path}: needs {key} with {size} numbers')
  return (values['R0_rect'].reshape(3, 3),
          values['Tr_velo_to_cam'].reshape(3, 4))


def camera_to_velodyne(r0_rect: np.ndarray, tr_velo_to_cam: np.ndarray
                       ) -> np.ndarray:
  """The 4x4 transform from rectified camera to velodyne coordinates."""
  rect = np.eye(4)
  rect[:3, :3] = r0_rect
  velo_to_cam = np.eye(4)
  velo_to_cam[:3] = tr_velo_to_cam
  return np.linalg.inv(rect @ velo_to_cam)


def read_labels(path: str, to_velodyne: np.ndarray
                ) -> Tuple[np.ndarray, np.ndarray]:
  """The kept objects' boxes (M, 7) in the velodyne frame and class ids."""
  boxes, classes = [], []
  with open(path) as f:
    for number, line in enumerate(f, start=1):
      fields = line.split()
      if not fields:
        continue
      where = f'{path} line {number}'
      if fields[0] not in KITTI_CLASSES:
        if fields[0] in KITTI_OTHER_TYPES:
          continue
        raise ValueError(f'{where}: unknown class {fields[0]!r} (KITTI\'s: '
                         f'{", ".join([*KITTI_CLASSES, *KITTI_OTHER_TYPES])})')
      if len(fields) < 15:
        raise ValueError(f'{where}: {len(fields)} fields, KITTI labels have '
                         '15')
      try:
        h, w, l, x, y, z, rotation_y = map(float, fields[8:15])
      except ValueError:
        raise ValueError(f'{where}: fields 9-15 must be numbers') from None
      bottom = to_velodyne @ [x, y, z, 1.0]
      boxes.append([bottom[0], bottom[1], bottom[2] + h / 2, l, w, h,
                    -rotation_y - np.pi / 2])
      classes.append(KITTI_CLASSES[fields[0]])
  return (np.array(boxes, np.float32).reshape(-1, 7),
          np.array(classes, np.int64))


def read_frame(points_path: str, label_path: str,
               calib_path: str) -> lidar.Scene:
  boxes, classes = read_labels(
      label_path, camera_to_velodyne(*read_calib(calib_path)))
  return lidar.Scene(read_points(points_path), boxes, classes)


def kitti_to_tfrecords(kitti_dir: str, output_prefix: str,
                       num_shards: int = 1) -> ConvertedScenes:
  """Converts every frame of the folder into `<output_prefix>-0000i-of-
  0000n`; every frame is read and checked before a record is written."""
  frames = _frames(kitti_dir)
  counts = dict.fromkeys(lidar.CLASS_NAMES, 0)
  for _, *paths in frames:
    for class_id in read_frame(*paths).classes:
      counts[lidar.CLASS_NAMES[class_id - 1]] += 1
  paths = data.write_tfrecords(
      (lidar.scene_example(read_frame(*paths), frame)
       for frame, *paths in frames), output_prefix, num_shards)
  return ConvertedScenes(paths, len(frames), counts)
