"""Average precision of 3D boxes per class: bird's-eye-view (BEV) and 3D
IoU, and heading-weighted AP (APH) as Waymo's and the platform's
PointPillars report it.

Per class and IoU threshold, the predictions of every frame are ranked by
score; each takes the unmatched ground-truth box of its frame it overlaps
most, if that IoU reaches the threshold (a true positive), else it is a
false positive. AP is the area under the precision-recall curve with
precision made non-increasing (all-point interpolation). APH counts each
true positive as 1 - |yaw error| / pi instead of 1. Boxes are (x, y, z, l,
w, h, yaw), lidar.py's convention; IoU is exact for rotated boxes (convex
polygon clipping).
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from trainer.datasets import lidar

# KITTI's thresholds (moderate, strict) per class.
IOU_THRESHOLDS = {'car': (0.5, 0.7), 'pedestrian': (0.25, 0.5),
                  'cyclist': (0.25, 0.5)}


def _footprint(box: np.ndarray) -> np.ndarray:
  """The box's BEV rectangle, 4 corners anticlockwise."""
  return lidar.box_corners(box)[:4, :2]


def _clip(polygon: np.ndarray, edge_start: np.ndarray,
          edge_end: np.ndarray) -> np.ndarray:
  """The part of a convex polygon left of the directed edge."""
  direction = edge_end - edge_start

  def side(p):
    return direction[0] * (p[1] - edge_start[1]) - direction[1] * (
        p[0] - edge_start[0])

  out = []
  for i, current in enumerate(polygon):
    previous = polygon[i - 1]
    s_current, s_previous = side(current), side(previous)
    if s_current >= 0:
      if s_previous < 0:
        out.append(previous + (current - previous) * s_previous / (
            s_previous - s_current))
      out.append(current)
    elif s_previous >= 0:
      out.append(previous + (current - previous) * s_previous / (
          s_previous - s_current))
  return np.array(out).reshape(-1, 2)


def _area(polygon: np.ndarray) -> float:
  if len(polygon) < 3:
    return 0.0
  x, y = polygon[:, 0], polygon[:, 1]
  return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _intersection_area(a: np.ndarray, b: np.ndarray) -> float:
  polygon, corners = _footprint(a), _footprint(b)
  for i in range(4):
    polygon = _clip(polygon, corners[i], corners[(i + 1) % 4])
    if not len(polygon):
      return 0.0
  return _area(polygon)


def iou(boxes_a: np.ndarray, boxes_b: np.ndarray,
        bird_eye_view: bool) -> np.ndarray:
  """(N, M) IoU of rotated boxes: of their footprints (BEV) or volumes."""
  boxes_a = np.asarray(boxes_a, np.float64).reshape(-1, 7)
  boxes_b = np.asarray(boxes_b, np.float64).reshape(-1, 7)
  result = np.zeros((len(boxes_a), len(boxes_b)))
  for i, a in enumerate(boxes_a):
    for j, b in enumerate(boxes_b):
      reach = (np.hypot(a[3], a[4]) + np.hypot(b[3], b[4])) / 2
      if np.hypot(a[0] - b[0], a[1] - b[1]) >= reach:
        continue
      overlap = _intersection_area(a, b)
      size_a, size_b = a[3] * a[4], b[3] * b[4]
      if not bird_eye_view:
        height = max(0.0, min(a[2] + a[5] / 2, b[2] + b[5] / 2) -
                     max(a[2] - a[5] / 2, b[2] - b[5] / 2))
        overlap, size_a, size_b = overlap * height, size_a * a[5], size_b * b[5]
      result[i, j] = overlap / (size_a + size_b - overlap)
  return result


def _average_precision(hits: np.ndarray, num_truths: int) -> float:
  """Area under precision(recall) of ranked hits (1 true, 0 false, or a
  heading weight), precision made non-increasing."""
  if not len(hits):
    return 0.0
  true = np.cumsum(hits)
  precision = true / np.arange(1, len(hits) + 1)
  recall = true / num_truths
  envelope = np.maximum.accumulate(precision[::-1])[::-1]
  steps = np.diff(np.concatenate([[0.0], recall]))
  return float(np.sum(steps * envelope))


class LidarEvaluator:
  """Collects frames, then gives AP_BEV, AP_3D and APH_BEV per class and
  threshold (keys like `AP_BEV/car@0.5`), for classes with ground truth."""

  def __init__(self, class_names: Sequence[str] = lidar.CLASS_NAMES,
               iou_thresholds: Optional[Dict[str, Tuple[float, ...]]] = None):
    self._names = tuple(class_names)
    self._thresholds = iou_thresholds or IOU_THRESHOLDS
    self._frames: List[Tuple[np.ndarray, ...]] = []

  def update(self, truth_boxes, truth_classes, boxes, scores, classes) -> None:
    """One frame: its (M, 7) ground truth with class ids 1..K and its (N,
    7) predictions with scores and class ids."""
    self._frames.append(tuple(np.asarray(v) for v in (
        truth_boxes, truth_classes, boxes, scores, classes)))

  def _hits(self, class_id: int, threshold: float, bird_eye_view: bool
            ) -> Tuple[np.ndarray, np.ndarray, int]:
    """Ranked hits and heading weights of the class's predictions, and its
    number of ground-truth boxes."""
    ranked, num_truths = [], 0
    for truth_boxes, truth_classes, boxes, scores, classes in self._frames:
      truths = truth_boxes[truth_classes == class_id].reshape(-1, 7)
      mine = classes == class_id
      predicted, predicted_scores = boxes[mine].reshape(-1, 7), scores[mine]
      num_truths += len(truths)
      overlaps = iou(predicted, truths, bird_eye_view)
      taken = np.zeros(len(truths), bool)
      for k in np.argsort(-predicted_scores, kind='stable'):
        candidates = np.where(taken, -1.0, overlaps[k])
        best = int(np.argmax(candidates)) if len(truths) else -1
        if best >= 0 and candidates[best] >= threshold:
          taken[best] = True
          error = np.angle(np.exp(1j * (predicted[k, 6] - truths[best, 6])))
          ranked.append((predicted_scores[k], 1.0, 1 - abs(error) / np.pi))
        else:
          ranked.append((predicted_scores[k], 0.0, 0.0))
    ranked.sort(key=lambda r: -r[0])
    hits = np.array([r[1] for r in ranked])
    weights = np.array([r[2] for r in ranked])
    return hits, weights, num_truths

  def result(self) -> Dict[str, float]:
    metrics = {}
    for class_id, name in enumerate(self._names, start=1):
      for threshold in self._thresholds[name]:
        key = f'{name}@{threshold:g}'
        hits, weights, num_truths = self._hits(class_id, threshold, True)
        if not num_truths:
          continue
        metrics[f'AP_BEV/{key}'] = _average_precision(hits, num_truths)
        metrics[f'APH_BEV/{key}'] = _average_precision(weights, num_truths)
        hits_3d, _, _ = self._hits(class_id, threshold, False)
        metrics[f'AP_3D/{key}'] = _average_precision(hits_3d, num_truths)
    return metrics
