"""Search controller with a stand-in trial runner: exact replay of algorithm
state after a crash, failures, the controller lock, the reward."""

import sqlite3
import types

import pytest

import search_spaces
from trainer import algorithms
from trainer import objective as objective_lib
from trainer import outcome as outcome_lib
from trainer.controller import search
from trainer.controller import store as store_lib

# The objective of the stand-in trials: their top-1 accuracy.
TOP1 = objective_lib.Objective('top_1_accuracy')


class FakeTrials:
  """Stands in for trial processes: reward from the architecture, and an
  optional crash of the 'controller' at a given trial."""

  def __init__(self, space, crash_at=None, fail_ids=()):
    self.space, self.crash_at, self.fail_ids = space, crash_at, fail_ids
    self.dna_spec = search_spaces.dna_spec(space)
    self.calls = []

  def __call__(self, trial):
    """Launches a stand-in trial; its handle's poll() has the outcome."""
    self.calls.append(trial.id)
    if trial.id == self.crash_at:
      self.crash_at = None
      raise KeyboardInterrupt  # The controller dies mid-trial.
    outcome = self._outcome(trial)
    return types.SimpleNamespace(poll=lambda: outcome)

  def _outcome(self, trial):
    if trial.id in self.fail_ids:
      return outcome_lib.failed(outcome_lib.CRASH, 'boom')
    spec = search_spaces.materialize(
        self.space, search_spaces.dna_from_nas_params(self.dna_spec, trial.nas_params_str))
    score = sum(b.output_filters * b.num_repeats for b in spec.blocks) / 4000
    return outcome_lib.completed({'top_1_accuracy': score})


def _search(job_dir, runner, algorithm, max_trials=9, max_failed=0, parallel=1):
  space = search_spaces.get_search_space('mnasnet')
  store = store_lib.Store.open(job_dir, create=True)
  return search.Search(
      store, 'search', space,
      algorithms.make_algorithm(algorithm, seed=3, population_size=4,
                                tournament_size=2),
      runner, TOP1, max_trials, max_failed,
      progress=lambda line: None, max_parallel_trials=parallel)


@pytest.mark.parametrize('algorithm, parallel', [
    (a, 1) for a in algorithms.ALGORITHMS] + [('regularized_evolution', 3)])
def test_resumed_search_equals_uninterrupted_search(tmp_path, algorithm, parallel):
  space = search_spaces.get_search_space('mnasnet')
  straight = _search(str(tmp_path / 'a'), FakeTrials(space), algorithm,
                     parallel=parallel).run()

  crashing = FakeTrials(space, crash_at=5)
  with pytest.raises(KeyboardInterrupt):
    _search(str(tmp_path / 'b'), crashing, algorithm, parallel=parallel).run()
  resumed_runner = FakeTrials(space)
  resumed = _search(str(tmp_path / 'b'), resumed_runner, algorithm,
                    parallel=parallel).run()
  # Trial 5 was in flight (with 3 at once, 3 and 4 too); each runs again
  # under its id, and no finished trial is repeated.
  assert resumed_runner.calls[0] == 5 or parallel > 1
  assert sorted(set(resumed_runner.calls)) == resumed_runner.calls
  assert resumed_runner.calls[-1] == 9
  assert [t.nas_params_str for t in resumed] == [t.nas_params_str for t in straight]
  assert [t.reward for t in resumed] == [t.reward for t in straight]


def test_evolution_learns_on_a_rewarded_choice(tmp_path):
  space = search_spaces.get_search_space('mnasnet')
  trials = _search(str(tmp_path), FakeTrials(space), 'regularized_evolution',
                   max_trials=40).run()
  first, last = trials[:8], trials[-8:]
  mean = lambda ts: sum(t.reward for t in ts) / len(ts)
  assert mean(last) > mean(first)


def test_failed_trials_are_recorded_and_stop_the_search(tmp_path):
  space = search_spaces.get_search_space('mnasnet')
  runner = FakeTrials(space, fail_ids=(2, 3))
  with pytest.raises(search.SearchFailed, match='2 trials failed.*boom'):
    _search(str(tmp_path), runner, 'random', max_trials=10, max_failed=2).run()
  trials = store_lib.Store.open(str(tmp_path), read_only=True).trials('search')
  assert [(t.id, t.status, t.error) for t in trials] == [
      (1, 'completed', None), (2, 'failed', 'boom'), (3, 'failed', 'boom')]


def test_evolution_settings_are_checked():
  with pytest.raises(ValueError, match='2 <= --tournament_size'):
    algorithms.make_algorithm('regularized_evolution', 0, population_size=4,
                              tournament_size=1)


def test_second_controller_is_refused(tmp_path):
  with search.ControllerLock(str(tmp_path)):
    with pytest.raises(store_lib.StoreError, match='another controller'):
      with search.ControllerLock(str(tmp_path)):
        pass
  with search.ControllerLock(str(tmp_path)):  # Released when the first ends.
    pass


def test_grid_stops_when_space_exhausted(tmp_path):
  space = search_spaces.get_search_space('randaugment_detection')
  store = store_lib.Store.open(str(tmp_path), create=True)
  outcome = outcome_lib.completed({'top_1_accuracy': 0.5})
  runner = lambda t: types.SimpleNamespace(poll=lambda: outcome)
  trials = search.Search(store, 'search', space, algorithms.make_algorithm('grid', 0),
                         runner, TOP1, 100, 0,
                         progress=lambda line: None).run()
  assert len(trials) == 20
  assert len({t.nas_params_str for t in trials}) == 20


@pytest.mark.parametrize('hard, value, expected', [
    (True, 2.0, 0.8 * 0.5), (True, 0.5, 0.8), (False, 0.5, 0.8 * 2.0),
    (False, 2.0, 0.8 * 0.5)])
def test_mnasnet_reward(hard, value, expected):
  reward = objective_lib.Objective(
      'top_1_accuracy', targets={'multi_add_flops_billion': 1.0}, hard=hard)
  metrics = {'top_1_accuracy': 0.8, 'multi_add_flops_billion': value}
  assert reward.reward(metrics) == pytest.approx(expected)
  assert TOP1.reward(metrics) == pytest.approx(0.8)
  soft_paper = objective_lib.Objective(
      'top_1_accuracy', targets={'multi_add_flops_billion': 1.0},
      exponent=0.07, hard=False)
  assert soft_paper.reward(metrics) == pytest.approx(
      0.8 * (1.0 / value) ** 0.07)


def test_store_killed_before_its_schema_resumes(tmp_path):
  """A controller killed between making the store file and its schema: a
  reader is told there is no job yet, the resume's untouched check sees an
  unstarted stage, and the resume makes the schema."""
  job_dir = str(tmp_path)
  db = sqlite3.connect(store_lib.store_path(job_dir))
  db.execute('PRAGMA journal_mode=WAL')
  db.close()
  with pytest.raises(store_lib.StoreError, match='no nas-garden job in .* yet'):
    store_lib.Store.open(job_dir, read_only=True)
  untouched = store_lib.Store.open(job_dir, read_only=True, untouched=True)
  assert not untouched.check_identity('search', {'seed': 1})
  untouched.close()
  store = store_lib.Store.open(job_dir, create=True)
  store.claim_identity('search', {'seed': 1})
  assert store.trials('search') == []
  store.close()
  assert store_lib.Store.open(job_dir, read_only=True).job_identity(
      'search') == {'seed': 1}
