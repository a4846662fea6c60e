"""Lidar scenes with 3D boxes: a generator, and the TFRecord format that it,
the KITTI converter (kitti.py) and the PointPillars task share.

Frame: the sensor at the origin, x forward, y left, z up (KITTI's velodyne
frame), the ground plane GROUND_Z below the sensor. A box is (x, y, z, l, w,
h, yaw): its centre, its length along the heading, width and height in
metres, and the heading about z (0 along +x, anticlockwise positive).

Record (`tf.train.Example`):
  frame/id        bytes: the frame's name (a KITTI file stem, or split/index)
  lidar/points    bytes: raw float32 (N, 4): x, y, z, reflectance in [0, 1]
  objects/box     float list: M boxes, 7 numbers each, as above
  objects/class   int64 list: M class ids, 1..len(CLASS_NAMES)

A generated scene has a ground plane sampled as a spinning lidar does (rings
thinning with range) and 2-8 cars, 0-4 pedestrians and 0-3 cyclists as
boxes of their typical sizes at random non-overlapping poses; each object's
faces that look towards the sensor get points at a density falling with
range squared. Every point then gets range noise along its ray and 10% are
dropped. Objects do not occlude one another (a simplification). Scene i of
a split depends only on (seed, split, i).
"""

import os
from typing import Dict, Iterator, NamedTuple, Tuple

import numpy as np
import tensorflow as tf

from trainer.datasets import data

CLASS_NAMES = ('car', 'pedestrian', 'cyclist')
# KITTI's mean (l, w, h) per class, metres.
MEAN_SIZES = {'car': (3.88, 1.63, 1.53), 'pedestrian': (0.84, 0.66, 1.76),
              'cyclist': (1.76, 0.60, 1.74)}
GROUND_Z = -1.73  # KITTI's velodyne is 1.73 m above the road.
# PointPillars' KITTI range: x, y, z from (min) to (max).
POINT_RANGE = ((0.0, -39.68, -3.0), (69.12, 39.68, 1.0))
_VERSION = 1  # bump when the drawing changes, so old directories are redone.
_OBJECT_COUNTS = {'car': (2, 8), 'pedestrian': (0, 4), 'cyclist': (0, 3)}
_FACE_DENSITY = 20000.0  # points per m^2 of a face seen head-on at 1 m.
_GROUND_POINTS = 12000
_RANGE_NOISE_M = 0.03
_DROPOUT = 0.1


class Scene(NamedTuple):
  points: np.ndarray   # (N, 4) float32
  boxes: np.ndarray    # (M, 7) float32
  classes: np.ndarray  # (M,) int64, 1..len(CLASS_NAMES)


class LidarData(NamedTuple):
  train_glob: str
  eval_glob: str
  num_classes: int
  num_train: int
  num_eval: int


def box_corners(box: np.ndarray) -> np.ndarray:
  """The 8 corners (8, 3) of a box: bottom face first, anticlockwise."""
  x, y, z, l, w, h, yaw = box
  local = np.array([[l, w], [-l, w], [-l, -w], [l, -w]]) / 2
  rotation = np.array([[np.cos(yaw), -np.sin(yaw)],
                       [np.sin(yaw), np.cos(yaw)]])
  xy = local @ rotation.T + [x, y]
  bottom = np.column_stack([xy, np.full(4, z - h / 2)])
  top = np.column_stack([xy, np.full(4, z + h / 2)])
  return np.concatenate([bottom, top])


def _place_objects(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
  boxes, classes = [], []
  for class_id, name in enumerate(CLASS_NAMES, start=1):
    low, high = _OBJECT_COUNTS[name]
    for _ in range(rng.integers(low, high + 1)):
      size = np.array(MEAN_SIZES[name]) * rng.uniform(0.9, 1.1, 3)
      for _ in range(20):  # Tries for a free spot.
        x, y = rng.uniform(4.0, 60.0), rng.uniform(-30.0, 30.0)
        radius = np.hypot(*size[:2]) / 2
        if all(np.hypot(x - b[0], y - b[1]) > radius + np.hypot(*b[3:5]) / 2
               + 0.3 for b in boxes):
          boxes.append([x, y, GROUND_Z + size[2] / 2, *size,
                        rng.uniform(-np.pi, np.pi)])
          classes.append(class_id)
          break
  return (np.array(boxes, np.float32).reshape(-1, 7),
          np.array(classes, np.int64))


def _face_points(rng: np.random.Generator, box: np.ndarray) -> np.ndarray:
  """Points on the faces of `box` (not its bottom) that face the sensor."""
  corners = box_corners(box)
  # Faces as (origin corner, edge a, edge b): the 4 sides and the top.
  faces = [(corners[i], corners[(i + 1) % 4] - corners[i],
            corners[i + 4] - corners[i]) for i in range(4)]
  faces.append((corners[4], corners[5] - corners[4], corners[7] - corners[4]))
  centre = box[:3]
  points = []
  for origin, a, b in faces:
    normal = np.cross(a, b)
    area = np.linalg.norm(normal)
    normal /= area
    middle = origin + (a + b) / 2
    if np.dot(normal, middle - centre) < 0:
      normal = -normal  # Outward.
    facing = np.dot(normal, -middle) / np.linalg.norm(middle)
    if facing <= 0:
      continue
    count = min(int(_FACE_DENSITY * area * facing / np.dot(middle, middle)),
                2000)
    u = rng.uniform(0, 1, (count, 2))
    points.append(origin + u[:, :1] * a + u[:, 1:] * b)
  return np.concatenate(points) if points else np.zeros((0, 3))


def _inside_footprint(xy: np.ndarray, box: np.ndarray) -> np.ndarray:
  x, y, _, l, w, _, yaw = box
  d = xy - [x, y]
  along = d[:, 0] * np.cos(yaw) + d[:, 1] * np.sin(yaw)
  across = -d[:, 0] * np.sin(yaw) + d[:, 1] * np.cos(yaw)
  return (np.abs(along) <= l / 2) & (np.abs(across) <= w / 2)


def render_scene(rng: np.random.Generator) -> Scene:
  """One scene (see the module docstring)."""
  boxes, classes = _place_objects(rng)
  # Ground: ranges dense near the sensor (log-uniform), over the front half.
  ranges = 2.0 * (40.0 ** rng.uniform(0, 1, _GROUND_POINTS))
  angles = rng.uniform(-np.pi / 2, np.pi / 2, _GROUND_POINTS)
  ground = np.column_stack([ranges * np.cos(angles), ranges * np.sin(angles),
                            np.full(_GROUND_POINTS, GROUND_Z)])
  hidden = np.zeros(len(ground), bool)
  for box in boxes:
    hidden |= _inside_footprint(ground[:, :2], box)
  parts = [np.column_stack([ground[~hidden],
                            rng.uniform(0.05, 0.3, (~hidden).sum())])]
  for box in boxes:
    surface = _face_points(rng, box)
    parts.append(np.column_stack([
        surface, np.clip(rng.uniform(0.2, 0.9) + rng.normal(
            0, 0.05, len(surface)), 0, 1)]))
  points = np.concatenate(parts)
  # Range noise along each ray, then dropout, then the range.
  distance = np.linalg.norm(points[:, :3], axis=1, keepdims=True)
  points[:, :3] *= 1 + rng.normal(0, _RANGE_NOISE_M, distance.shape) / distance
  points = points[rng.uniform(0, 1, len(points)) >= _DROPOUT]
  low, high = POINT_RANGE
  keep = np.all((points[:, :3] >= low) & (points[:, :3] < high), axis=1)
  return Scene(points[keep].astype(np.float32), boxes, classes)


def scene_example(scene: Scene, frame_id: str) -> tf.train.Example:
  return tf.train.Example(features=tf.train.Features(feature={
      'frame/id': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[frame_id.encode()])),
      'lidar/points': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[np.ascontiguousarray(scene.points, np.float32).tobytes()])),
      'objects/box': tf.train.Feature(float_list=tf.train.FloatList(
          value=np.asarray(scene.boxes, np.float32).ravel())),
      'objects/class': tf.train.Feature(int64_list=tf.train.Int64List(
          value=np.asarray(scene.classes, np.int64))),
  }))


def decode(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
  """A record as tensors: frame_id, points (N, 4), boxes (M, 7), classes."""
  parsed = tf.io.parse_single_example(serialized, {
      'frame/id': tf.io.FixedLenFeature([], tf.string),
      'lidar/points': tf.io.FixedLenFeature([], tf.string),
      'objects/box': tf.io.VarLenFeature(tf.float32),
      'objects/class': tf.io.VarLenFeature(tf.int64),
  })
  return {
      'frame_id': parsed['frame/id'],
      'points': tf.reshape(tf.io.decode_raw(parsed['lidar/points'],
                                            tf.float32), [-1, 4]),
      'boxes': tf.reshape(tf.sparse.to_dense(parsed['objects/box']), [-1, 7]),
      'classes': tf.sparse.to_dense(parsed['objects/class']),
  }


def make_scenes(out_dir: str, num_train: int = 400, num_eval: int = 50,
                seed: int = 0) -> LidarData:
  """Writes (or reuses) the scenes' train/validation TFRecords and the
  marker of `data.build_once`."""
  if num_train < 1 or num_eval < 1:
    raise ValueError('num_train and num_eval must be >= 1')

  def write(folder):
    def examples(split, count) -> Iterator[tf.train.Example]:
      for i in range(count):
        yield scene_example(render_scene(np.random.default_rng(
            [seed, split, i])), f'{("train", "validation")[split]}/{i}')

    data.write_tfrecords(examples(0, num_train), os.path.join(folder, 'train'),
                         2)
    data.write_tfrecords(examples(1, num_eval),
                         os.path.join(folder, 'validation'), 1)

  data.build_once(out_dir, {
      'dataset': 'lidar', 'version': _VERSION, 'num_train': num_train,
      'num_eval': num_eval, 'seed': seed}, write)
  return LidarData(os.path.join(out_dir, 'train-*'),
                   os.path.join(out_dir, 'validation-*'), len(CLASS_NAMES),
                   num_train, num_eval)
