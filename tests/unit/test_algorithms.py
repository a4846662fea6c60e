"""Search algorithms by name: valid DNA in every prebuilt space, exact replay
with feedback out of order, NSGA-II's tuple rewards, the default evolution's
one-decision mutations and de-duplication."""

import functools
import json
import random
import types

import pyglove as pg
import pytest

import search_spaces
from trainer import algorithms

LEARNING = ('evolution', 'ppo', 'nsga2')


@functools.lru_cache(maxsize=None)
def _spec(name):
  return pg.dna_spec(search_spaces.get_search_space(name))


def _small(name, seed=4):
  """A generator that gets past its random start within a few proposals."""
  return algorithms.make_algorithm(name, seed, population_size=2,
                                   tournament_size=2, ppo_batch_size=2)


def _score(dna):
  return float(sum(dna.to_numbers()) % 7)


@pytest.mark.parametrize('space', search_spaces.list_search_spaces())
def test_valid_dna_in_every_prebuilt_space(space):
  spec = _spec(space)
  for name in LEARNING:
    generator = _small(name)
    generator.setup(spec)
    # A one-architecture space (static_unet) runs out after its one proposal.
    for i in range(min(6, spec.space_size)):
      dna = generator.propose()
      params = search_spaces.nas_params_from_dna(dna)
      if i >= 4:  # Past the random start (parsing is slow: only those).
        assert search_spaces.dna_from_nas_params(spec, params) == dna
      # NSGA-II is fed two objectives, the others one.
      generator.feedback(dna, (_score(dna), -float(dna.to_numbers()[0]))
                         if name == 'nsga2' else _score(dna))


@pytest.mark.parametrize('name', LEARNING)
def test_replay_with_feedback_out_of_order_restores_the_state(name):
  """Trials run three at a time and the middle one ends first; a fresh
  generator replaying the record proposes what the live one proposes."""
  spec = _spec('mnasnet')
  to_params = search_spaces.nas_params_from_dna
  live = _small(name)
  live.setup(spec)
  trials, running, fed = [], [], 0
  for trial_id in range(1, 13):
    dna = live.propose()
    trial = types.SimpleNamespace(
        id=trial_id, nas_params_str=to_params(dna), status='running',
        metrics=None, reward=None, proposed_after=fed, feedback_seq=None)
    trials.append(trial)
    running.append((trial, dna))
    if len(running) == 3:
      trial, dna = running.pop(1)
      trial.status, trial.reward, trial.feedback_seq = 'completed', _score(dna), fed
      live.feedback(dna, trial.reward)
      fed += 1

  fresh = _small(name)
  fresh.setup(spec)
  replayed = algorithms.replay(
      fresh, trials, to_params,
      lambda params: search_spaces.dna_from_nas_params(spec, params))
  assert [to_params(replayed[t.id]) for t in trials] == [
      t.nas_params_str for t in trials]
  for trial, dna in running:  # Both finish the trials still running.
    live.feedback(dna, _score(dna))
    fresh.feedback(replayed[trial.id], _score(dna))
  assert ([to_params(live.propose()) for _ in range(4)] ==
          [to_params(fresh.propose()) for _ in range(4)])


def test_nsga2_takes_tuple_rewards():
  generator = algorithms.make_algorithm('nsga2', 0, population_size=2)
  assert generator.multi_objective
  generator.setup(_spec('mnasnet'))
  proposed = set()
  for _ in range(12):
    dna = generator.propose()
    proposed.add(tuple(dna.to_numbers()))
    generator.feedback(dna, (_score(dna), -float(dna.to_numbers()[0])))
  assert len(proposed) == 12  # De-duplicated too.


def test_evolution_learns_and_never_repeats_a_rewarded_architecture():
  spec = _spec('randaugment_detection')  # 20 architectures.
  generator = algorithms.make_algorithm('evolution', 0)
  generator.setup(spec)
  proposed = []
  with pytest.raises(StopIteration):
    for _ in range(40):
      dna = generator.propose()
      proposed.append(tuple(dna.to_numbers()))
      generator.feedback(dna, float(dna.to_numbers()[1]))  # Magnitude.
  assert len(set(proposed)) == len(proposed) <= 20
  assert max(p[1] for p in proposed) == 9  # It climbed to the top magnitude.


def test_architecture_key_ignores_decisions_a_network_does_not_use():
  """A conv block ignores its expansion and squeeze-excite decisions; an
  MBConv block uses them."""
  space = search_spaces.get_search_space('mnasnet')
  spec = _spec('mnasnet')
  params = json.loads(search_spaces.nas_params_from_dna(
      pg.random_dna(spec, random.Random(0))))

  def key_with(block_fn, expand_ratio):
    changed = dict(params, **{
        'blocks[0].block_fn': block_fn,
        'blocks[0].expand_ratio': expand_ratio})
    return search_spaces.architecture_key(space, search_spaces.dna_from_nas_params(
        spec, json.dumps(changed)))

  assert key_with("0/2 ('conv')", '0/3 (1)') == key_with("0/2 ('conv')", '2/3 (6)')
  assert key_with("1/2 ('mbconv')", '0/3 (1)') != key_with("1/2 ('mbconv')",
                                                          '2/3 (6)')


def test_evolution_never_trains_one_network_twice():
  """With the space's architecture key, no two rewarded proposals build the
  same network, though mutations of inert decisions are frequent in mnasnet."""
  space = search_spaces.get_search_space('mnasnet')
  key = functools.partial(search_spaces.architecture_key, space)
  generator = algorithms.make_algorithm('evolution', 0, population_size=3,
                                        tournament_size=3, architecture_key=key)
  generator.setup(_spec('mnasnet'))
  networks = []
  for _ in range(40):
    dna = generator.propose()
    networks.append(key(dna))
    generator.feedback(dna, _score(dna))
  assert len(set(networks)) == len(networks)


@pytest.mark.parametrize('space', ['mnasnet', 'nasfpn', 'spinenet',
                                   'autoaugment_detection'])
def test_one_decision_mutator(space):
  """A oneof moves alone; a distinct unsorted choice swaps with a sibling;
  a sorted one stays sorted: every child is valid and differs."""
  spec = _spec(space)
  mutator = algorithms.OneDecisionMutator(seed=0)
  for i in range(5):
    parent = pg.random_dna(spec, random.Random(i))
    child = mutator.mutate(parent)
    params = search_spaces.nas_params_from_dna(child)
    assert search_spaces.dna_from_nas_params(spec, params) == child
    changed = sum(a != b for a, b in zip(parent.to_numbers(),
                                         child.to_numbers()))
    assert changed == 1 or (changed == 2 and space != 'mnasnet')


def test_unknown_algorithm_and_bad_sizes_are_refused():
  with pytest.raises(ValueError, match='valid: random, grid, .*ppo, nsga2'):
    algorithms.make_algorithm('annealing', 0)
  with pytest.raises(ValueError, match='evolution needs 2 <= --tournament_size'):
    algorithms.make_algorithm('evolution', 0, population_size=4,
                              tournament_size=5)
  assert algorithms.DEFAULT_ALGORITHM in algorithms.ALGORITHMS


def test_evolution_mutates_float_decisions_the_pyglove_way():
  spec = pg.dna_spec(pg.List([pg.oneof([1, 2, 3]), pg.floatv(0.0, 1.0)]))
  generator = algorithms.make_algorithm('evolution', 0, population_size=2,
                                        tournament_size=2)
  generator.setup(spec)
  for i in range(6):
    dna = generator.propose()
    assert spec.validate(dna) is None
    generator.feedback(dna, float(i))
