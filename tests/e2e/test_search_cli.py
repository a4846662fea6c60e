"""Search controller end to end: real searches through the CLI, and resume
after the controller is killed with SIGKILL mid-trial."""

import os
import signal
import subprocess
import sys
import time

import pytest

import search_spaces
from tests.conftest import REPO, cli, search_flags
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
  header, *rows = listed.splitlines()[:4]
  assert header.split()[6] == 'device'
  assert [row.split()[6] for row in rows] == ['CPU'] * 3  # Where each trained.


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
