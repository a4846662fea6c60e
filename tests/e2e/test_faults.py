"""Faults: a controller killed at random points many times in one search,
and trials that crash, produce NaN losses or time out."""

import os
import random
import signal
import subprocess
import sys
import time
import types

from tests import fault_controller
from tests import stand_in_trial
from tests.conftest import REPO, TINY_OVERRIDE, cli, search_flags
from trainer import outcome as outcome_lib
from trainer.controller import executors
from trainer.controller import store as store_lib

KILLS = 12
MAX_TRIALS = 40


def _controller(job_dir):
  return subprocess.Popen(
      [sys.executable, '-m', 'tests.fault_controller', job_dir,
       str(MAX_TRIALS)], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _starts(job_dir):
  path = os.path.join(job_dir, stand_in_trial.STARTS_LOG)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [int(line) for line in f.read().split()]


def _wait_for_a_start(controller, job_dir, starts_before):
  while len(_starts(job_dir)) <= starts_before:
    assert controller.poll() is None, controller.stderr.read()
    time.sleep(0.02)


def _check_snapshot(job_dir, previous, finished_starts):
  """Invariants after a kill; returns the trials now in the store."""
  trials = store_lib.Store.open(job_dir, read_only=True).trials('search')
  assert [t.id for t in trials] == list(range(1, len(trials) + 1))
  assert sum(t.status == 'running' for t in trials) <= 1
  now = {t.id: t for t in trials}
  for t in previous:
    if t.status != 'running':  # Finished before: kept exactly as it was.
      assert now[t.id] == t
  starts = _starts(job_dir)
  for trial_id, count in finished_starts.items():
    # A finished trial is never started again.
    assert starts.count(trial_id) == count, (trial_id, starts)
  return trials


def test_controller_killed_at_random_points_loses_and_repeats_nothing(tmp_path):
  job_dir = str(tmp_path / 'job')
  rng = random.Random(2026)
  previous, finished_starts, kills = [], {}, 0
  while kills < KILLS:
    controller = _controller(job_dir)
    if kills == 0:
      # A second controller on the same job dir is refused while one lives.
      lock = os.path.join(job_dir, 'controller.lock')
      while not os.path.exists(lock) or not os.path.getsize(lock):
        assert controller.poll() is None, controller.stderr.read()
        time.sleep(0.05)
      second = _controller(job_dir)
      _, stderr = second.communicate(timeout=60)
      assert second.returncode == 1
      assert f'another controller (pid {controller.pid}) is running' in stderr
    if rng.random() < 0.25:  # During start-up, store opening and replay.
      time.sleep(rng.uniform(0, 0.5))
    else:  # Once it started a trial: at most a few trials per life.
      _wait_for_a_start(controller, job_dir, len(_starts(job_dir)))
      time.sleep(rng.uniform(0, 0.4))
    assert controller.poll() is None, 'the search ended before its kills'
    controller.send_signal(signal.SIGKILL)
    controller.wait()
    kills += 1
    if not os.path.exists(os.path.join(job_dir, store_lib.STORE_FILE)):
      continue
    previous = _check_snapshot(job_dir, previous, finished_starts)
    starts = _starts(job_dir)
    finished_starts = {t.id: starts.count(t.id) for t in previous
                       if t.status != 'running'}
  controller = _controller(job_dir)
  _, stderr = controller.communicate(timeout=300)
  assert controller.returncode == 0, stderr
  trials = _check_snapshot(job_dir, previous, finished_starts)
  assert len(previous) >= 5  # The kills fell all along the search.

  assert len(trials) == MAX_TRIALS
  assert all(t.status == 'completed' for t in trials)
  assert sorted(t.feedback_seq for t in trials) == list(range(MAX_TRIALS))
  assert sum(t.attempts > 1 for t in trials) >= 1  # Some were re-run...
  starts = _starts(job_dir)
  assert all(starts.count(t.id) <= t.attempts for t in trials)
  # ...and the search is the one an uninterrupted controller makes.
  straight = fault_controller.make_search(
      str(tmp_path / 'straight'), MAX_TRIALS, lambda t: types.SimpleNamespace(
          poll=lambda: outcome_lib.completed(
              {'top_1_accuracy': stand_in_trial.score(t.nas_params_str)}))).run()
  assert [(t.nas_params_str, t.reward) for t in trials] == [
      (t.nas_params_str, t.reward) for t in straight]


def _nan_flags(job_dir, max_trials, *extra):
  # A NaN learning rate makes the first loop's loss NaN: Model Garden's
  # trainer raises "The loss value is NaN ...".
  return search_flags(
      job_dir, max_trials, '--max_failed_trials=1',
      f'--params_override={TINY_OVERRIDE},'
      'trainer.optimizer_config.learning_rate.constant.learning_rate=.nan',
      *extra)


def test_nan_loss_trials_are_infeasible_and_the_search_goes_on(tmp_path):
  # With --max_failed_trials=1, one failed trial would end the search.
  job_dir = str(tmp_path / 'job')
  result = cli(*_nan_flags(job_dir, 1), check=True)
  [trial] = store_lib.Store.open(job_dir, read_only=True).trials('search')
  assert (trial.status, trial.reward) == ('infeasible', 0.0)
  assert 'The loss value is NaN' in trial.error
  assert 'trials: 1 infeasible' in result.stdout

  # --noskip_nan_error: a NaN trial fails, and counts against the search.
  job_dir = str(tmp_path / 'strict')
  result = cli(*_nan_flags(job_dir, 2, '--noskip_nan_error'))
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      'nas-garden: error: 1 trials failed (--max_failed_trials=1); last '
      'error: The loss value is NaN')
  trials = store_lib.Store.open(job_dir, read_only=True).trials('search')
  assert [(t.id, t.status, t.reward) for t in trials] == [(1, 'failed', None)]


def test_timed_out_trials_are_stopped_and_recorded(tmp_path):
  job_dir = str(tmp_path / 'job')
  started = time.time()
  result = cli(*search_flags(job_dir, 3, '--trial_timeout=2',
                             '--max_failed_trials=2'))
  assert result.returncode == 1
  assert 'nas-garden: error: 2 trials failed' in result.stderr
  trials = store_lib.Store.open(job_dir, read_only=True).trials('search')
  assert [(t.id, t.status, t.error) for t in trials] == [
      (1, 'failed', 'timed out after 2 s'), (2, 'failed', 'timed out after 2 s')]
  assert all(t.finished_at - t.created_at < 10 for t in trials)
  assert time.time() - started < 120


def test_trial_reading_corrupt_records_fails_naming_the_file(tmp_path):
  """The first record of each file is sound, so the controller accepts the
  data; the trial reaches a corrupt record and fails naming its file."""
  from trainer.datasets import data  # pylint: disable=g-import-not-at-top  (TensorFlow)
  paths = data.make_digits(str(tmp_path / 'digits'), 32)
  shard = sorted(data.check_files(paths.train, 'train'))[0]
  with open(shard, 'r+b') as f:
    f.seek(os.path.getsize(shard) // 4)
    f.write(b'\xff' * 64)
  job_dir = str(tmp_path / 'job')
  result = cli(*search_flags(
      job_dir, 1, f'--train_data={paths.train}', f'--eval_data={paths.eval}',
      f'--params_override={TINY_OVERRIDE},task.model.num_classes=10'),
      check=True)  # One failure is under --max_failed_trials.
  assert 'trials: 1 failed' in result.stdout
  [trial] = store_lib.Store.open(job_dir, read_only=True).trials('search')
  assert trial.status == 'failed'
  assert trial.error.startswith(f'corrupt TFRecord data: {shard}: corrupted '
                                'record at ')


def test_trial_killed_by_sigkill_is_reported_as_likely_out_of_memory(tmp_path):
  outcome = executors.LocalExecutor().run(
      ['-c', 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'],
      str(tmp_path / 'trial'))
  assert outcome == outcome_lib.failed(
      outcome_lib.OOM, 'killed by SIGKILL (the kernel\'s out-of-memory killer '
      'sends it when memory runs out)')
