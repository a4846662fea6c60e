"""PointPillars anchors and targets: anchors sit at the cells' centres with
their class's size; a box on an anchor makes it positive with zero
residuals, other classes' anchors and far anchors negative, near misses
ignored; positives' residuals decode to their boxes."""

import math

import numpy as np
import tensorflow as tf

from trainer.datasets import lidar
from trainer.datasets import pillars
from trainer.training import anchors3d
from trainer.training import boxes3d

GRID = pillars.PillarGrid(point_range=((0.0, -8.0, -3.0), (16.0, 8.0, 1.0)),
                          pillar_size=(0.5, 0.5), max_pillars=100,
                          max_points=8)
ANCHORS, ANCHOR_CLASSES = anchors3d.make_anchors(GRID)
CAR_0, CAR_90, PEDESTRIAN_0 = 0, 1, 2  # Anchor indices within a cell.


def test_anchors_sit_at_cell_centres_with_their_class_size():
  assert ANCHORS.shape == (32, 32, anchors3d.anchors_per_cell(), 7)
  assert ANCHOR_CLASSES.tolist() == [1, 1, 2, 2, 3, 3]
  # Cell (row 3, column 5): x = 5.5 * 0.5, y = -8 + 3.5 * 0.5.
  np.testing.assert_allclose(ANCHORS[3, 5, CAR_90],
                             [2.75, -6.25, lidar.GROUND_Z + 1.53 / 2, 3.88,
                              1.63, 1.53, math.pi / 2], rtol=1e-6)
  np.testing.assert_allclose(ANCHORS[3, 5, PEDESTRIAN_0, 3:6],
                             lidar.MEAN_SIZES['pedestrian'], rtol=1e-6)


def _assign(boxes, classes):
  targets = anchors3d.assign(ANCHORS, ANCHOR_CLASSES,
                             np.array(boxes, np.float32).reshape(-1, 7),
                             np.array(classes, np.int32))
  return {k: v.numpy() for k, v in targets.items()}


def test_a_box_on_an_anchor_makes_it_positive_and_others_negative():
  car = ANCHORS[10, 12, CAR_0].copy()
  targets = _assign([car], [1])
  classes = targets['class_targets']
  assert classes[10, 12, CAR_0] == 1
  np.testing.assert_allclose(targets['box_targets'][10, 12, CAR_0], 0,
                             atol=1e-6)
  # The turned car anchor overlaps it by IoU 0.3 or so: negative for a car
  # (below 0.45); other classes never match a car.
  assert classes[10, 12, CAR_90] == 0
  assert (classes[..., 2:] == 0).all()
  assert (classes[0, 0] == 0).all()
  # A car anchor half a cell along: IoU (3.88 - 0.5) / (3.88 + 0.5) = 0.77,
  # positive; two cells along: 0.59, ignored (between 0.45 and 0.6).
  assert classes[10, 13, CAR_0] == 1
  assert classes[10, 14, CAR_0] == anchors3d.IGNORE
  assert classes[10, 16, CAR_0] == 0  # Four cells: 0.32.
  positives = classes > 0
  decoded = boxes3d.decode(targets['box_targets'][positives],
                           ANCHORS[positives]).numpy()
  np.testing.assert_allclose(decoded, np.tile(car, (len(decoded), 1)),
                             atol=1e-5)


def test_a_small_box_still_gets_its_best_anchor_and_headings_are_binned():
  # A pedestrian between cell centres, turned backwards: no anchor reaches
  # 0.5, its best one is positive anyway; direction bin 1 (yaw in [-pi, 0)).
  pedestrian = [5.0, 0.0, -0.85, 0.5, 0.4, 1.7, -2.0]
  targets = _assign([pedestrian], [2])
  classes = targets['class_targets']
  assert (classes == 2).sum() == 1
  [where] = np.argwhere(classes == 2)
  assert ANCHOR_CLASSES[where[2]] == 2
  assert targets['direction_targets'][tuple(where)] == 1
  decoded = boxes3d.decode(targets['box_targets'][tuple(where)],
                           ANCHORS[tuple(where)]).numpy()
  np.testing.assert_allclose(decoded, pedestrian, atol=1e-5)


def test_a_frame_without_boxes_is_all_negative():
  targets = _assign(np.zeros((0, 7)), [])
  assert (targets['class_targets'] == 0).all()
  assert not targets['box_targets'].any()
  # Works inside tf.data, as the input pipeline calls it.
  dataset = tf.data.Dataset.from_tensors(
      (tf.zeros([0, 7]), tf.zeros([0], tf.int32))).map(
          lambda b, c: anchors3d.assign(ANCHORS, ANCHOR_CLASSES, b, c))
  assert (next(iter(dataset))['class_targets'].numpy() == 0).all()
