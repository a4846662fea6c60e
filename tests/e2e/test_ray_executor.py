"""Trials as Ray tasks on a local Ray instance (2 CPUs): a real 3-trial
search, two trials at a time, one of whose workers is killed mid-trial."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, search_flags
from trainer.controller import store as store_lib

pytest.importorskip('ray')


def _process(pid):
  """(argv, parent pid) of a live process."""
  with open(f'/proc/{pid}/cmdline', 'rb') as f:
    argv = f.read().decode(errors='replace').split('\0')
  with open(f'/proc/{pid}/stat') as f:
    return argv, int(f.read().rsplit(')', 1)[1].split()[1])


def _training_trial(job_dir, trial_id):
  """(pid, parent pid) of trial `trial_id`'s process once it trains: the
  process whose stdout is its log (a fork keeps its server's argv)."""
  trial_log = os.path.join(job_dir, 'trials', str(trial_id), 'trial.log')
  if not (os.path.exists(trial_log) and
          'train | step' in open(trial_log).read()):
    return None
  for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
      if os.readlink(f'/proc/{pid}/fd/1') == trial_log:
        return int(pid), _process(pid)[1]
    except OSError:
      continue
  return None


def _kill_when_training(job_dir, trial_id, controller, kill):
  """Calls kill(trial pid, its fork server's pid) once the trial trains;
  the trial's pid."""
  deadline = time.time() + 300
  while time.time() < deadline and controller.poll() is None:
    found = _training_trial(job_dir, trial_id)
    if found:
      trial_pid, server_pid = found
      kill(trial_pid, server_pid)
      return trial_pid
    time.sleep(0.2)
  return None


def _gone(pid):
  return not os.path.exists(f'/proc/{pid}') or (
      open(f'/proc/{pid}/stat').read().split()[2] == 'Z')


def test_three_trial_search_on_ray_survives_a_dead_worker_and_server(
    tmp_path):
  """Each Ray worker forks its trials from a fork server of its own. Trial
  2's Ray worker is killed mid-trial, then trial 3's fork server: each
  trial runs again from its checkpoint."""
  job_dir = str(tmp_path / 'job')
  flags = search_flags(job_dir, 3, '--executor=ray', '--max_parallel_trials=2',
                       '--cpus_per_trial=1')
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='3')
  log_path = tmp_path / 'controller.log'
  servers = []

  def kill_worker(_, server_pid):
    argv, worker_pid = _process(server_pid)
    servers.append(argv)
    os.kill(worker_pid, signal.SIGKILL)  # The Ray worker running trial 2.

  def kill_server(_, server_pid):
    servers.append(_process(server_pid)[0])
    os.kill(server_pid, signal.SIGKILL)

  with open(log_path, 'w') as out:
    controller = subprocess.Popen(
        [sys.executable, '-m', 'trainer.task', *flags], cwd=REPO, env=env,
        stdout=out, stderr=subprocess.STDOUT)
    killed = [_kill_when_training(job_dir, 2, controller, kill_worker),
              _kill_when_training(job_dir, 3, controller, kill_server)]
    assert all(killed), log_path.read_text()[-3000:]
    assert controller.wait(timeout=600) == 0, log_path.read_text()[-3000:]
  output = log_path.read_text()
  # Forked by warm servers; each trial died with its worker or server.
  assert all('trainer.controller.warm' in argv for argv in servers)
  assert all(_gone(pid) for pid in killed)
  assert 'trial   2/3 re-running: its Ray worker died' in output
  assert 'trial   3/3 re-running: its fork server died' in output
  trials = store_lib.Store.open(job_dir, read_only=True).trials('search')
  assert [(t.id, t.status) for t in trials] == [
      (i, 'completed') for i in (1, 2, 3)]
  assert [t.attempts for t in trials] == [1, 2, 2]
  assert all(t.metrics['top_1_accuracy'] > 0 for t in trials)
  assert sorted(t.feedback_seq for t in trials) == [0, 1, 2]
  # Two at a time: trial 2 started before trial 1 ended.
  assert trials[1].created_at < trials[0].finished_at


def test_ray_flags_need_the_ray_executor(tmp_path):
  from tests.conftest import cli  # pylint: disable=g-import-not-at-top
  result = cli(*search_flags(str(tmp_path / 'job'), 1), '--cpus_per_trial=2')
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
      'nas-garden: error: --cpus_per_trial only with --executor=ray (without '
      '--ray_address it starts a local Ray instance on this machine)')
  assert not (tmp_path / 'job' / 'nas_garden.db').exists()
