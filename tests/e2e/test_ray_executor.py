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


def _trial_process(job_dir, trial_id):
  """(pid, parent pid) of the running trial process of `trial_id`, if any."""
  for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
      with open(f'/proc/{pid}/cmdline', 'rb') as f:
        argv = f.read().decode(errors='replace').split('\0')
      with open(f'/proc/{pid}/stat') as f:
        parent = int(f.read().rsplit(')', 1)[1].split()[1])
    except OSError:
      continue
    if '--mode=trial' in argv and f'--job_dir={job_dir}' in argv and (
        f'--trial_id={trial_id}' in argv):
      return int(pid), parent
  return None


def test_three_trial_search_on_ray_survives_a_dead_worker(tmp_path):
  job_dir = str(tmp_path / 'job')
  flags = search_flags(job_dir, 3, '--executor=ray', '--max_parallel_trials=2',
                       '--cpus_per_trial=1')
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='3')
  log_path = tmp_path / 'controller.log'
  with open(log_path, 'w') as out:
    controller = subprocess.Popen(
        [sys.executable, '-m', 'trainer.task', *flags], cwd=REPO, env=env,
        stdout=out, stderr=subprocess.STDOUT)
    trial_log = os.path.join(job_dir, 'trials', '2', 'trial.log')
    deadline = time.time() + 300
    killed = None
    while time.time() < deadline and controller.poll() is None:
      found = _trial_process(job_dir, 2)
      if found and os.path.exists(trial_log) and (
          'train | step' in open(trial_log).read()):
        trial_pid, worker_pid = found
        os.kill(worker_pid, signal.SIGKILL)  # The Ray worker running trial 2.
        killed = trial_pid
        break
      time.sleep(0.2)
    assert killed, log_path.read_text()[-3000:]
    assert controller.wait(timeout=600) == 0, log_path.read_text()[-3000:]
  output = log_path.read_text()
  # The trial process died with its worker (parent-death signal).
  assert not os.path.exists(f'/proc/{killed}') or (
      open(f'/proc/{killed}/stat').read().split()[2] == 'Z')
  assert 'trial   2/3 re-running: its Ray worker died' in output
  trials = store_lib.Store.open(job_dir, read_only=True).trials('search')
  assert [(t.id, t.status) for t in trials] == [
      (i, 'completed') for i in (1, 2, 3)]
  assert [t.attempts for t in trials] == [1, 2, 1]
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
