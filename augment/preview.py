"""A picture of what a policy does: training images and augmented copies.

Each row is one training image (first column as stored), then augmented
copies drawn with explicit seeds, so the same flags draw the same PNG. Boxes
are outlined in their class colour; masks are overlaid, the ignore value
(pixels a transform uncovered) in grey.
"""

from typing import Any, Dict, List, Optional

import matplotlib

matplotlib.use('Agg')  # Files only; never a display.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import pyglove as pg
import tensorflow as tf

from official.core import config_definitions as cfg
from official.vision.dataloaders import tf_example_decoder
from augment import ops
from augment import parsers
import search_spaces

_MASK_KEY = 'image/segmentation/class/encoded'
_IGNORE_COLOUR = (0.5, 0.5, 0.5, 0.8)


def read_samples(input_path: str, count: int) -> List[Dict[str, np.ndarray]]:
  """The first `count` records of a TFRecord glob: image, boxes, classes and,
  where the record has one, the class-id mask."""
  patterns = input_path.split(',') if isinstance(input_path, str) else input_path
  files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise FileNotFoundError(f'no TFRecords match {input_path}')
  decoder = tf_example_decoder.TfExampleDecoder()
  samples = []
  for serialized in tf.data.TFRecordDataset(files).take(count):
    decoded = decoder.decode(serialized)
    sample = {'image': decoded['image'].numpy(),
              'boxes': decoded['groundtruth_boxes'].numpy(),
              'classes': decoded['groundtruth_classes'].numpy()}
    features = tf.io.parse_single_example(
        serialized, {_MASK_KEY: tf.io.FixedLenFeature([], tf.string, '')})
    if features[_MASK_KEY].numpy():
      sample['mask'] = tf.io.decode_png(features[_MASK_KEY], 1).numpy()
    samples.append(sample)
  return samples


def augmented_copies(policy, sample: Dict[str, np.ndarray], task: str,
                     num_copies: int, seed: int,
                     index: int) -> List[Dict[str, np.ndarray]]:
  """`num_copies` outputs of the policy on one sample, seeded per copy.

  Detection policies see the boxes, segmentation policies the mask: what each
  task's parser hands them.
  """
  copies = []
  for copy in range(num_copies):
    image, boxes, mask = policy(
        tf.constant(sample['image']),
        boxes=tf.constant(sample['boxes']) if task == 'detection' else None,
        mask=(tf.constant(sample['mask'])
              if task == 'segmentation' and 'mask' in sample else None),
        seed=tf.constant([seed, index * 1000 + copy], tf.int32))
    copies.append({'image': image.numpy(),
                   'boxes': None if boxes is None else boxes.numpy(),
                   'classes': sample['classes'],
                   'mask': None if mask is None else mask.numpy()})
  return copies


def _draw(ax, sample: Dict[str, Optional[np.ndarray]], colours) -> None:
  ax.imshow(sample['image'])
  mask = sample.get('mask')
  if mask is not None:
    mask = mask[..., 0]
    overlay = np.zeros(mask.shape + (4,))
    for class_id in np.unique(mask):
      if class_id == 0:
        continue
      ignored = class_id == ops.AugmentOptions.mask_fill_value
      overlay[mask == class_id] = (
          _IGNORE_COLOUR if ignored else (*colours(int(class_id) % 10)[:3], 0.45))
    ax.imshow(overlay)
  boxes = sample.get('boxes')
  if boxes is not None:
    height, width = sample['image'].shape[:2]
    for (ymin, xmin, ymax, xmax), class_id in zip(boxes, sample['classes']):
      if ymax <= ymin or xmax <= xmin:
        continue  # Moved out of the image: Model Garden's parser drops it.
      ax.add_patch(plt.Rectangle(
          (xmin * width - 0.5, ymin * height - 0.5), (xmax - xmin) * width,
          (ymax - ymin) * height, fill=False, linewidth=1.5,
          edgecolor=colours(int(class_id) % 10)))
  ax.set_xticks([])
  ax.set_yticks([])


def write_preview(path: str, policy_spec: Any, task: str,
                  params: cfg.ExperimentConfig, num_images: int,
                  num_copies: int, seed: int) -> None:
  """Draws `num_images` training images of `params` and `num_copies`
  augmented copies of each under `policy_spec`, as one PNG at `path`."""
  policy = parsers.build_policy(pg.to_json_str(policy_spec), task,
                                params.task.augment_options)
  samples = read_samples(params.task.train_data.input_path, num_images)
  if task == 'segmentation' and any('mask' not in s for s in samples):
    raise ValueError(f'{params.task.train_data.input_path} has records '
                     f'without {_MASK_KEY}: no segmentation to preview')
  colours = plt.get_cmap('tab10')
  cols = 1 + num_copies
  fig, axes = plt.subplots(len(samples), cols, squeeze=False,
                           figsize=(2.2 * cols, 2.2 * len(samples)))
  for row, sample in enumerate(samples):
    # As each task's parser sees it: boxes for detection, the mask otherwise.
    shown = dict(sample)
    shown.pop('mask' if task == 'detection' else 'boxes', None)
    for col, drawn in enumerate(
        [shown] + augmented_copies(policy, sample, task, num_copies, seed, row)):
      _draw(axes[row][col], drawn, colours)
      if row == 0:
        axes[row][col].set_title('original' if col == 0 else f'augmented {col}',
                                 fontsize=9)
  fig.suptitle(search_spaces.architecture_summary(policy_spec), fontsize=8,
               wrap=True)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
