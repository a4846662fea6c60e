"""Shared fixtures: a tiny real config, the CLI as a subprocess, one search job."""

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import trainer  # pylint: disable=unused-import  (sets TF_USE_LEGACY_KERAS before a test imports TensorFlow)
from trainer.controller import search
from trainer.controller import warm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, 'tests', 'fixtures', 'vertex_nas_params')

# The built-in digits at 32 px, by name: quicker to write and train than the
# default generated shapes, for tests where the data does not matter.
DIGITS = 'task.builtin_data=digits,task.model.input_size=[32,32,3]'
# A real but very short proxy: 40 steps of batch 32.
TINY_STEPS = ('trainer.train_steps=40,trainer.steps_per_loop=20,'
              'trainer.summary_interval=20,trainer.validation_interval=40,'
              'trainer.checkpoint_interval=40,task.train_data.global_batch_size=32')
TINY_OVERRIDE = f'{TINY_STEPS},{DIGITS}'  # ... on 32 px digits.


def fixture_sample(space, index=0):
  """A real Vertex nas_params_str of `space` (its fixture's sample `index`)."""
  with open(os.path.join(FIXTURES, f'{space}.json')) as f:
    return json.load(f)['nas_params_str_samples'][index]


def mnasnet_sample(index=0):
  return fixture_sample('mnasnet', index)


# TensorFlow's C++ log level of the CLI processes forked by _CLI_SERVER: it
# takes the level of the process it is forked from.
FORKED_TF_LOG_LEVEL = '3'
_CLI_SERVER = None  # This pytest process's fork server (warm.ForkServer).
# Held while a thread spawns _CLI_SERVER: some tests run the CLI from
# several threads.
_CLI_LOCK = threading.Lock()


def cli(*args, timeout=600, check=False, prefix=(), tf_log_level='3'):
  """Runs `python -m trainer.task` with flags (after a `prefix` command) and
  TensorFlow's C++ logs from `tf_log_level` up; returns the
  CompletedProcess.

  Without a prefix, at the default log level, the CLI process is forked by
  a fork server that has imported the trainer, as the local executor runs
  each trial (trainer/controller/warm.py): the same `trainer.task` main in
  a process of its own, without 5 s of imports. Start-up, logging,
  packaging and kill tests start fresh interpreters (kill_cli_when,
  test_quiet_cli.py, test_package.py, test_faults.py).
  """
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL=tf_log_level)
  if prefix or tf_log_level != FORKED_TF_LOG_LEVEL:
    result = subprocess.run(
        [*prefix, sys.executable, '-m', 'trainer.task', *args], cwd=REPO,
        env=env, capture_output=True, text=True, timeout=timeout)
  else:
    result = _forked_cli(args, env, timeout)
  if check and result.returncode != 0:
    raise AssertionError(f'CLI failed ({result.returncode}):\n{result.stderr[-3000:]}')
  return result


def _forked_cli(args, env, timeout):
  """cli() in a process forked by this pytest process's fork server."""
  global _CLI_SERVER  # pylint: disable=global-statement
  with tempfile.TemporaryDirectory() as out:
    stdout, stderr = os.path.join(out, 'stdout'), os.path.join(out, 'stderr')
    with _CLI_LOCK:
      if _CLI_SERVER is None or not _CLI_SERVER.alive:
        _CLI_SERVER = warm.ForkServer.spawn(env)
    process = _CLI_SERVER.start([*warm.TASK_MODULE, *args], stdout, env,
                                err_path=stderr, cwd=REPO)
    try:
      process.wait(timeout)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
      raise
    with open(stdout) as out_file, open(stderr) as err_file:
      return subprocess.CompletedProcess(process.args, process.returncode,
                                         out_file.read(), err_file.read())


def exported_and_timed(job_dir):
  """`--mode=export` of the job's best model through the CLI into
  <job_dir>/export; checks that `latency.measure` times the SavedModel and
  returns its serving signature."""
  export_dir = job_dir / 'export'
  result = cli(f'--job_dir={job_dir}', '--mode=export',
               f'--export_dir={export_dir}')
  assert result.returncode == 0, result.stderr[-3000:]
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (TensorFlow: only here)
  from trainer.training import latency  # pylint: disable=g-import-not-at-top
  saved_model = str(export_dir / 'saved_model')
  assert latency.measure(saved_model, warmup_runs=1,
                         timed_runs=2)['latency_ms'] > 0
  return tf.saved_model.load(saved_model).signatures['serving_default']


def kill_cli_when(flags, log_path, marker, tmp_path):
  """Starts the CLI with `flags` and SIGKILLs it once `marker` appears in the
  file `log_path` (e.g. a trial's log once it trains); its output goes to
  tmp_path/controller.log."""
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='3')
  with open(tmp_path / 'controller.log', 'w') as out:
    process = subprocess.Popen([sys.executable, '-m', 'trainer.task', *flags],
                               cwd=REPO, env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    try:
      while time.time() < deadline:
        if process.poll() is not None:
          raise AssertionError(
              (tmp_path / 'controller.log').read_text()[-3000:])
        if os.path.exists(log_path) and marker in open(log_path).read():
          return
        time.sleep(0.2)
      raise AssertionError(f'{marker!r} never appeared in {log_path}')
    finally:
      process.send_signal(signal.SIGKILL)
      process.wait()


SEARCH_SEED = 1  # search_flags' --seed.


def search_flags(job_dir, max_trials, *extra, override=TINY_OVERRIDE):
  return ('--mode=search', f'--job_dir={job_dir}', '--search_space=mnasnet',
          f'--max_trials={max_trials}', f'--params_override={override}',
          f'--seed={SEARCH_SEED}', *extra)


def _session_root(tmp_path_factory):
  """The temp dir both xdist workers of this session share."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


@pytest.fixture(scope='session', autouse=True)
def data_cache(tmp_path_factory):
  """Built-in data is generated once per test session (shared by xdist's
  workers), not in the user's cache; CLI subprocesses inherit it."""
  os.environ['NAS_GARDEN_DATA_CACHE'] = str(
      _session_root(tmp_path_factory) / 'data-cache')
  return os.environ['NAS_GARDEN_DATA_CACHE']


def _run_once(tmp_path_factory, name, flags, **cli_args):
  """The CLI with `flags`, run once per test session (shared by xdist's
  workers: the first to need it runs it while the other waits) in job dir
  `name`, which is copied into the calling worker's own temp dir. Returns
  (job dir copy, the CompletedProcess); fails if the run did."""
  shared = _session_root(tmp_path_factory) / name
  with open(f'{shared}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(f'{shared}.json'):
      shutil.rmtree(shared, ignore_errors=True)
      result = cli(*(flag.format(job_dir=shared) for flag in flags),
                   check=True, **cli_args)
      with open(f'{shared}.partial', 'w') as f:
        json.dump([result.returncode, result.stdout, result.stderr], f)
      os.rename(f'{shared}.partial', f'{shared}.json')
  job_dir = tmp_path_factory.mktemp(name) / 'job'
  shutil.copytree(shared, job_dir)
  with open(f'{shared}.json') as f:
    returncode, stdout, stderr = json.load(f)
  return str(job_dir), subprocess.CompletedProcess(
      [], returncode, stdout, stderr)


@pytest.fixture(scope='session')
def search_job(tmp_path_factory):
  """A finished 3-trial search with a FLOPs target, two trials at a time
  (real trials, local executor), run once per session. Returns (job dir,
  the search's stdout)."""
  job_dir, result = _run_once(tmp_path_factory, 'search_job', search_flags(
      '{job_dir}', 3, '--target_flops_multi_adds_billion=0.0008',
      '--max_parallel_trials=2'))
  return job_dir, result.stdout


@pytest.fixture(scope='session')
def measured_search(tmp_path_factory):
  """A finished 1-trial search with what three tests check of one trial:
  mirrored over two logical CPUs in mixed precision (test_runtime.py), its
  latency and memory measured against targets (test_hardware_aware.py), and
  TensorFlow's C++ logs at every level kept off the terminal
  (test_quiet_cli.py). Returns (job dir, the CompletedProcess)."""
  return _run_once(tmp_path_factory, 'measured_search', search_flags(
      '{job_dir}', 1, '--distribution_strategy=mirrored', '--cpu_replicas=2',
      '--mixed_precision', '--target_device_latency_ms=0.001',
      '--target_memory_mb=1e6'), tf_log_level='0')


# The platform's small SpineNet detection test config (its keys and values).
PLATFORM_SPINENET_YAML = """\
task:
  model:
    backbone:
      tunable_spinenet:
        model_id: '49S'
        filter_size_scale: 0.2
        resample_alpha: 0.2
        endpoints_num_filters: 4
        block_repeats: 1
      type: 'tunable_spinenet'
    decoder:
      type: 'identity'
    input_size: [32, 32, 3]
    max_level: 4
    min_level: 3
"""
# A classification config that sets only the input size, batch and steps.
PLATFORM_CLASSIFICATION_YAML = """\
task:
  model: {input_size: [32, 32, 3]}
  train_data: {global_batch_size: 4}
  validation_data: {global_batch_size: 4}
trainer: {train_steps: 2, steps_per_loop: 1, validation_steps: 1,
          validation_interval: 1, summary_interval: 1, checkpoint_interval: 1}
"""


def job_dir_snapshot(job_dir):
  """Every file under the job dir, by path, with a hash of its bytes: the
  store's db, -wal and -shm files, the trial dirs, data and all. The
  controller lock's content is the pid of its last holder, not state."""
  files = {}
  for folder, _, names in os.walk(job_dir):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, 'rb') as f:
        content = b'' if name == search.LOCK_FILE else f.read()
      files[os.path.relpath(path, job_dir)] = hashlib.sha256(
          content).hexdigest()
  return files
