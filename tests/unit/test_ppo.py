"""The PPO controller: it learns, its gradients are right, it is a function of
its seed and history, it matches feedback to proposals in any order, and it
samples valid DNA in conditional, sorted and distinct spaces."""

import random

import numpy as np
import pyglove as pg
import pytest

from trainer.algorithms import ppo


def _toy_space():
  return pg.List([pg.oneof(['a', 'b', 'c']) for _ in range(3)])


def _tricky_space():
  """A conditional sub-space (nested, with a manyof inside), a sorted and an
  unsorted distinct multi-choice, and a single-candidate decision."""
  return pg.List([
      pg.oneof([1, pg.oneof([2, 3, 4]),
                pg.List([pg.oneof([4, 5]), pg.manyof(2, [1, 2, 3])])]),
      pg.manyof(3, [7, 8, 9, 10, 11], choices_sorted=True),
      pg.manyof(2, [0, 1, 2]),
      pg.oneof(['only']),
  ])


def _proposals(generator, spec, reward_fn, count):
  generator.setup(spec)
  proposed = []
  for _ in range(count):
    dna = generator.propose()
    proposed.append(dna.to_numbers())
    generator.feedback(dna, reward_fn(dna))
  return proposed


def test_policy_shifts_to_a_rewarded_choice():
  generator = ppo.PPO(seed=0)
  proposed = _proposals(generator, pg.dna_spec(_toy_space()),
                        lambda dna: float(dna.to_numbers()[0] == 2), 96)
  assert generator.next_probabilities()[2] > 0.9
  assert sum(p[0] == 2 for p in proposed[-16:]) >= 14
  assert sum(p[0] == 2 for p in proposed[:16]) <= 10  # It did have to learn.


def test_gradients_match_finite_differences():
  table = ppo.DecisionTable(pg.dna_spec(_tricky_space()))
  rng = np.random.default_rng(0)
  controller = ppo.Controller(table, hidden_size=5, embedding_size=3,
                              logit_bound=2.5, rng=rng)
  params = controller.params
  for value in params.values():
    value *= 10  # Far from uniform, and some logits near the bound.
  sequences = [controller.sample(rng)[0] for _ in range(6)]
  assert any(v < 0 for s in sequences for v in s)  # Inactive steps covered.
  rollouts = table.encode(sequences)
  # Old log-probs off the current ones, so some ratios are clipped.
  old = controller.log_probs(rollouts)[0] + rng.normal(0, 0.3, 6)
  advantages = rng.normal(size=6)

  def loss_and_grads():
    return controller.ppo_loss_and_grads(rollouts, old, advantages, clip=0.2,
                                         entropy_weight=0.05)

  grads = loss_and_grads()[1]
  for name, value in params.items():
    numeric = np.zeros_like(value)
    for index in np.ndindex(value.shape):
      saved = value[index]
      value[index] = saved + 1e-6
      above = loss_and_grads()[0]
      value[index] = saved - 1e-6
      below = loss_and_grads()[0]
      value[index] = saved
      numeric[index] = (above - below) / 2e-6
    np.testing.assert_allclose(grads[name], numeric, atol=1e-7, rtol=1e-5,
                               err_msg=name)


def test_same_seed_and_feedback_give_the_same_proposals():
  spec = pg.dna_spec(_tricky_space())
  reward = lambda dna: float(sum(dna.to_numbers()))
  first = _proposals(ppo.PPO(seed=3, batch_size=4), spec, reward, 24)
  again = _proposals(ppo.PPO(seed=3, batch_size=4), spec, reward, 24)
  other = _proposals(ppo.PPO(seed=4, batch_size=4), spec, reward, 24)
  assert first == again
  assert first != other


def test_feedback_in_any_order_uses_the_sampling_log_probs(monkeypatch):
  sampled, used = [], []
  real_sample = ppo.Controller.sample
  real_loss = ppo.Controller.ppo_loss_and_grads

  def recording_sample(self, rng):
    values, log_prob = real_sample(self, rng)
    sampled.append(log_prob)
    return values, log_prob

  def recording_loss(self, rollouts, old_log_probs, *args):
    used.append(list(old_log_probs))
    return real_loss(self, rollouts, old_log_probs, *args)

  monkeypatch.setattr(ppo.Controller, 'sample', recording_sample)
  monkeypatch.setattr(ppo.Controller, 'ppo_loss_and_grads', recording_loss)
  generator = ppo.PPO(seed=1, batch_size=2, epochs=1)
  generator.setup(pg.dna_spec(_toy_space()))
  proposed = [generator.propose() for _ in range(4)]
  probabilities = generator.next_probabilities()
  for i in (3, 0, 2, 1):  # The first update comes between them.
    generator.feedback(proposed[i], float(i))
  assert used == [[sampled[3], sampled[0]], [sampled[2], sampled[1]]]
  # The policy did move: the current log-probs would have been others.
  assert not np.allclose(generator.next_probabilities(), probabilities)


def test_feedback_for_dna_it_did_not_propose():
  spec = pg.dna_spec(_toy_space())
  generator = ppo.PPO(seed=1, batch_size=2)
  generator.setup(spec)
  for i in range(4):
    generator.feedback(pg.random_dna(spec, random.Random(i)), float(i))
  assert generator.num_feedbacks == 4
  assert spec.validate(generator.propose()) is None


def test_samples_valid_dna_in_conditional_sorted_distinct_spaces():
  space = _tricky_space()
  spec = pg.dna_spec(space)
  table = ppo.DecisionTable(spec)
  for i in range(30):  # The table reads and rebuilds PyGlove's own samples.
    dna = pg.random_dna(spec, random.Random(i))
    assert table.to_dna(table.values_from_dna(dna)) == dna
  generator = ppo.PPO(seed=2, batch_size=4)
  seen = set()
  for numbers in _proposals(generator, spec, lambda dna: 0.0, 40):
    dna = pg.DNA.from_numbers(numbers, spec)
    value = pg.materialize(space, dna)
    assert value[1] == sorted(value[1]) and len(set(value[1])) == 3
    assert len(set(value[2])) == 2
    seen.add(str(value[0]))
  assert len(seen) > 3  # Both branches of the conditional, and inside them.


def test_float_decisions_are_refused():
  generator = ppo.PPO(seed=0)
  with pytest.raises(ValueError, match='categorical.*Float'):
    generator.setup(pg.dna_spec(pg.List([pg.oneof([1, 2]),
                                         pg.floatv(0.0, 1.0)])))
