"""Searched augmentation policies inside Model Garden's input parsers.

A trial's policy travels in the config where the Vertex platform puts it:
`task.train_data.parser.aug_policy` (detection) and `task.train_data.aug_policy`
(segmentation), as the materialised spec's JSON (`pg.to_json_str`). The
parsers below are Model Garden's, with the policy applied to the decoded uint8
image and its boxes or mask before Model Garden normalises, flips and resizes.
"""

import dataclasses
from typing import Optional

import tensorflow as tf

from official.modeling import hyperparams
from official.vision.dataloaders import retinanet_input
from official.vision.dataloaders import segmentation_input
from official.vision.ops import preprocess_ops
from augment import ops
from augment import policies


@dataclasses.dataclass
class AugmentOptionsConfig(hyperparams.Config):
  """Pixel constants of the magnitude scaling (see augment.ops.AugmentOptions).

  The defaults are the platform's, made for 512-640 px images; tiny configs
  scale them down with the image.
  """
  translate_const: float = ops.AugmentOptions.translate_const
  translate_bbox_const: float = ops.AugmentOptions.translate_bbox_const
  cutout_const: float = ops.AugmentOptions.cutout_const
  bbox_cutout_fraction: float = ops.AugmentOptions.bbox_cutout_fraction


def build_policy(spec_json: Optional[str], task: str,
                 options: AugmentOptionsConfig) -> Optional[policies.Policy]:
  """The policy a config names, or None when it names none."""
  if not spec_json:
    return None
  return policies.policy_from_json(
      spec_json, task, ops.AugmentOptions(**options.as_dict()))


class DetectionParser(retinanet_input.Parser):
  """Model Garden's RetinaNet parser with a searched policy as its augmenter.

  Model Garden calls `self._augmenter.distort_with_boxes` on the decoded image
  and normalised boxes, and later drops the boxes left with zero area (those a
  transform moved out of the image) together with their classes.
  """

  def __init__(self, policy: policies.Policy, **kwargs):
    super().__init__(**kwargs)
    self._augmenter = policy


class SegmentationParser(segmentation_input.Parser):
  """Model Garden's segmentation parser; training images and masks go through
  the policy together, before normalisation."""

  def __init__(self, policy: policies.Policy, **kwargs):
    if kwargs.get('additional_dense_features'):
      raise ValueError('an augmentation policy cannot be combined with '
                       'additional_dense_features')
    super().__init__(**kwargs)
    self._policy = policy

  def _prepare_image_and_label(self, data):
    height, width = data['image/height'], data['image/width']
    channels = self._image_feature.num_channels
    image = tf.io.decode_image(data[self._image_feature.feature_name],
                               channels=channels, dtype=tf.uint8)
    image = tf.reshape(image, (height, width, channels))
    mask = tf.io.decode_image(data['image/segmentation/class/encoded'],
                              channels=1, dtype=tf.uint8)
    mask = tf.reshape(mask, (height, width, 1))
    image, _, mask = self._policy(image, mask=mask)
    image = preprocess_ops.normalize_image(
        image, [m / 255.0 for m in self._image_feature.mean],
        [s / 255.0 for s in self._image_feature.stddev])
    label = tf.cast(mask, tf.float32)
    if not self._preserve_aspect_ratio:
      image = tf.image.resize(image, self._output_size, method='bilinear')
      label = tf.image.resize(label, self._output_size, method='nearest')
    return image, tf.expand_dims(label[:, :, 0], 0)
