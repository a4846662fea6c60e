"""3D box coding and lidar AP: residuals round-trip; rotated IoU against
areas worked out by hand; AP 1 for the ground truth as predictions, 0 for
shifted boxes, a hand-computed ranking, and APH penalising a flipped
heading."""

import math

import numpy as np
import pytest

from trainer.datasets import lidar
from trainer.training import boxes3d
from trainer.training import lidar_eval


def _scene_boxes(i):
  return lidar.render_scene(np.random.default_rng([0, 0, i]))


def test_residuals_round_trip_through_anchors():
  rng = np.random.default_rng(0)
  boxes = np.column_stack([rng.uniform(0, 60, (50, 3)),
                           rng.uniform(0.5, 5, (50, 3)),
                           rng.uniform(-math.pi, math.pi, 50)])
  anchors = np.column_stack([boxes[:, :3] + rng.normal(0, 1, (50, 3)),
                             np.tile([3.9, 1.6, 1.56], (50, 1)),
                             rng.choice([0, math.pi / 2], 50)])
  residuals = boxes3d.encode(boxes, anchors).numpy()
  assert np.abs(residuals[:, 6]).max() <= math.pi
  np.testing.assert_allclose(boxes3d.decode(residuals, anchors).numpy(),
                             boxes, rtol=1e-5, atol=1e-4)
  # A box equal to its anchor encodes to zeros.
  np.testing.assert_allclose(boxes3d.encode(anchors, anchors).numpy(), 0,
                             atol=1e-6)


def test_rotated_iou_matches_areas_worked_out_by_hand():
  unit = np.array([0, 0, 0, 1, 1, 1, 0.0])
  half_over = unit + [0.5, 0, 0, 0, 0, 0, 0]
  turned = unit + [0, 0, 0, 0, 0, 0, math.pi / 4]
  raised = unit + [0, 0, 0.5, 0, 0, 0, 0]
  bev = lidar_eval.iou([unit], [unit, half_over, turned, raised], True)[0]
  # Square and its 45-degree turn overlap in an octagon of 2(sqrt2 - 1).
  octagon = 2 * (math.sqrt(2) - 1)
  np.testing.assert_allclose(bev, [1, 1 / 3, octagon / (2 - octagon), 1],
                             atol=1e-9)
  volume = lidar_eval.iou([unit], [half_over, raised], False)[0]
  np.testing.assert_allclose(volume, [1 / 3, 1 / 3], atol=1e-9)
  far = unit + [5, 0, 0, 0, 0, 0, 0]
  assert lidar_eval.iou([unit], [far], True)[0, 0] == 0


def _evaluate(frames):
  evaluator = lidar_eval.LidarEvaluator()
  for truth, predicted, scores in frames:
    evaluator.update(truth.boxes, truth.classes, predicted, scores,
                     truth.classes)
  return evaluator.result()


def test_ground_truth_as_predictions_scores_1_and_shifted_boxes_0():
  scenes = [_scene_boxes(i) for i in range(3)]
  perfect = _evaluate([(s, s.boxes, np.linspace(1, 0.5, len(s.boxes)))
                       for s in scenes])
  assert 'AP_BEV/car@0.7' in perfect and 'AP_3D/pedestrian@0.5' in perfect
  assert perfect == {key: pytest.approx(1.0) for key in perfect}
  shifted = _evaluate([(s, s.boxes + [6, 0, 0, 0, 0, 0, 0],
                        np.ones(len(s.boxes))) for s in scenes])
  assert set(shifted) == set(perfect)
  assert all(value == 0 for value in shifted.values()), shifted


def test_ranking_and_heading_are_counted():
  car = np.array([[10, 0, -1, 4, 1.6, 1.5, 0.3], [20, 5, -1, 4, 1.6, 1.5, 0]])
  truth = lidar.Scene(np.zeros((0, 4), np.float32), car, np.array([1, 1]))
  # A false positive ranked above the one true positive: precision 0, then
  # 1/2 at recall 1/2, so AP = 1/2 * 1/2.
  wrong = np.array([[40, 0, -1, 4, 1.6, 1.5, 0]])
  result = _evaluate([(truth, np.concatenate([wrong, car[:1]]),
                       np.array([0.9, 0.8]))])
  assert result['AP_BEV/car@0.5'] == pytest.approx(0.25)
  # The right boxes facing backwards: found (AP 1), heading all wrong.
  flipped = car + [0, 0, 0, 0, 0, 0, math.pi]
  result = _evaluate([(truth, flipped, np.array([0.9, 0.8]))])
  assert result['AP_BEV/car@0.7'] == pytest.approx(1.0)
  assert result['APH_BEV/car@0.7'] == pytest.approx(0.0, abs=1e-6)
  assert 'AP_BEV/pedestrian@0.5' not in result  # No ground truth: no AP.
