"""Faults: the real CLI (`nas-garden --mode=search`, local executor, real
trials) killed with SIGKILL at random points of one search, start-up
included; and trials that crash, produce NaN losses or time out."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

import search_spaces
from tests.conftest import REPO, TINY_OVERRIDE, cli, search_flags
from trainer import algorithms
from trainer import artifacts
from trainer import objective
from trainer import outcome as outcome_lib
from trainer.controller import executors
from trainer.controller import search
from trainer.controller import store as store_lib

# Evolution with a population of 2: from the third trial on, each proposal
# depends on the rewards fed back, so a resume must replay them exactly.
EVOLUTION = ('--algorithm=regularized_evolution', '--population_size=2',
             '--tournament_size=2')
TRAINING = 'train | step'  # In a trial's log once it trains.


def _start(flags, tmp_path, life):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='3')
  with open(tmp_path / f'life-{life}.log', 'w') as out:
    return subprocess.Popen([sys.executable, '-m', 'trainer.task', *flags],
                            cwd=REPO, env=env, stdout=out,
                            stderr=subprocess.STDOUT)


def _trials(job_dir):
  try:  # No store yet, or one being set up: no trials.
    store = store_lib.Store.open(job_dir, read_only=True)
  except store_lib.StoreError:
    return []
  try:
    return store.trials('search')
  finally:
    store.close()


def _training_since(job_dir, since):
  """Whether a trial log written after `since` shows a trial training."""
  for trial in _trials(job_dir):
    log = os.path.join(artifacts.trial_dir(job_dir, 'search', trial.id),
                       artifacts.LOG_FILE)
    if (os.path.exists(log) and os.path.getmtime(log) > since and
        TRAINING in open(log).read()):
      return True
  return False


def _finished(job_dir):
  return sum(t.status != 'running' for t in _trials(job_dir))


def _wait_then_kill(process, point, rng, job_dir, tmp_path, life):
  """Waits for the kill point (`start-up`: a random moment from launch, in
  imports, store and data preparation; `training`: inside a trial's
  training; `result`: just after a trial's result was recorded), then
  SIGKILLs the CLI, which must still be running."""
  started, finished = time.time(), _finished(job_dir)
  ready = {'start-up': lambda: True,
           'training': lambda: _training_since(job_dir, started),
           'result': lambda: _finished(job_dir) > finished}[point]
  delay = {'start-up': rng.uniform(0, 5), 'training': rng.uniform(0, 2),
           'result': rng.uniform(0, 0.5)}[point]
  deadline = started + 300
  try:
    while not ready():
      assert process.poll() is None, (
          f'the search ended before kill {life} ({point}): ' +
          (tmp_path / f'life-{life}.log').read_text()[-2000:])
      assert time.time() < deadline, f'no {point} point in 300 s'
      time.sleep(0.05)
    time.sleep(delay)
    assert process.poll() is None, f'the search ended before kill {life}'
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()


def _trial_processes(job_dir):
  """Live processes whose command line names the job dir."""
  found = []
  for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
      with open(f'/proc/{pid}/cmdline', 'rb') as f:
        if job_dir.encode() in f.read():
          found.append(int(pid))
    except OSError:
      pass
  return found


def _check_after_kill(job_dir, previous):
  """No trial outlives its controller; finished trials are kept exactly;
  ids are contiguous and at most the running ones are unfinished."""
  deadline = time.time() + 10
  while _trial_processes(job_dir) and time.time() < deadline:
    time.sleep(0.1)
  assert not _trial_processes(job_dir), 'a trial outlived its controller'
  trials = _trials(job_dir)
  assert [t.id for t in trials] == list(range(1, len(trials) + 1))
  now = {t.id: t for t in trials}
  for t in previous:
    if t.status != 'running':
      assert now[t.id] == t, f'finished trial {t.id} changed or lost'
  return trials


def _uninterrupted(tmp_path, max_trials, seed, results):
  """The search an uninterrupted controller makes when each trial gets the
  same metrics as in the killed run: the proposals must match."""
  space = search_spaces.get_search_space('mnasnet')

  def launch(trial):
    metrics = results[trial.id]
    return type('Ended', (), {'poll': lambda self: outcome_lib.completed(
        metrics)})()

  return search.Search(
      store_lib.Store.open(str(tmp_path / 'uninterrupted'), create=True),
      'search', space,
      algorithms.make_algorithm('regularized_evolution', seed, 2, 2), launch,
      objective.Objective('top_1_accuracy'), max_trials, 0,
      progress=lambda line: None).run()


def _kill_search_repeatedly(tmp_path, kills, max_trials, seed):
  job_dir = str(tmp_path / 'job')
  flags = search_flags(job_dir, max_trials, *EVOLUTION)
  flags = tuple(f for f in flags if not f.startswith('--seed')) + (
      f'--seed={seed}',)
  rng = random.Random(seed)
  # Start-up first; then each kind at least once, in a random order.
  later = ['training', 'result'] + rng.choices(
      ['start-up', 'training', 'result'], k=kills - 3)
  rng.shuffle(later)
  points = ['start-up'] + later
  previous = []
  for life, point in enumerate(points):
    process = _start(flags, tmp_path, life)
    _wait_then_kill(process, point, rng, job_dir, tmp_path, life)
    previous = _check_after_kill(job_dir, previous)

  result = cli(*flags, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  trials = _check_after_kill(job_dir, previous)
  assert len(trials) == max_trials
  assert all(t.status == 'completed' for t in trials)
  assert sorted(t.feedback_seq for t in trials) == list(range(max_trials))
  assert any(t.attempts > 1 for t in trials)  # Killed in training: re-run.
  assert 're-running' in ''.join(
      (tmp_path / f'life-{life}.log').read_text()
      for life in range(len(points))) + result.stdout
  straight = _uninterrupted(tmp_path, max_trials, seed,
                            {t.id: t.metrics for t in trials})
  assert [(t.nas_params_str, t.reward) for t in trials] == [
      (t.nas_params_str, t.reward) for t in straight]
  return points


def test_cli_killed_at_random_points_loses_and_repeats_nothing(tmp_path):
  points = _kill_search_repeatedly(tmp_path, kills=3, max_trials=3, seed=3)
  assert sorted(points) == ['result', 'start-up', 'training']


@pytest.mark.slow
def test_cli_killed_at_ten_random_points(tmp_path):
  _kill_search_repeatedly(tmp_path, kills=10, max_trials=8, seed=11)


def _running_trial(job_dir, controller_pid):
  """(fork server pid, trial pid) once a trial of the search is training:
  the trial is a child of the server, itself a child of the controller."""
  if not _training_since(job_dir, 0):
    return None
  children = executors._children_by_parent()  # pylint: disable=protected-access
  for server in children.get(controller_pid, []):
    for trial in children.get(server, []):
      return server, trial
  return None


def test_a_dead_fork_server_is_replaced_and_its_trial_rerun(tmp_path):
  job_dir = str(tmp_path / 'job')
  controller = _start(search_flags(job_dir, 2), tmp_path, 0)
  deadline = time.time() + 300
  found = None
  while not found and controller.poll() is None and time.time() < deadline:
    found = _running_trial(job_dir, controller.pid)
    time.sleep(0.05)
  assert found, (tmp_path / 'life-0.log').read_text()[-3000:]
  server, trial = found
  os.kill(server, signal.SIGKILL)
  assert controller.wait(timeout=600) == 0, (
      tmp_path / 'life-0.log').read_text()[-3000:]
  output = (tmp_path / 'life-0.log').read_text()
  assert 'trial   1/2 re-running: its fork server died' in output
  # The trial process died with its server (parent-death signal).
  assert not os.path.exists(f'/proc/{trial}') or (
      open(f'/proc/{trial}/stat').read().split()[2] == 'Z')
  trials = _trials(job_dir)
  assert [(t.id, t.status, t.attempts) for t in trials] == [
      (1, 'completed', 2), (2, 'completed', 1)]


def _nan_flags(job_dir, max_trials, *extra):
  # A constant NaN learning rate makes the first loop's loss NaN: Model
  # Garden's trainer raises "The loss value is NaN ...".
  rate = 'trainer.optimizer_config.learning_rate'
  return search_flags(
      job_dir, max_trials, '--max_failed_trials=1',
      f'--params_override={TINY_OVERRIDE},{rate}.type=constant,'
      f'{rate}.constant.learning_rate=.nan', *extra)


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
