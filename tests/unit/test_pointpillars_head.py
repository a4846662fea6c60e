"""PointPillars' head: the loss is near zero for outputs that equal the
targets and counts no ignored anchor; those outputs decode, through NMS,
to exactly the scene's boxes (AP 1 by the evaluator)."""

import math

import numpy as np
import tensorflow as tf

from trainer.datasets import lidar
from trainer.datasets import pillars
from trainer.training import anchors3d
from trainer.training import lidar_eval
from trainer.training import pointpillars_head

GRID = pillars.PillarGrid(point_range=lidar.POINT_RANGE,
                          pillar_size=(0.64, 0.64), max_pillars=2000,
                          max_points=16)
ANCHORS, ANCHOR_CLASSES = anchors3d.make_anchors(GRID)


def _targets(scene):
  return anchors3d.assign(ANCHORS, ANCHOR_CLASSES, scene.boxes, scene.classes)


def _ideal_outputs(targets, confidence=12.0):
  """Outputs that say what the targets say."""
  one_hot = tf.one_hot(targets['class_targets'] - 1, len(lidar.CLASS_NAMES))
  return {'class_logits': confidence * (2 * one_hot - 1),
          'box_residuals': targets['box_targets'],
          'direction_logits': confidence * (2 * tf.one_hot(
              targets['direction_targets'], 2) - 1)}


def _batch(tensors):
  return {k: v[None] for k, v in tensors.items()}


def test_the_loss_is_near_zero_for_the_targets_and_ignores_ignored_anchors():
  scene = lidar.render_scene(np.random.default_rng([0, 0, 0]))
  targets = _batch(_targets(scene))
  ideal = _batch(_ideal_outputs(targets={k: v[0] for k, v in targets.items()}))
  perfect = pointpillars_head.loss(ideal, targets)
  assert perfect['class_loss'] < 1e-3
  assert perfect['box_loss'] < 1e-6 and perfect['direction_loss'] < 1e-3
  rng = np.random.default_rng(1)
  noisy = {k: rng.normal(0, 2, v.shape).astype(np.float32)
           for k, v in ideal.items()}  # An untrained head.
  worse = pointpillars_head.loss(noisy, targets)
  for key in ('class_loss', 'box_loss', 'direction_loss', 'total_loss'):
    assert worse[key] > 10 * perfect[key] + 1e-3, key
  # Ignored anchors' logits do not count.
  ignored = targets['class_targets'] == anchors3d.IGNORE
  assert tf.reduce_any(ignored)
  changed = dict(ideal, class_logits=tf.where(
      ignored[..., None], 5.0, ideal['class_logits']))
  assert np.isclose(pointpillars_head.loss(changed, targets)['class_loss'],
                    perfect['class_loss'])
  # A yaw residual off by pi costs no box loss (sin), only direction loss.
  turned = dict(ideal, box_residuals=ideal['box_residuals'] + tf.constant(
      [0, 0, 0, 0, 0, 0, math.pi], tf.float32))
  assert pointpillars_head.loss(turned, targets)['box_loss'] < 1e-6


def test_outputs_that_equal_the_targets_detect_the_scenes_boxes():
  """In the second frame every yaw residual is off by pi: the direction
  logits turn the boxes back."""
  evaluator = lidar_eval.LidarEvaluator()
  for i in range(2):
    scene = lidar.render_scene(np.random.default_rng([0, 0, i]))
    outputs = _ideal_outputs(_targets(scene))
    outputs['box_residuals'] += [0, 0, 0, 0, 0, 0, i * math.pi]
    found = pointpillars_head.detect(outputs, ANCHORS)
    n = int(found['num_detections'])
    assert n == len(scene.boxes)
    assert not found['scores'][n:].numpy().any()
    evaluator.update(scene.boxes, scene.classes, found['boxes'][:n].numpy(),
                     found['scores'][:n].numpy(), found['classes'][:n].numpy())
  result = evaluator.result()
  assert result['AP_3D/car@0.7'] > 0.99
  assert result['APH_BEV/car@0.7'] > 0.99
  assert all(v > 0.99 for v in result.values()), result


def test_detections_convert_to_tflite_and_equal_tensorflows():
  """The served head under TFLite: the scene's boxes, and no detection at
  all (TFLite's NMS pads its output and cannot take empty tensors)."""
  rows, cols, per_cell = ANCHORS.shape[:3]
  specs = {'class_logits': [rows, cols, per_cell, len(lidar.CLASS_NAMES)],
           'box_residuals': [rows, cols, per_cell, 7],
           'direction_logits': [rows, cols, per_cell, 2]}

  class Head(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec(s, tf.float32)
                                  for s in specs.values()])
    def detect(self, class_logits, box_residuals, direction_logits):
      return pointpillars_head.detect(
          {'class_logits': class_logits, 'box_residuals': box_residuals,
           'direction_logits': direction_logits}, ANCHORS)

  head = Head()
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [head.detect.get_concrete_function()], head)
  interpreter = tf.lite.Interpreter(model_content=converter.convert())
  run = interpreter.get_signature_runner()
  scene = lidar.render_scene(np.random.default_rng([0, 0, 0]))
  ideal = {k: v.numpy().astype(np.float32)
           for k, v in _ideal_outputs(_targets(scene), confidence=3).items()}
  # Scores without ties (whose order TFLite may change), all others under
  # the threshold.
  ideal['class_logits'] += np.random.default_rng(0).uniform(
      0, 0.5, ideal['class_logits'].shape).astype(np.float32)
  nothing = dict(ideal, class_logits=np.full_like(ideal['class_logits'], -9))
  for outputs, count in ((ideal, len(scene.boxes)), (nothing, 0)):
    expected = head.detect(**outputs)
    got = run(**outputs)
    assert int(expected['num_detections']) == int(got['num_detections']) == (
        count)
    for key in ('boxes', 'scores', 'classes'):
      np.testing.assert_allclose(got[key], expected[key].numpy(), atol=1e-4)
