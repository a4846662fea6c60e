"""What PointPillars' head outputs mean: their loss against the anchors'
targets (anchors3d.assign) and the detections they decode to.

Loss, as the PointPillars paper trains (normalised by the batch's positive
anchors): a sigmoid focal loss (alpha 0.25, gamma 2) over the classes of
every anchor not ignored; SECOND's smooth-L1 (Huber, delta 1/9) on the box
residuals of positive anchors, the yaw residual through sin(predicted -
target), weighted 2; a softmax cross-entropy on the heading direction of
positive anchors, weighted 0.2.

Detections: per class, the anchors' scores above `score_threshold`, the
`pre_nms_top_k` best decoded (boxes3d.decode; a yaw whose direction bin
disagrees with the predicted one turned by pi), then non-maximum
suppression by the IoU of the boxes' axis-aligned BEV rectangles, up to
`max_detections` per frame.
"""

from typing import Dict

import numpy as np
import tensorflow as tf
import tf_keras

from official.vision.losses import focal_loss
from trainer.training import anchors3d
from trainer.training import boxes3d

FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0
HUBER_DELTA = 1.0 / 9.0
BOX_WEIGHT, DIRECTION_WEIGHT = 2.0, 0.2


def loss(outputs: Dict[str, tf.Tensor],
         targets: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """The batch's class, box, direction and total losses."""
  class_targets = targets['class_targets']
  num_classes = outputs['class_logits'].shape[-1]
  positive = class_targets > 0
  counted = tf.cast(class_targets != anchors3d.IGNORE, tf.float32)
  normaliser = tf.maximum(tf.reduce_sum(tf.cast(positive, tf.float32)), 1.0)
  one_hot = tf.one_hot(class_targets - 1, num_classes)  # 0 and -1: zeros.
  focal = focal_loss.FocalLoss(FOCAL_ALPHA, FOCAL_GAMMA,
                               reduction=tf_keras.losses.Reduction.NONE)
  class_loss = tf.reduce_sum(
      focal(one_hot, outputs['class_logits']) * counted[..., None]
  ) / normaliser

  predicted = tf.boolean_mask(outputs['box_residuals'], positive)
  wanted = tf.boolean_mask(targets['box_targets'], positive)
  # sin(a - b) = sin a cos b - cos a sin b: the yaw error without wrap-around
  # (the direction loss tells a from a + pi).
  predicted_yaw, wanted_yaw = predicted[:, 6:], wanted[:, 6:]
  predicted = tf.concat([predicted[:, :6],
                         tf.sin(predicted_yaw) * tf.cos(wanted_yaw)], axis=1)
  wanted = tf.concat([wanted[:, :6],
                      tf.cos(predicted_yaw) * tf.sin(wanted_yaw)], axis=1)
  huber = tf_keras.losses.Huber(HUBER_DELTA,
                                reduction=tf_keras.losses.Reduction.NONE)
  box_loss = tf.reduce_sum(huber(wanted[..., None], predicted[..., None])
                           ) / normaliser

  direction = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.boolean_mask(targets['direction_targets'], positive),
      logits=tf.boolean_mask(outputs['direction_logits'], positive))
  direction_loss = tf.reduce_sum(direction) / normaliser
  return {'class_loss': class_loss, 'box_loss': box_loss,
          'direction_loss': direction_loss,
          'total_loss': class_loss + BOX_WEIGHT * box_loss +
                        DIRECTION_WEIGHT * direction_loss}


def detect(outputs: Dict[str, tf.Tensor], anchors: np.ndarray,
           score_threshold: float = 0.1, pre_nms_top_k: int = 1000,
           nms_iou: float = 0.5, max_detections: int = 100
           ) -> Dict[str, tf.Tensor]:
  """One frame's outputs (no batch axis) -> boxes (max_detections, 7),
  scores, classes (1..K; 0 padding) and num_detections: per class, the
  pre_nms_top_k best anchors scoring above score_threshold, after NMS."""
  num_classes = outputs['class_logits'].shape[-1]
  flat_anchors = tf.reshape(tf.constant(anchors, tf.float32), [-1, 7])
  scores = tf.reshape(tf.sigmoid(outputs['class_logits']), [-1, num_classes])
  residuals = tf.reshape(outputs['box_residuals'], [-1, 7])
  directions = tf.reshape(tf.argmax(outputs['direction_logits'], -1,
                                    output_type=tf.int32), [-1])
  found = []
  for k in range(num_classes):
    # A fixed number of candidates, the score threshold applied by NMS: no
    # tensor of data-dependent size before it (TFLite cannot take empty
    # ones).
    top = tf.math.top_k(scores[:, k], k=min(pre_nms_top_k,
                                            int(flat_anchors.shape[0])))
    index, score = top.indices, top.values
    boxes = boxes3d.decode(tf.gather(residuals, index),
                           tf.gather(flat_anchors, index))
    flip = anchors3d.direction_bin(boxes[:, 6]) != tf.gather(directions, index)
    yaw = boxes3d.wrap_angle(boxes[:, 6] + tf.where(flip, np.pi, 0.0))
    boxes = tf.concat([boxes[:, :6], yaw[:, None]], axis=1)
    rectangles = tf.gather(anchors3d.bev_rectangles(boxes), [1, 0, 3, 2],
                           axis=1)  # y_min, x_min, y_max, x_max
    # Padded, then cut to the valid count: TFLite's NMS always pads, and
    # the unpadded op converts to padding with the first index.
    kept, valid = tf.raw_ops.NonMaxSuppressionV4(
        boxes=rectangles, scores=score, max_output_size=max_detections,
        iou_threshold=nms_iou, score_threshold=score_threshold,
        pad_to_max_output_size=True)
    kept = kept[:valid]
    found.append((tf.gather(boxes, kept), tf.gather(score, kept),
                  tf.fill(tf.shape(kept), k + 1)))
  boxes, scores, classes = (tf.concat(parts, 0) for parts in zip(*found))
  best = tf.math.top_k(scores, k=tf.minimum(tf.size(scores),
                                            max_detections)).indices
  count = tf.size(best)
  pad = max_detections - count
  return {
      'boxes': tf.pad(tf.gather(boxes, best), [[0, pad], [0, 0]]),
      'scores': tf.pad(tf.gather(scores, best), [[0, pad]]),
      'classes': tf.pad(tf.gather(classes, best), [[0, pad]]),
      'num_detections': count,
  }
