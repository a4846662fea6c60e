"""Images/s of our RandAugment detection policy against Model Garden's own.

Both augment the same in-memory images with boxes (numpy-made, 1-5 boxes
each) inside a `tf.data` map with the same parallelism: (a) nas-garden's
`RandAugment(N, M)` detection policy (`augment/policies.py`), (b) Model
Garden's `RandAugment.build_for_detection(N, M)`, restricted with
`exclude_ops` to the same 10 ops (Equalize, Solarize, Color, Cutout,
SolarizeAdd, TranslateX/Y, ShearX/Y, Rotate; Model Garden also draws an
identity op), with the same translate and cutout constants. After one
warm-up pass of each, the two are measured alternately; medians reported.
Last line: JSON with the M = max(--magnitudes) figures, ratio = ours/theirs.

Usage: python bench/augment_throughput.py [--images=256] [--size=256]
         [--magnitudes=5,10] [--repeats=3] [--parallel_calls=1] [--smoke]

--smoke: seconds, not minutes (SMOKE: a few small images, one magnitude,
one pass), to check the bench still runs; its figures mean nothing.
"""

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # pylint: disable=wrong-import-position
from official.vision.ops import augment  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from augment import ops  # pylint: disable=wrong-import-position
from augment import policies  # pylint: disable=wrong-import-position
import search_spaces  # pylint: disable=wrong-import-position
import _smoke  # pylint: disable=wrong-import-position  (bench/)

NUM_OPS = 2
MAX_BOXES = 5
SEED = 3
# Model Garden's defaults, which are also ours scaled from ~640 px to 256 px.
TRANSLATE_CONST = 100.0
CUTOUT_CONST = 40.0
# --smoke's settings (flags given explicitly still win).
SMOKE = {'images': 4, 'size': 64, 'magnitudes': '10', 'repeats': 1}
# Model Garden's RandAugment ops that our detection table does not have.
MODEL_GARDEN_EXTRA_OPS = ['AutoContrast', 'Invert', 'Posterize', 'Contrast',
                          'Brightness', 'Sharpness']


def make_source(num_images: int, size: int) -> tf.data.Dataset:
  """Cached (image uint8 [size, size, 3], boxes float32 [1..5, 4]) pairs."""
  rng = np.random.RandomState(SEED)
  images = rng.randint(0, 256, (num_images, size, size, 3)).astype(np.uint8)
  corners = np.sort(rng.uniform(0, 1, (num_images, MAX_BOXES, 2, 2)), axis=2)
  # Sorted (y, x) pairs: point 0 is (ymin, xmin), point 1 (ymax, xmax).
  boxes = corners.reshape(num_images, MAX_BOXES, 4)
  counts = rng.randint(1, MAX_BOXES + 1, num_images)
  source = tf.data.Dataset.from_tensor_slices(
      (images, boxes.astype(np.float32), counts))
  return source.map(lambda image, box, count: (image, box[:count])).cache()


def pipelines(source, magnitude, parallel_calls):
  """{'ours': dataset, 'model_garden': dataset} at one magnitude."""
  ours = policies.make_policy(
      search_spaces.RandAugmentSpec(num_ops=NUM_OPS, magnitude=magnitude,
                                    task='detection'),
      'detection',
      ops.AugmentOptions(translate_const=TRANSLATE_CONST,
                         cutout_const=CUTOUT_CONST))
  theirs = augment.RandAugment.build_for_detection(
      num_layers=NUM_OPS, magnitude=magnitude, cutout_const=CUTOUT_CONST,
      translate_const=TRANSLATE_CONST, exclude_ops=MODEL_GARDEN_EXTRA_OPS)
  assert len(theirs.available_ops) == len(ops.RANDAUGMENT_OPS['detection'])
  return {name: source.map(augmenter.distort_with_boxes,
                           num_parallel_calls=parallel_calls)
          for name, augmenter in (('ours', ours), ('model_garden', theirs))}


def images_per_s(dataset: tf.data.Dataset, num_images: int) -> float:
  started = time.perf_counter()
  count = sum(1 for _ in dataset)
  assert count == num_images
  return num_images / (time.perf_counter() - started)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--images', type=int, default=256)
  parser.add_argument('--size', type=int, default=256, help='image side, px')
  parser.add_argument('--magnitudes', default='5,10',
                      help='comma-separated RandAugment magnitudes M')
  parser.add_argument('--repeats', type=int, default=3,
                      help='alternating passes of each side; medians reported')
  parser.add_argument('--parallel_calls', type=int, default=1,
                      help='tf.data map parallelism of both (-1: AUTOTUNE)')
  args = _smoke.parse_args(parser, SMOKE)
  magnitudes = [int(m) for m in args.magnitudes.split(',')]
  tf.random.set_seed(SEED)
  source = make_source(args.images, args.size)
  print(f'RandAugment N={NUM_OPS} on {args.images} images of {args.size} px '
        f'with 1-{MAX_BOXES} boxes, tf.data map num_parallel_calls='
        f'{args.parallel_calls}, {args.repeats} alternating passes', flush=True)
  print(f'{"M":>4}{"nas-garden img/s":>20}{"Model Garden img/s":>22}'
        f'{"ratio":>9}')
  results = {}
  for magnitude in magnitudes:
    datasets = pipelines(source, magnitude, args.parallel_calls)
    speeds = {name: [] for name in datasets}
    for dataset in datasets.values():
      images_per_s(dataset, args.images)  # warm-up
    for _ in range(args.repeats):
      for name, dataset in datasets.items():
        speeds[name].append(images_per_s(dataset, args.images))
    ours = statistics.median(speeds['ours'])
    theirs = statistics.median(speeds['model_garden'])
    results[magnitude] = (ours, theirs)
    print(f'{magnitude:>4}{ours:>20.1f}{theirs:>22.1f}{ours / theirs:>9.2f}',
          flush=True)
  ours, theirs = results[max(magnitudes)]
  print(json.dumps({'ours_images_per_s': round(ours, 1),
                    'model_garden_images_per_s': round(theirs, 1),
                    'ratio': round(ours / theirs, 3)}))


if __name__ == '__main__':
  main()
