"""TuNAS's controller (trainer/oneshot/policy.py) and absolute reward."""

import numpy as np
import pytest
import tensorflow as tf

from trainer.oneshot import policy as policy_lib
from trainer.oneshot import search as oneshot


def test_reinforce_moves_probability_to_the_rewarded_candidates():
  policy = policy_lib.Policy([3, 2, 4], learning_rate=0.1)
  wanted = np.array([2, 0, 1])
  for step in range(150):
    choices = policy.sample(seed=0, step=step, draw=1)
    policy.update(choices, reward=float(np.mean(choices == wanted)))
  assert list(policy.most_likely()) == list(wanted)
  for probabilities, choice in zip(policy.probabilities(), wanted):
    assert probabilities[choice] > 0.6
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_samples_are_a_function_of_seed_step_and_draw():
  policy = policy_lib.Policy([5] * 12, learning_rate=0.1)
  first = policy.sample(seed=3, step=7, draw=0)
  assert list(policy.sample(seed=3, step=7, draw=0)) == list(first)
  others = [policy.sample(seed=4, step=7, draw=0),
            policy.sample(seed=3, step=8, draw=0),
            policy.sample(seed=3, step=7, draw=1)]
  for other in others:
    assert list(other) != list(first)


def test_warm_up_samples_ignore_the_logits():
  policy = policy_lib.Policy([4] * 3, learning_rate=0.1)
  for logits in policy.logits:
    logits.assign([20.0, 0.0, 0.0, 0.0])
  learned = {tuple(policy.sample(0, s, 0)) for s in range(30)}
  uniform = {tuple(policy.sample(0, s, 0, uniform=True)) for s in range(30)}
  assert learned == {(0, 0, 0)}
  assert len(uniform) > 10


def test_policy_state_survives_a_checkpoint(tmp_path):
  policy = policy_lib.Policy([3, 3], learning_rate=0.1)
  for step in range(5):
    policy.update(policy.sample(1, step, 1), reward=step / 5)
  path = tf.train.Checkpoint(policy=policy).save(str(tmp_path / 'ckpt'))
  restored = policy_lib.Policy([3, 3], learning_rate=0.1)
  tf.train.Checkpoint(policy=restored).restore(path).assert_consumed()
  assert int(restored.updates) == 5
  assert float(restored.baseline) == float(policy.baseline)
  for a, b in zip(policy.probabilities(), restored.probabilities()):
    np.testing.assert_array_equal(a, b)
  # The optimizer's moments came back too: the next update is the same.
  policy.update([0, 1], 1.0)
  restored.update([0, 1], 1.0)
  for a, b in zip(policy.probabilities(), restored.probabilities()):
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_absolute_reward_penalises_both_sides_of_the_target():
  assert oneshot.absolute_reward(0.8, 1.0, 1.0, 0.5) == pytest.approx(0.8)
  assert oneshot.absolute_reward(0.8, 1.5, 1.0, 0.5) == pytest.approx(0.55)
  assert oneshot.absolute_reward(0.8, 0.5, 1.0, 0.5) == pytest.approx(0.55)
  assert oneshot.absolute_reward(0.8, 9.0, 0.0, 0.5) == pytest.approx(0.8)


def test_a_supernet_learned_only_once_its_loss_left_a_uniform_predictions():
  chance = np.log(15)  # 2.708: what a supernet at chance reports.
  assert not oneshot.learned(2.72, 15)
  assert not oneshot.learned(0.96 * chance, 15)
  assert oneshot.learned(0.9 * chance, 15)
  assert oneshot.learned(0.63, 15)  # The equal-compute bench's supernet.
  # The same loss is chance for 10 classes (2.303) but not for 1001.
  assert not oneshot.learned(2.3, 10)
  assert oneshot.learned(2.3, 1001)
