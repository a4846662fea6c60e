"""3D boxes (x, y, z, l, w, h, yaw; lidar.py's convention) against anchors:
the residual coding PointPillars regresses (SECOND's), in TensorFlow.

  dx, dy = (x - x_a) / d_a, (y - y_a) / d_a   d_a = the anchor's BEV diagonal
  dz = (z - z_a) / h_a
  dl, dw, dh = log(l / l_a), log(w / w_a), log(h / h_a)
  dyaw = yaw - yaw_a, wrapped to [-pi, pi)
"""

import math

import tensorflow as tf


def wrap_angle(angle):
  """The angle in [-pi, pi)."""
  return tf.math.floormod(angle + math.pi, 2 * math.pi) - math.pi


def encode(boxes, anchors):
  """(..., 7) boxes as residuals of (..., 7) anchors."""
  boxes = tf.convert_to_tensor(boxes, tf.float32)
  anchors = tf.convert_to_tensor(anchors, tf.float32)
  x, y, z, l, w, h, yaw = tf.unstack(boxes, axis=-1)
  xa, ya, za, la, wa, ha, yawa = tf.unstack(anchors, axis=-1)
  diagonal = tf.sqrt(la ** 2 + wa ** 2)
  return tf.stack([(x - xa) / diagonal, (y - ya) / diagonal, (z - za) / ha,
                   tf.math.log(l / la), tf.math.log(w / wa),
                   tf.math.log(h / ha), wrap_angle(yaw - yawa)], axis=-1)


def decode(residuals, anchors):
  """The boxes that `residuals` of (..., 7) anchors encode."""
  residuals = tf.convert_to_tensor(residuals, tf.float32)
  anchors = tf.convert_to_tensor(anchors, tf.float32)
  dx, dy, dz, dl, dw, dh, dyaw = tf.unstack(residuals, axis=-1)
  xa, ya, za, la, wa, ha, yawa = tf.unstack(anchors, axis=-1)
  diagonal = tf.sqrt(la ** 2 + wa ** 2)
  return tf.stack([xa + dx * diagonal, ya + dy * diagonal, za + dz * ha,
                   la * tf.exp(dl), wa * tf.exp(dw), ha * tf.exp(dh),
                   wrap_angle(yawa + dyaw)], axis=-1)
