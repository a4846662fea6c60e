"""Runs trials in isolated processes: on this machine, or as Ray tasks.

A trial is a Python process (`python -m trainer.task --mode=trial ...`),
given as its interpreter arguments; each executor starts it where the
trial's resources are and hands back a handle whose `poll()` gives its
outcome.Outcome once it has ended. A trial process dies with its parent (Linux
parent-death signal), so a killed controller or Ray worker never leaves an
orphan writing into a trial dir that a re-run is about to redo.
"""

import ctypes
import math
import os
import signal
import subprocess
import sys
import time
from typing import Callable, List, Optional

from trainer import artifacts
from trainer import outcome

_PR_SET_PDEATHSIG = 1
POLL_S = 0.2
# Loaded before any fork: the forked child only calls prctl.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith(
    'linux') else None
# Times a Ray trial whose worker or node died is run again before it fails.
MAX_WORKER_DEATHS = 3


def _die_with_parent() -> None:
  if _LIBC is not None:
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start_process(python_args: List[str], trial_dir: str):
  """Starts `python <python_args>` logging to the trial dir's trial.log, after
  removing what an earlier attempt left; returns (process, log file)."""
  os.makedirs(trial_dir, exist_ok=True)
  for stale in (artifacts.METRICS_FILE, artifacts.ERROR_FILE,
                artifacts.EVALUATIONS_FILE):
    if os.path.exists(os.path.join(trial_dir, stale)):
      os.remove(os.path.join(trial_dir, stale))
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (artifacts.SOURCE_ROOT, env.get('PYTHONPATH')) if p)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  env['PYTHONUNBUFFERED'] = '1'  # trial.log streams as the trial runs.
  log = open(os.path.join(trial_dir, artifacts.LOG_FILE), 'w')
  process = subprocess.Popen([sys.executable, *python_args], stdout=log,
                             stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env,
                             preexec_fn=_die_with_parent)
  return process, log


class _Deadline:
  def __init__(self, timeout_s: Optional[float]):
    self.timeout_s = timeout_s
    self._at = time.monotonic() + timeout_s if timeout_s else None

  def passed(self) -> bool:
    return self._at is not None and time.monotonic() >= self._at

  def expired(self) -> outcome.Outcome:
    return outcome.timed_out(self.timeout_s)


class RunningTrial:
  """A local trial process in flight."""

  def __init__(self, process: subprocess.Popen, trial_dir: str, log,
               timeout_s: Optional[float]):
    self._process, self._trial_dir, self._log = process, trial_dir, log
    self._deadline = _Deadline(timeout_s)

  @property
  def trial_dir(self) -> str:
    return self._trial_dir

  def poll(self) -> Optional[outcome.Outcome]:
    returncode = self._process.poll()
    if returncode is None:
      if not self._deadline.passed():
        return None
      self.stop()
      return self._deadline.expired()
    self._log.close()
    return outcome.read(self._trial_dir, returncode)

  def stop(self) -> None:
    """Ends the trial process now (timeout, early stopping)."""
    self._process.kill()
    self._process.wait()
    self._log.close()

  def wait(self) -> outcome.Outcome:
    while True:
      outcome = self.poll()
      if outcome is not None:
        return outcome
      time.sleep(POLL_S)


class LocalExecutor:
  """Starts each trial as a subprocess on this machine.

  Processes are started from the calling (main) thread and polled, never
  waited on from threads: `preexec_fn` is unsafe once threads exist.
  """

  def __init__(self, timeout_s: float = 0):
    self.timeout_s = timeout_s or None

  def start(self, python_args: List[str], trial_dir: str,
            on_rerun: Optional[Callable[[str], None]] = None) -> RunningTrial:
    """`on_rerun` is for executors that re-run a trial whose machine died;
    a local trial's death is its own failure."""
    del on_rerun
    process, log = start_process(python_args, trial_dir)
    return RunningTrial(process, trial_dir, log, self.timeout_s)

  def run(self, python_args: List[str], trial_dir: str) -> outcome.Outcome:
    """Runs one trial to its end."""
    return self.start(python_args, trial_dir).wait()


def run_trial_process(python_args: List[str], trial_dir: str) -> outcome.Outcome:
  """Runs a trial process to its end where this is called (a Ray worker)."""
  process, log = start_process(python_args, trial_dir)
  try:
    returncode = process.wait()
  finally:
    log.close()
  return outcome.read(trial_dir, returncode)


class RayExecutor:
  """Runs each trial as a Ray task holding `cpus_per_trial` CPUs and
  `gpus_per_trial` GPUs, on an existing cluster (`address`: 'auto' or
  'ray://host:port') or, without an address, on a local Ray instance sized
  for `max_parallel_trials` trials. The controller and its store stay here.

  Trial dirs are written by the workers: on a cluster the job dir must be on
  storage every node sees (a shared file system, or gs://).
  """

  def __init__(self, address: str = '', cpus_per_trial: float = 1,
               gpus_per_trial: float = 0, max_parallel_trials: int = 1,
               timeout_s: float = 0):
    import ray  # pylint: disable=g-import-not-at-top  (the ray extra)
    self.ray = ray
    self.timeout_s = timeout_s or None
    if not ray.is_initialized():
      options = dict(include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
      if address:
        ray.init(address=address, **options)
      else:
        ray.init(num_cpus=max(1, math.ceil(cpus_per_trial *
                                           max_parallel_trials)),
                 object_store_memory=100 * 2**20, **options)
    self._task = ray.remote(run_trial_process).options(
        num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)

  def start(self, python_args: List[str], trial_dir: str,
            on_rerun: Optional[Callable[[str], None]] = None) -> 'RayTrial':
    return RayTrial(self, python_args, trial_dir, on_rerun)

  def submit(self, python_args: List[str], trial_dir: str):
    return self._task.remote(python_args, trial_dir)


class RayTrial:
  """A trial in flight as a Ray task. A worker or node that dies takes the
  task with it: the trial is submitted again (up to MAX_WORKER_DEATHS times)
  and resumes from its last checkpoint; `on_rerun(reason)` is told each time.
  """

  def __init__(self, executor: RayExecutor, python_args: List[str],
               trial_dir: str, on_rerun: Optional[Callable[[str], None]]):
    self._executor, self._args, self._trial_dir = executor, python_args, trial_dir
    self._on_rerun = on_rerun or (lambda reason: None)
    self._deadline = _Deadline(executor.timeout_s)
    self._deaths = 0
    self._ref = executor.submit(python_args, trial_dir)

  @property
  def trial_dir(self) -> str:
    return self._trial_dir

  def poll(self) -> Optional[outcome.Outcome]:
    ray = self._executor.ray
    ready, _ = ray.wait([self._ref], timeout=0)
    if not ready:
      if not self._deadline.passed():
        return None
      self.stop()
      return self._deadline.expired()
    try:
      return ray.get(self._ref)
    except (ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError) as e:
      self._deaths += 1
      reason = (f'its Ray {"node" if isinstance(e, ray.exceptions.NodeDiedError) else "worker"}'
                ' died')
      if self._deaths > MAX_WORKER_DEATHS:
        return outcome.failed(outcome.CRASH, f'{reason} {self._deaths} times')
      self._on_rerun(reason)
      self._ref = self._executor.submit(self._args, self._trial_dir)
      return None
    except ray.exceptions.OutOfMemoryError:
      return outcome.failed(outcome.OOM, 'out of memory: Ray\'s memory '
                            'monitor killed the trial')
    except ray.exceptions.RayError as e:
      return outcome.failed(outcome.CRASH, ' '.join(str(e).split())[:500])

  def stop(self) -> None:
    """Ends the trial now: its worker is killed, and the trial process with it."""
    self._executor.ray.cancel(self._ref, force=True)
