"""PointPillars' anchors on the bird's-eye-view grid and their training
targets (SECOND's assignment, as the PointPillars paper trains on KITTI).

Every BEV cell holds, for each class, an anchor of the class's mean size
(lidar.MEAN_SIZES) resting on the ground (lidar.GROUND_Z), at yaw 0 and at
yaw pi/2: anchors_per_cell = 2 x classes, anchor a of class a // 2 + 1.
An anchor matches the ground-truth boxes of its own class by the IoU of
their axis-aligned BEV rectangles (a box turned to the nearer of 0 and
pi/2): positive from the class's positive threshold up, and the best anchor
of each box is positive too; negative below the negative threshold;
ignored between.
"""

import math
from typing import Dict, Sequence, Tuple

import numpy as np
import tensorflow as tf

from trainer.datasets import lidar
from trainer.datasets import pillars
from trainer.training import boxes3d

YAWS = (0.0, math.pi / 2)
# (positive, negative) IoU thresholds: PointPillars' KITTI settings.
MATCH_THRESHOLDS = {'car': (0.6, 0.45), 'pedestrian': (0.5, 0.35),
                    'cyclist': (0.5, 0.35)}
IGNORE = -1


def anchors_per_cell(class_names: Sequence[str] = lidar.CLASS_NAMES) -> int:
  return len(class_names) * len(YAWS)


def make_anchors(grid: pillars.PillarGrid,
                 class_names: Sequence[str] = lidar.CLASS_NAMES
                 ) -> Tuple[np.ndarray, np.ndarray]:
  """Anchors (rows, cols, A, 7) at the cells' centres and their class ids
  (A,)."""
  xs, ys = grid.cell_centres()
  per_cell, classes = [], []
  for class_id, name in enumerate(class_names, start=1):
    l, w, h = lidar.MEAN_SIZES[name]
    for yaw in YAWS:
      per_cell.append([lidar.GROUND_Z + h / 2, l, w, h, yaw])
      classes.append(class_id)
  per_cell = np.array(per_cell)
  anchors = np.zeros((grid.rows, grid.cols, len(per_cell), 7), np.float32)
  anchors[..., 0] = xs[None, :, None]
  anchors[..., 1] = ys[:, None, None]
  anchors[..., 2:] = per_cell
  return anchors, np.array(classes, np.int32)


def bev_rectangles(boxes: tf.Tensor) -> tf.Tensor:
  """(N, 4) x_min, y_min, x_max, y_max of boxes turned to the nearer of
  yaw 0 and pi/2."""
  x, y, _, l, w, _, yaw = tf.unstack(boxes, axis=-1)
  across = tf.abs(tf.sin(yaw)) > tf.abs(tf.cos(yaw))
  half_x = tf.where(across, w, l) / 2
  half_y = tf.where(across, l, w) / 2
  return tf.stack([x - half_x, y - half_y, x + half_x, y + half_y], axis=-1)


def _iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
  """(N, M) IoU of (N, 4) and (M, 4) axis-aligned rectangles."""
  low = tf.maximum(a[:, None, :2], b[None, :, :2])
  high = tf.minimum(a[:, None, 2:], b[None, :, 2:])
  overlap = tf.reduce_prod(tf.maximum(high - low, 0.0), axis=-1)
  area_a = tf.reduce_prod(a[:, 2:] - a[:, :2], axis=-1)
  area_b = tf.reduce_prod(b[:, 2:] - b[:, :2], axis=-1)
  return overlap / (area_a[:, None] + area_b[None, :] - overlap)


def direction_bin(yaw: tf.Tensor) -> tf.Tensor:
  """0 for headings in [0, pi), 1 for [-pi, 0): what the box residual's
  yaw (a difference from a 0 or pi/2 anchor) cannot tell apart."""
  return tf.cast(boxes3d.wrap_angle(yaw) < 0, tf.int32)


def assign(anchors: np.ndarray, anchor_classes: np.ndarray,
           boxes: tf.Tensor, classes: tf.Tensor,
           class_names: Sequence[str] = lidar.CLASS_NAMES
           ) -> Dict[str, tf.Tensor]:
  """Targets of one frame's (M, 7) boxes and class ids for the anchors:
  class_targets (rows, cols, A): the class id of a positive anchor, 0 of a
  negative, IGNORE between; box_targets (..., 7): the matched box's
  residuals (zeros where not positive); direction_targets (...)."""
  shape = anchors.shape[:-1]
  flat = tf.reshape(tf.constant(anchors), [-1, 7])
  flat_classes = tf.reshape(tf.broadcast_to(anchor_classes, shape), [-1])
  # A last placeholder box of class 0, which no anchor matches, so a frame
  # without boxes needs no special case.
  boxes = tf.concat([tf.reshape(tf.cast(boxes, tf.float32), [-1, 7]),
                     [[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]]], axis=0)
  classes = tf.concat([tf.cast(classes, tf.int32), [0]], axis=0)
  iou = tf.where(tf.equal(flat_classes[:, None], classes[None, :]),
                 _iou(bev_rectangles(flat), bev_rectangles(boxes)), -1.0)
  best_iou = tf.reduce_max(iou, axis=1)
  best_box = tf.argmax(iou, axis=1, output_type=tf.int32)
  positive_at, negative_below = (
      tf.gather([0.0] + [MATCH_THRESHOLDS[n][i] for n in class_names],
                flat_classes) for i in (0, 1))
  positive = best_iou >= positive_at
  # Each box's best anchor is positive, whatever its IoU (if they overlap).
  best_anchor = tf.argmax(iou, axis=0, output_type=tf.int32)
  overlapping = tf.reduce_max(iou, axis=0) > 0
  forced_anchor = tf.boolean_mask(best_anchor, overlapping)[:, None]
  positive = tf.tensor_scatter_nd_update(
      positive, forced_anchor, tf.ones(tf.shape(forced_anchor)[:1], tf.bool))
  best_box = tf.tensor_scatter_nd_update(
      best_box, forced_anchor,
      tf.boolean_mask(tf.range(tf.size(classes)), overlapping))
  negative = ~positive & (best_iou < negative_below)
  matched = tf.gather(boxes, best_box)
  class_targets = tf.where(positive, flat_classes,
                           tf.where(negative, 0, IGNORE))
  box_targets = tf.where(positive[:, None], boxes3d.encode(matched, flat),
                         0.0)
  direction_targets = tf.where(positive, direction_bin(matched[:, 6]), 0)
  return {
      'class_targets': tf.reshape(class_targets, shape),
      'box_targets': tf.reshape(box_targets, [*shape, 7]),
      'direction_targets': tf.reshape(direction_targets, shape),
  }
