"""RandAugment and AutoAugment policies from materialised augmentation specs.

`make_policy` turns what the `randaugment_*` / `autoaugment_*` search spaces
materialise to into a callable that augments one image with its boxes or
mask, as Vertex AI NAS applies such a policy. A policy is deterministic given
a seed and draws one otherwise, so it runs inside `tf.data` map functions; it
also speaks Model Garden's augmenter protocol (`distort`,
`distort_with_boxes`) so a RetinaNet parser can use it as its `_augmenter`.
"""

import functools
from typing import Any, Optional, Sequence, Tuple

import pyglove as pg
import tensorflow as tf

from augment import ops
import search_spaces

# AutoAugment bbox-only ops apply per box with the op's probability / 3, so
# crowded images do not get most boxes distorted (the platform's choice).
BBOX_ONLY_PROB_DIVISOR = 3.0
_SEED_MAXVAL = 2**31 - 1


class Policy:
  """Augments (image, boxes, mask); subclasses say which ops run."""

  def __init__(self, task: str, options: ops.AugmentOptions):
    self.task = task
    self.options = options

  def __call__(
      self, image: tf.Tensor, boxes: Optional[tf.Tensor] = None,
      mask: Optional[tf.Tensor] = None, seed: Optional[tf.Tensor] = None
  ) -> Tuple[tf.Tensor, Optional[tf.Tensor], Optional[tf.Tensor]]:
    """Returns (image, boxes, mask), None where not given.

    `seed`: int32/int64 [2] for a reproducible result; None draws one from
    the global (stateful) generator. Outputs keep the inputs' dtypes: a
    non-uint8 image or mask is clipped and cast to uint8 for the ops and cast
    back, as Model Garden's augmenters do; boxes are computed in float32.
    """
    if seed is None:
      seed = tf.random.uniform([2], maxval=_SEED_MAXVAL, dtype=tf.int32)
    inputs = {'image': image, 'boxes': boxes, 'mask': mask}
    inputs = {key: tf.convert_to_tensor(value)
              for key, value in inputs.items() if value is not None}
    sample = {key: tf.saturate_cast(value, tf.uint8)
              for key, value in inputs.items() if key != 'boxes'}
    if 'boxes' in inputs:
      sample['boxes'] = tf.cast(inputs['boxes'], tf.float32)
    sample = self._augment(sample, seed)
    outputs = {key: tf.cast(sample[key], value.dtype)
               for key, value in inputs.items()}
    return outputs['image'], outputs.get('boxes'), outputs.get('mask')

  def distort(self, image: tf.Tensor) -> tf.Tensor:
    """Model Garden's augmenter protocol: the image alone."""
    return self(image)[0]

  def distort_with_boxes(self, image: tf.Tensor,
                         boxes: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Model Garden's augmenter protocol (RetinaNet parser's `_augmenter`)."""
    image, boxes, _ = self(image, boxes)
    return image, boxes

  def _augment(self, sample, seed):
    raise NotImplementedError


class RandAugmentPolicy(Policy):
  """`num_ops` uniform draws (with replacement) from the task's table, each
  applied at `magnitude`; no identity option, as on the platform."""

  def __init__(self, num_ops: int, magnitude: float, task: str,
               options: ops.AugmentOptions):
    super().__init__(task, options)
    self.num_ops = num_ops
    self.magnitude = float(magnitude)
    self.op_names = ops.RANDAUGMENT_OPS[task]

  def _augment(self, sample, seed):
    layer_seeds = tf.random.experimental.stateless_split(seed, self.num_ops)
    for layer_seed in tf.unstack(layer_seeds):
      choice_seed, op_seed = tf.unstack(
          tf.random.experimental.stateless_split(layer_seed, 2))
      choice = tf.random.stateless_uniform(
          [], choice_seed, maxval=len(self.op_names), dtype=tf.int32)
      sample = tf.switch_case(choice, [
          functools.partial(ops.OPS[name], sample, self.magnitude, op_seed,
                            self.options)
          for name in self.op_names])
    return sample


class AutoAugmentPolicy(Policy):
  """One uniformly drawn sub-policy per image; its ops run in sequence, each
  with its probability (bbox-only ops: per box, probability / 3)."""

  def __init__(self, sub_policies: Sequence[Sequence[Tuple[str, float, float]]],
               task: str, options: ops.AugmentOptions):
    super().__init__(task, options)
    self.sub_policies = tuple(tuple(sub) for sub in sub_policies)

  def _augment(self, sample, seed):
    choice_seed, ops_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2))
    choice = tf.random.stateless_uniform(
        [], choice_seed, maxval=len(self.sub_policies), dtype=tf.int32)
    return tf.switch_case(choice, [
        functools.partial(self._apply_sub_policy, sub, sample, ops_seed)
        for sub in self.sub_policies])

  def _apply_sub_policy(self, sub_policy, sample, seed):
    op_seeds = tf.unstack(
        tf.random.experimental.stateless_split(seed, len(sub_policy)))
    for (name, magnitude, prob), op_seed in zip(sub_policy, op_seeds):
      if prob <= 0.0:
        continue
      gate_seed, run_seed = tf.unstack(
          tf.random.experimental.stateless_split(op_seed, 2))
      op = functools.partial(ops.OPS[name], magnitude=magnitude, seed=run_seed,
                             options=self.options)
      if name in ops.BBOX_ONLY_OPS:
        sample = op(sample, prob=prob / BBOX_ONLY_PROB_DIVISOR)
      elif prob >= 1.0:
        sample = op(sample)
      else:
        sample = tf.cond(
            tf.random.stateless_uniform([], gate_seed) < prob,
            functools.partial(op, sample), functools.partial(dict, sample))
    return sample


def _check_task(task: str) -> None:
  if task not in search_spaces.AUGMENTATION_TASKS:
    raise ValueError(f'augmentation task {task!r} is not one of '
                     f'{search_spaces.AUGMENTATION_TASKS}')


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return _is_int(value) or isinstance(value, float)


def _randaugment_policy(spec: search_spaces.RandAugmentSpec, task: str,
                        options: ops.AugmentOptions) -> Policy:
  if spec.task != task:
    raise ValueError(
        f'RandAugment spec is for task {spec.task!r}, policy asked for '
        f'{task!r}')
  if not (_is_int(spec.num_ops) and spec.num_ops >= 1):
    raise ValueError(f'RandAugment num_ops must be an int >= 1, got '
                     f'{spec.num_ops!r}')
  if not (_is_number(spec.magnitude) and
          0 <= spec.magnitude <= ops.MAX_MAGNITUDE):
    raise ValueError(f'RandAugment magnitude must be in [0, 10], got '
                     f'{spec.magnitude!r}')
  return RandAugmentPolicy(spec.num_ops, spec.magnitude, task, options)


def _autoaugment_policy(spec: Sequence[Any], task: str,
                        options: ops.AugmentOptions) -> Policy:
  """Checks an [op_indices, magnitudes, probabilities] list, builds it."""
  op_names = ops.AUTOAUGMENT_OPS[task]
  sub_policies = []
  for s, parts in enumerate(zip(*spec)):
    if len({len(part) for part in parts}) != 1:
      raise ValueError(f'AutoAugment sub-policy {s} has op, magnitude and '
                       'probability lists of different lengths')
    sub_policy = []
    for index, magnitude, prob in zip(*parts):
      if not (_is_int(index) and 0 <= index < len(op_names)):
        raise ValueError(f'AutoAugment op index {index!r} in sub-policy {s} is '
                         f'outside the {task} table (0..{len(op_names) - 1})')
      if not (_is_number(magnitude) and 0 <= magnitude <= ops.MAX_MAGNITUDE):
        raise ValueError(f'AutoAugment magnitude {magnitude!r} in sub-policy '
                         f'{s} is outside [0, 10]')
      if not (_is_number(prob) and 0.0 <= prob <= 1.0):
        raise ValueError(f'AutoAugment probability {prob!r} in sub-policy {s} '
                         'is outside [0, 1]')
      sub_policy.append((op_names[index], float(magnitude), float(prob)))
    sub_policies.append(sub_policy)
  return AutoAugmentPolicy(sub_policies, task, options)


def make_policy(spec: Any, task: str,
                options: ops.AugmentOptions = ops.DEFAULT_OPTIONS) -> Policy:
  """The policy of a materialised `randaugment_*` or `autoaugment_*` spec.

  Raises ValueError (one line) for a bad task, a spec of another shape, or a
  value outside the task's op table or ranges.
  """
  _check_task(task)
  if isinstance(spec, search_spaces.RandAugmentSpec):
    return _randaugment_policy(spec, task, options)
  if search_spaces.is_autoaugment_policy(spec):
    return _autoaugment_policy(spec, task, options)
  raise ValueError(
      'augmentation spec must be a RandAugmentSpec or an AutoAugment '
      '[op_indices, magnitudes, probabilities] list, got '
      f'{type(spec).__name__}: {repr(spec)[:80]}')


def policy_from_json(
    json_str: str, task: str,
    options: ops.AugmentOptions = ops.DEFAULT_OPTIONS) -> Policy:
  """`make_policy` of a spec that configs carry as `pg.to_json_str(spec)`."""
  return make_policy(pg.from_json_str(json_str), task, options)
