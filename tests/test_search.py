"""Search controller: real searches through the CLI, resume after SIGKILL,
and exact replay of algorithm state (with a stand-in trial runner)."""

import json
import os
import signal
import subprocess
import sys
import time
import types

import pytest

import search_spaces
from tests.conftest import REPO, cli, search_flags
from trainer import algorithms
from trainer.controller import executors
from trainer.controller import reward as reward_lib
from trainer.controller import search
from trainer.controller import store as store_lib


def test_search_runs_trials_and_reports(search_job):
  job_dir, stdout = search_job
  store = store_lib.Store.open(job_dir, read_only=True)
  trials = store.trials('search')
  assert [t.id for t in trials] == [1, 2, 3]
  assert all(t.status == 'completed' for t in trials)
  space = search_spaces.get_search_space('mnasnet')
  for t in trials:
    search_spaces.dna_from_nas_params(space, t.nas_params_str)  # Parses.
    acc, flops = t.metrics['top_1_accuracy'], t.metrics['multi_add_flops_billion']
    # Hard MnasNet reward against the 0.0008 B target.
    assert t.reward == pytest.approx(acc * min(1.0, 0.0008 / flops))
    assert os.path.exists(os.path.join(job_dir, 'trials', str(t.id), 'metrics.json'))
  assert len({t.nas_params_str for t in trials}) == 3
  assert trials[1].created_at < trials[0].finished_at  # Two at a time.
  best = max(trials, key=lambda t: t.reward)
  for t in trials:
    assert f'trial {t.id:>3}/3 running' in stdout
  assert f'best trial: {best.id}' in stdout
  assert best.nas_params_str in stdout

  listed = cli('--mode=list', f'--job_dir={job_dir}', check=True).stdout
  assert f'best trial: {best.id}' in listed
  assert 'trials: 3 completed' in listed


def test_rerun_of_finished_search_adds_nothing(search_job):
  job_dir, _ = search_job
  before = store_lib.Store.open(job_dir, read_only=True).trials('search')
  cli(*search_flags(job_dir, 3, '--target_flops_multi_adds_billion=0.0008'),
      check=True)
  assert store_lib.Store.open(job_dir, read_only=True).trials('search') == before


def _wait_for(predicate, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    time.sleep(0.2)
  raise AssertionError('timed out waiting')


def test_resume_after_controller_sigkill_mid_trial(tmp_path):
  job_dir = str(tmp_path / 'job')
  flags = search_flags(job_dir, 3, '--algorithm=regularized_evolution',
                       '--population_size=2', '--tournament_size=2')
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='3')
  output = open(tmp_path / 'controller.log', 'w')
  controller = subprocess.Popen([sys.executable, '-m', 'trainer.task', *flags],
                                cwd=REPO, env=env, stdout=output,
                                stderr=subprocess.STDOUT)
  db = os.path.join(job_dir, 'nas_garden.db')
  log_2 = os.path.join(job_dir, 'trials', '2', 'trial.log')

  def trial_2_training():
    if controller.poll() is not None:
      raise AssertionError((tmp_path / 'controller.log').read_text()[-2000:])
    return os.path.exists(log_2) and 'train | step' in open(log_2).read()

  try:
    _wait_for(lambda: os.path.exists(db) and trial_2_training())
  finally:
    controller.send_signal(signal.SIGKILL)
    controller.wait()
  killed = store_lib.Store.open(job_dir, read_only=True).trials('search')
  assert [(t.id, t.status) for t in killed] == [(1, 'completed'), (2, 'running')]
  # The trial process died with its controller: its log stops growing.
  size = os.path.getsize(log_2)
  time.sleep(3)
  assert os.path.getsize(log_2) == size

  result = cli(*flags, check=True)
  assert 'resuming: 2 trials' in result.stdout
  assert 'trial   2/3 re-running' in result.stdout
  trials = store_lib.Store.open(job_dir, read_only=True).trials('search')
  assert [t.id for t in trials] == [1, 2, 3]
  assert all(t.status == 'completed' for t in trials)
  assert trials[0] == killed[0]  # The finished trial is untouched.
  assert trials[1].nas_params_str == killed[1].nas_params_str
  assert trials[1].attempts == 2
  assert [t.feedback_seq for t in trials] == [0, 1, 2]


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
      return executors.TrialOutcome(None, 'boom')
    spec = search_spaces.materialize(
        self.space, search_spaces.dna_from_nas_params(self.dna_spec, trial.nas_params_str))
    score = sum(b.output_filters * b.num_repeats for b in spec.blocks) / 4000
    return executors.TrialOutcome(
        {'top_1_accuracy': score, 'accuracy_key': 'top_1_accuracy'}, None)


def _search(job_dir, runner, algorithm, max_trials=9, max_failed=0, parallel=1):
  space = search_spaces.get_search_space('mnasnet')
  store = store_lib.Store.open(job_dir, create=True)
  return search.Search(
      store, 'search', space,
      algorithms.make_algorithm(algorithm, seed=3, population_size=4,
                                tournament_size=2),
      runner, reward_lib.Reward(), max_trials, max_failed,
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
  outcome = executors.TrialOutcome(
      {'top_1_accuracy': 0.5, 'accuracy_key': 'top_1_accuracy'}, None)
  runner = lambda t: types.SimpleNamespace(poll=lambda: outcome)
  trials = search.Search(store, 'search', space, algorithms.make_algorithm('grid', 0),
                         runner, reward_lib.Reward(), 100, 0,
                         progress=lambda line: None).run()
  assert len(trials) == 20
  assert len({t.nas_params_str for t in trials}) == 20


@pytest.mark.parametrize('hard, value, expected', [
    (True, 2.0, 0.8 * 0.5), (True, 0.5, 0.8), (False, 0.5, 0.8 * 2.0),
    (False, 2.0, 0.8 * 0.5)])
def test_mnasnet_reward(hard, value, expected):
  reward = reward_lib.Reward(targets={'multi_add_flops_billion': 1.0}, hard=hard)
  metrics = {'top_1_accuracy': 0.8, 'accuracy_key': 'top_1_accuracy',
             'multi_add_flops_billion': value}
  assert reward(metrics) == pytest.approx(expected)
  assert reward_lib.Reward()(metrics) == pytest.approx(0.8)
  soft_paper = reward_lib.Reward(targets={'multi_add_flops_billion': 1.0},
                                 exponent=0.07, hard=False)
  assert soft_paper(metrics) == pytest.approx(0.8 * (1.0 / value) ** 0.07)
