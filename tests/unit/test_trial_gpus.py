"""Each parallel trial gets its own GPUs: local trials from the executor's
slots on a machine reporting stand-in GPUs, Ray trials from Ray's assignment
on a local Ray instance told it has GPUs. Stand-in trial processes write
the CUDA_VISIBLE_DEVICES they were started with and run until told to end.
"""

import collections
import os
import time

import pytest

from trainer import flags
from trainer.controller import executors
from trainer.modes import common

STAND_IN_GPUS = ['0', '1', '2', '3']
SEEN_FILE, FINISH_FILE, UNSET = 'seen_gpus', 'finish', '<unset>'
# A trial process: records the GPUs it sees, then ends once FINISH_FILE
# exists in its trial dir, with metrics.
STAND_IN_TRIAL = f'''
import json, os, sys, time
trial_dir = sys.argv[1]
seen = os.environ.get('CUDA_VISIBLE_DEVICES', {UNSET!r})
with open(os.path.join(trial_dir, 'seen.tmp'), 'w') as f:
  f.write(seen)
os.replace(os.path.join(trial_dir, 'seen.tmp'),
           os.path.join(trial_dir, {SEEN_FILE!r}))
while not os.path.exists(os.path.join(trial_dir, {FINISH_FILE!r})):
  time.sleep(0.02)
with open(os.path.join(trial_dir, 'metrics.json'), 'w') as f:
  json.dump({{'top_1_accuracy': 1.0}}, f)
'''
TIMEOUT_S = 60


def _args(trial_dir):
  return ['-c', STAND_IN_TRIAL, trial_dir]


def _seen(trial_dir):
  """The CUDA_VISIBLE_DEVICES the trial process saw; None before it ran."""
  path = os.path.join(trial_dir, SEEN_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return f.read()


def _finish(trial_dir):
  open(os.path.join(trial_dir, FINISH_FILE), 'w').close()


def _wait_for(predicate):
  deadline = time.monotonic() + TIMEOUT_S
  while not predicate():
    assert time.monotonic() < deadline, 'timed out'
    time.sleep(0.02)


def _end(handle):
  """Polls `handle` until its trial ends; its outcome."""
  ending = []
  _wait_for(lambda: ending.append(handle.poll()) or ending[-1] is not None)
  return ending[-1]


@pytest.mark.parametrize('gpus_per_trial, at_once', [(1, 4), (2, 2), (0.5, 8)])
def test_parallel_local_trials_get_their_own_gpus(tmp_path, gpus_per_trial,
                                                  at_once):
  slots = executors.local_gpu_slots(gpus_per_trial, STAND_IN_GPUS)
  assert slots.trials_at_once == at_once
  executor = executors.LocalExecutor(gpu_slots=slots)
  dirs = [str(tmp_path / str(i)) for i in range(at_once + 1)]
  trials = [executor.start(_args(d), d) for d in dirs]
  running, (waiting, waiting_dir) = trials[:at_once], (trials[-1], dirs[-1])
  _wait_for(lambda: all(_seen(d) is not None for d in dirs[:at_once]))

  seen = [_seen(d).split(',') for d in dirs[:at_once]]
  assert all(len(gpus) == max(1, gpus_per_trial) for gpus in seen)
  # Every GPU in use, none by more trials than its share allows.
  per_gpu = round(1 / gpus_per_trial) if gpus_per_trial < 1 else 1
  assert collections.Counter(sum(seen, [])) == {g: per_gpu
                                                for g in STAND_IN_GPUS}
  # One trial more than the GPUs hold waits, unstarted.
  assert waiting.poll() is None and not waiting.started
  assert _seen(waiting_dir) is None

  _finish(dirs[1])
  assert _end(running[1]).status == 'completed'
  _wait_for(lambda: waiting.poll() is None and _seen(waiting_dir) is not None)
  assert _seen(waiting_dir).split(',') == seen[1]  # The GPUs just given back.

  for trial_dir in dirs:
    _finish(trial_dir)
  assert {_end(t).status for t in trials} == {'completed'}
  # Every slot was given back: as many trials fit again.
  assert all(slots.take() is not None for _ in range(at_once))
  assert slots.take() is None


def test_a_stopped_trial_gives_back_its_gpus_and_a_waiting_one_never_starts(
    tmp_path):
  executor = executors.LocalExecutor(
      gpu_slots=executors.local_gpu_slots(4, STAND_IN_GPUS))
  first, second = str(tmp_path / '1'), str(tmp_path / '2')
  running = executor.start(_args(first), first)
  waiting = executor.start(_args(second), second)
  _wait_for(lambda: _seen(first) is not None)
  waiting.stop()
  running.stop()
  assert _seen(second) is None and not waiting.started
  assert executor.gpu_slots.take() == STAND_IN_GPUS


def test_trials_told_to_use_no_gpu_see_none(tmp_path):
  executor = executors.LocalExecutor(
      gpu_slots=executors.local_gpu_slots(0, STAND_IN_GPUS))
  trial_dir = str(tmp_path / '1')
  handle = executor.start(_args(trial_dir), trial_dir)
  _finish(trial_dir)
  assert _end(handle).status == 'completed'
  assert _seen(trial_dir) == ''


@pytest.mark.parametrize('inherited', [None, '', '-1'])
def test_without_gpus_trials_keep_the_users_setting(tmp_path, monkeypatch,
                                                    inherited):
  """No GPU on the machine (no nvidia-smi on PATH, or CUDA_VISIBLE_DEVICES
  naming none): no slots, and trials inherit CUDA_VISIBLE_DEVICES as is."""
  monkeypatch.setenv('PATH', str(tmp_path))
  if inherited is None:
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
  else:
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', inherited)
  assert executors.local_gpu_slots(None) is None
  with pytest.raises(ValueError, match='no GPU'):
    executors.local_gpu_slots(1)
  trial_dir = str(tmp_path / '1')
  handle = executors.LocalExecutor().start(_args(trial_dir), trial_dir)
  _finish(trial_dir)
  assert _end(handle).status == 'completed'
  assert _seen(trial_dir) == (UNSET if inherited is None else inherited)


@pytest.mark.parametrize('gpus_per_trial, message', [
    (5, 'has 4 GPUs'), (1.5, 'whole number'), (0.3, 'must be 1/k'),
    (-1, 'whole number')])
def test_gpus_per_trial_the_machine_cannot_give_is_an_error(gpus_per_trial,
                                                            message):
  with pytest.raises(ValueError, match=message) as raised:
    executors.local_gpu_slots(gpus_per_trial, STAND_IN_GPUS)
  assert '\n' not in str(raised.value)


def _args_of(**values):
  """Flag values of a search, as the driver parses them."""
  defaults = {'executor': 'local', 'ray_address': '', 'cpus_per_trial': 1.0,
              'gpus_per_trial': None, 'max_parallel_trials': 1,
              'trial_timeout': 0.0, 'trial_memory_limit_mb': None,
              'warm_trials': True}
  return flags.Args({**defaults, **values},
                    [name for name in values if name in defaults])


def test_the_local_executor_finds_the_machines_gpus(monkeypatch, capsys):
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', ','.join(STAND_IN_GPUS))
  executor = common._executor(_args_of(max_parallel_trials=6))
  assert executor.gpu_slots.gpus == STAND_IN_GPUS
  assert executor.gpu_slots.trials_at_once == 4  # One GPU each by default.
  assert capsys.readouterr().out == (
      '--max_parallel_trials=6 but GPUs 0,1,2,3 hold 4 trials at once: the '
      'others wait for a free GPU\n')
  with pytest.raises(common.UsageError, match='has 4 GPUs'):
    common._executor(_args_of(gpus_per_trial=8))


@pytest.fixture(scope='module')
def ray_with_two_gpus():
  """A local Ray instance that believes it has two GPUs."""
  ray = pytest.importorskip('ray')
  ray.init(num_cpus=2, num_gpus=2, object_store_memory=100 * 2**20,
           include_dashboard=False, log_to_driver=False,
           configure_logging=False)
  yield ray
  ray.shutdown()


def test_ray_trials_see_exactly_the_gpus_ray_assigned(tmp_path,
                                                      ray_with_two_gpus):
  del ray_with_two_gpus
  executor = executors.RayExecutor(max_parallel_trials=2)
  assert executor.gpus_per_trial == 1  # The cluster has GPUs.
  dirs = [str(tmp_path / str(i)) for i in (1, 2)]
  for trial_dir in dirs:
    os.makedirs(trial_dir)
  handles = [executor.start(_args(d), d) for d in dirs]
  _wait_for(lambda: all(_seen(d) is not None for d in dirs))
  assert sorted(_seen(d) for d in dirs) == ['0', '1']
  for trial_dir in dirs:
    _finish(trial_dir)
  assert {_end(h).status for h in handles} == {'completed'}

  without = executors.RayExecutor(gpus_per_trial=0)
  trial_dir = str(tmp_path / '3')
  os.makedirs(trial_dir)
  handle = without.start(_args(trial_dir), trial_dir)
  _finish(trial_dir)
  assert _end(handle).status == 'completed'
  assert _seen(trial_dir) == ''  # Not every GPU of the node, as Ray leaves.

