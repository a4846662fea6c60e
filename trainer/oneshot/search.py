"""The one-shot search loop (TuNAS): train the supernet one sampled path per
step, and from the end of the warm-up also learn the policy by REINFORCE on
validation batches with the absolute cost reward.

Everything that changes (supernet, its optimizer, policy, step) is one
TensorFlow checkpoint, written every `checkpoint_steps`: a search killed at
any point resumes from its last checkpoint. Paths are drawn from (seed,
step), so the steps after a resume draw what they would have drawn.
"""

import dataclasses
import os
import time
from typing import Any, Callable, Dict, List

import numpy as np
import pyglove as pg
import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.modeling import performance
import search_spaces
from trainer.oneshot import policy as policy_lib
from trainer.oneshot import supernet as supernet_lib
from trainer.training import trial as trial_lib

CHECKPOINT_SUBDIR = 'checkpoints'
# Batches whose statistics a path's batch norms are recalibrated on before
# it is evaluated with inherited weights.
RECALIBRATION_BATCHES = 10
# A supernet whose final training loss is above this share of a uniform
# prediction's (ln classes) has not learned: its accuracies rank nothing.
CHANCE_LOSS_SHARE = 0.95


@dataclasses.dataclass
class Settings:
  """What a one-shot search runs with besides the trial config."""
  seed: int
  warmup_fraction: float = 0.25
  policy_learning_rate: float = 0.05
  cost_penalty: float = 0.5
  target_flops: float = 0.0  # Multiply-adds (billions); 0: no cost term.
  checkpoint_steps: int = 50


def learned(train_loss: float, num_classes: int) -> bool:
  """Whether the supernet's training loss left chance (a uniform
  prediction's loss, ln classes)."""
  return train_loss < CHANCE_LOSS_SHARE * np.log(num_classes)


def absolute_reward(quality: float, cost: float, target: float,
                    penalty: float) -> float:
  """TuNAS's absolute reward Q + β|cost/target - 1| with β = -penalty; the
  quality alone without a target."""
  return quality - penalty * abs(cost / target - 1) if target else quality


class OneShotSearch:
  """A supernet, its policy and data, set up from a prepared classification
  trial config (the search stage's: any architecture of the space)."""

  def __init__(self, space_name: str, prepared: trial_lib.PreparedTrial,
               settings: Settings, work_dir: str):
    self.space_name, self.settings = space_name, settings
    self.space = search_spaces.get_search_space(space_name)
    self.dna_spec = pg.dna_spec(self.space)
    self.params = prepared.params
    model = self.params.task.model
    tf_keras.utils.set_random_seed(settings.seed)
    # The config's precision, as a trial's: layers built from here compute
    # in it (float16 on the GPU configs, bfloat16 on the TPU ones).
    if self.params.runtime.mixed_precision_dtype:
      performance.set_mixed_precision_policy(
          self.params.runtime.mixed_precision_dtype)
    self.compute_dtype = tf_keras.mixed_precision.global_policy().compute_dtype
    self.task = task_factory.get_task(self.params.task)
    self.net = supernet_lib.from_config(space_name, model)
    # A LossScaleOptimizer where the runtime asks for float16.
    self.optimizer = self.task.create_optimizer(
        self.params.trainer.optimizer_config, self.params.runtime)
    self._loss_scaled = isinstance(
        self.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    trial_lib.create_slots(self.optimizer, self.net.trainable_variables)
    self.policy = policy_lib.Policy(
        [len(p.candidates) for p in self.dna_spec.decision_points],
        settings.policy_learning_rate)
    self.step = tf.Variable(0, dtype=tf.int64, name='step')
    self.checkpoint = tf.train.Checkpoint(
        supernet=self.net, optimizer=self.optimizer, policy=self.policy,
        step=self.step)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(work_dir, CHECKPOINT_SUBDIR),
        max_to_keep=2)
    self.train_steps = self.params.trainer.train_steps
    self.warmup_steps = int(self.train_steps * settings.warmup_fraction)
    self.train_batch = self.params.task.train_data.global_batch_size
    self.eval_batch = self.params.task.validation_data.global_batch_size
    self._regularised = [v for v in self.net.trainable_variables
                         if v.shape.rank >= 2 and 'depthwise' not in v.name]
    self._weight_decay = self.params.task.losses.l2_weight_decay
    # The path whose statistics the norms hold, until training changes them.
    self._calibrated_path = None

  # --- Steps (one trace each: the path is a tensor).

  @tf.function
  def _train_step(self, images, labels, numbers):
    losses = self.params.task.losses
    if losses.one_hot or losses.soft_labels:  # As the task's train_step.
      labels = tf.one_hot(labels, self.params.task.model.num_classes)
    with tf.GradientTape() as tape:
      # The loss in float32 under a mixed policy, as the task's train_step.
      logits = tf.cast(self.net(images, numbers, training=True), tf.float32)
      l2 = self._weight_decay / 2 * tf.add_n(
          [tf.nn.l2_loss(v) * 2 for v in self._regularised])
      loss = self.task.build_losses(labels, logits, aux_losses=[l2])
      scaled = (self.optimizer.get_scaled_loss(loss) if self._loss_scaled
                else loss)
    variables = self.net.trainable_variables
    gradients = tape.gradient(scaled, variables)
    if self._loss_scaled:
      gradients = self.optimizer.get_unscaled_gradients(gradients)
    self.optimizer.apply_gradients(zip(gradients, variables))
    return loss

  @tf.function
  def _correct(self, images, labels, numbers):
    logits = self.net(images, numbers, training=False)
    labels = tf.cast(labels, tf.int64)
    return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), labels),
                                 tf.float32)), tf.shape(labels)[0]

  # --- Paths.

  def _dna(self, numbers) -> pg.DNA:
    return pg.DNA.from_numbers([int(n) for n in numbers], self.dna_spec)

  def spec(self, numbers) -> Any:
    return search_spaces.materialize(self.space, self._dna(numbers))

  def nas_params_str(self, numbers) -> str:
    return search_spaces.nas_params_from_dna(self._dna(numbers))

  def cost(self, numbers) -> float:
    return supernet_lib.multiply_adds(self.net, [int(n) for n in numbers],
                                      self.params.task.model.input_size)

  # --- The search.

  def _dataset(self, config, repeat: bool):
    dataset = self.task.build_inputs(config)
    return iter(dataset.repeat() if repeat else dataset)

  def run(self, progress: Callable[[str], None]) -> Dict[str, Any]:
    """Trains (or resumes) to the last step; returns the search's figures."""
    restored = self.manager.restore_or_initialize()
    self._calibrated_path = None
    if restored:
      progress(f'one-shot search resumed from step {int(self.step)} '
               f'({restored})')
    s = self.settings
    train, validation = (self._dataset(self.params.task.train_data, True),
                         self._dataset(self.params.task.validation_data, True))
    started, first = time.time(), int(self.step)
    window: List[float] = []
    losses: List[float] = []  # Training losses since the last checkpoint.
    final_loss = None  # Their mean at the last checkpoint of this run.
    while int(self.step) < self.train_steps:
      step = int(self.step)
      warm = step < self.warmup_steps
      numbers = self.policy.sample(s.seed, step, 0, uniform=warm)
      images, labels = next(train)
      loss = float(self._train_step(images, labels, tf.constant(numbers)))
      if not np.isfinite(loss):
        raise FloatingPointError(f'one-shot search: loss is {loss} at step '
                                 f'{step}')
      losses.append(loss)
      if not warm:
        candidate = self.policy.sample(s.seed, step, 1)
        images, labels = next(validation)
        correct, count = self._correct(images, labels, tf.constant(candidate))
        reward = absolute_reward(float(correct) / int(count),
                                 self.cost(candidate), s.target_flops,
                                 s.cost_penalty)
        self.policy.update(candidate, reward)
        window.append(reward)
      self.step.assign_add(1)
      step += 1
      if step % s.checkpoint_steps == 0 or step == self.train_steps:
        self.manager.save(checkpoint_number=step)
        best = self.policy.most_likely()
        mean = f', mean reward {np.mean(window):.4f}' if window else ''
        final_loss = float(np.mean(losses))
        progress(f'one-shot step {step}/{self.train_steps}: loss '
                 f'{final_loss:.4f}{mean}{" (warm-up)" if warm else ""}; '
                 'most likely '
                 f'{self.spec(best).summary()} '
                 f'({self.cost(best):.4g} B multiply-adds)')
        window, losses = [], []
    elapsed = time.time() - started
    return {'train_steps': self.train_steps,
            'policy_steps': self.train_steps - self.warmup_steps,
            'policy_updates': int(self.policy.updates),
            'train_examples': self.train_steps * self.train_batch,
            'validation_examples': ((self.train_steps - self.warmup_steps) *
                                    self.eval_batch),
            'steps_this_run': self.train_steps - first,
            'compute_dtype': self.compute_dtype,
            'final_train_loss': final_loss,
            'chance_loss': float(np.log(self.params.task.model.num_classes)),
            'search_s_this_run': elapsed}

  def recalibrate(self, numbers) -> None:
    """Batch-norm statistics of this path: the mean over
    RECALIBRATION_BATCHES training batches of the path's batch statistics
    (run eagerly, since a traced step fixes each norm's momentum). Once
    per path: evaluating a path and then saving it recalibrates once."""
    path = tuple(int(n) for n in numbers)
    if path == self._calibrated_path:
      return
    norms = [l for l in self.net.submodules
             if isinstance(l, tf_keras.layers.BatchNormalization)]
    momenta = [n.momentum for n in norms]
    train = self._dataset(self.params.task.train_data, True)
    try:
      for t in range(RECALIBRATION_BATCHES):
        for n in norms:
          n.momentum = t / (t + 1)
        images, _ = next(train)
        self.net(images, tf.constant(numbers), training=True)
    finally:
      for n, m in zip(norms, momenta):
        n.momentum = m
    self._calibrated_path = path

  def evaluate(self, numbers) -> float:
    """Top-1 accuracy of the path on the whole validation data, with
    inherited weights and recalibrated batch norms. Leaves the supernet's
    norms changed: restore the checkpoint before training on."""
    self.recalibrate(numbers)
    correct, total = 0.0, 0
    for images, labels in self._dataset(self.params.task.validation_data,
                                        False):
      c, n = self._correct(images, labels, tf.constant(numbers))
      correct, total = correct + float(c), total + int(n)
    return correct / max(total, 1)

  def save_model(self, numbers, params, directory: str) -> tf_keras.Model:
    """Writes Model Garden's model of the path (built from `params`, the
    path's trial config) holding the supernet's weights for it, batch norms
    recalibrated, as a trial's checkpoint in `directory` (what export
    reads); returns the model."""
    self.recalibrate(numbers)
    model = task_factory.get_task(params.task).build_model()
    supernet_lib.copy_into(model, self.net, self.spec(numbers))
    tf.train.Checkpoint(model=model).save(os.path.join(directory, 'ckpt'))
    return model

  def rank_samples(self, count: int) -> List[Dict[str, Any]]:
    """`count` random paths (drawn from the seed) with their inherited
    accuracy and cost: how the supernet ranks architectures."""
    rng = np.random.default_rng([self.settings.seed, 1])
    samples = []
    for _ in range(count):
      numbers = [int(rng.integers(len(p.candidates)))
                 for p in self.dna_spec.decision_points]
      samples.append({'nas_params_str': self.nas_params_str(numbers),
                      'supernet_accuracy': self.evaluate(numbers),
                      'multiply_adds_billion': self.cost(numbers)})
    return samples


def policy_table(search: OneShotSearch) -> List[Dict[str, Any]]:
  """Each decision's candidates and learned probabilities."""
  return [{'decision': str(p.location),
           'candidates': [str(v) for v in p.literal_values],
           'probabilities': [round(float(x), 4) for x in probs]}
          for p, probs in zip(search.dna_spec.decision_points,
                              search.policy.probabilities())]

