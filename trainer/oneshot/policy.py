"""TuNAS's controller: independent categorical distributions, one per
decision of the space, learned by REINFORCE with a moving-average baseline.

Its logits, baseline and optimizer are TensorFlow variables, so they are
saved in the same checkpoint as the supernet, and a resumed search goes on
from the same policy. Samples are a function of (seed, step, draw) alone.
"""

from typing import List, Sequence

import numpy as np
import tensorflow as tf
import tf_keras


class Policy(tf.Module):
  """P(path) = prod_i softmax(logits_i)[choice_i]."""

  def __init__(self, num_candidates: Sequence[int], learning_rate: float,
               baseline_momentum: float = 0.95):
    super().__init__()
    self.logits = [tf.Variable(tf.zeros([n]), name=f'logits_{i}')
                   for i, n in enumerate(num_candidates)]
    self.baseline = tf.Variable(0.0, name='baseline')
    self.updates = tf.Variable(0, dtype=tf.int64, name='updates')
    self.baseline_momentum = baseline_momentum
    self.optimizer = tf_keras.optimizers.Adam(learning_rate)
    self.optimizer.build(self.logits)

  def probabilities(self) -> List[np.ndarray]:
    return [tf.nn.softmax(l).numpy() for l in self.logits]

  def sample(self, seed: int, step: int, draw: int,
             uniform: bool = False) -> np.ndarray:
    """One path (a choice per decision); uniform over the candidates in the
    warm-up."""
    choices = []
    for i, logits in enumerate(self.logits):
      weights = tf.zeros_like(logits) if uniform else logits
      choices.append(int(tf.random.stateless_categorical(
          weights[None], 1, seed=[seed, (step * 4 + draw) * 1000 + i])[0, 0]))
    return np.array(choices, np.int32)

  def most_likely(self) -> np.ndarray:
    return np.array([int(tf.argmax(l)) for l in self.logits], np.int32)

  def update(self, choices: Sequence[int], reward: float) -> float:
    """One REINFORCE step on the path's reward; returns the advantage."""
    if int(self.updates) == 0:
      self.baseline.assign(reward)
    advantage = reward - float(self.baseline)
    with tf.GradientTape() as tape:
      log_p = tf.add_n([tf.nn.log_softmax(l)[c]
                        for l, c in zip(self.logits, choices)])
      loss = -advantage * log_p
    self.optimizer.apply_gradients(zip(tape.gradient(loss, self.logits),
                                       self.logits))
    self.baseline.assign(self.baseline_momentum * self.baseline +
                         (1 - self.baseline_momentum) * reward)
    self.updates.assign_add(1)
    return advantage
