"""Runs trials in isolated processes.

A trial process dies with its controller (Linux parent-death signal), so a
killed controller never leaves an orphan writing into a trial dir that the
resumed run is about to redo.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, NamedTuple, Optional

from trainer import artifacts

_PR_SET_PDEATHSIG = 1
POLL_S = 0.2
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TrialOutcome(NamedTuple):
  metrics: Optional[Dict[str, Any]]
  error: Optional[str]


def _die_with_parent() -> None:
  if sys.platform.startswith('linux'):
    ctypes.CDLL('libc.so.6', use_errno=True).prctl(
        _PR_SET_PDEATHSIG, signal.SIGKILL)


def trial_argv(flags: Dict[str, Any]) -> List[str]:
  """The command line of `python -m trainer.task --mode=trial` with flags."""
  return [sys.executable, '-m', 'trainer.task', '--mode=trial'] + [
      f'--{k}={v}' for k, v in flags.items()]


class RunningTrial:
  """A trial process in flight; `poll()` returns its outcome once it ended."""

  def __init__(self, process: subprocess.Popen, trial_dir: str, log,
               timeout_s: Optional[float]):
    self._process, self._trial_dir, self._log = process, trial_dir, log
    self._deadline = time.monotonic() + timeout_s if timeout_s else None
    self._timeout_s = timeout_s

  @property
  def trial_dir(self) -> str:
    return self._trial_dir

  def poll(self) -> Optional[TrialOutcome]:
    returncode = self._process.poll()
    if returncode is None:
      if self._deadline is None or time.monotonic() < self._deadline:
        return None
      self.stop()
      return TrialOutcome(None, f'timed out after {self._timeout_s:g} s')
    self._log.close()
    return read_outcome(self._trial_dir, returncode)

  def stop(self) -> None:
    """Ends the trial process now (timeout, early stopping)."""
    self._process.kill()
    self._process.wait()
    self._log.close()

  def wait(self) -> TrialOutcome:
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

  def start(self, argv: List[str], trial_dir: str) -> RunningTrial:
    os.makedirs(trial_dir, exist_ok=True)
    for stale in (artifacts.METRICS_FILE, artifacts.ERROR_FILE,
                  artifacts.EVALUATIONS_FILE):
      if os.path.exists(os.path.join(trial_dir, stale)):
        os.remove(os.path.join(trial_dir, stale))
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (_REPO_ROOT, env.get('PYTHONPATH')) if p)
    env.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
    env['PYTHONUNBUFFERED'] = '1'  # trial.log streams as the trial runs.
    log = open(os.path.join(trial_dir, artifacts.LOG_FILE), 'w')
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=env,
                               preexec_fn=_die_with_parent)
    return RunningTrial(process, trial_dir, log, self.timeout_s)

  def run(self, argv: List[str], trial_dir: str) -> TrialOutcome:
    """Runs one trial to its end."""
    return self.start(argv, trial_dir).wait()


def read_outcome(trial_dir: str, returncode: int) -> TrialOutcome:
  """Metrics of a finished trial process, or the best error line it left."""
  metrics_path = os.path.join(trial_dir, artifacts.METRICS_FILE)
  if returncode == 0 and os.path.exists(metrics_path):
    with open(metrics_path) as f:
      return TrialOutcome(json.load(f), None)
  error_path = os.path.join(trial_dir, artifacts.ERROR_FILE)
  if os.path.exists(error_path):
    with open(error_path) as f:
      return TrialOutcome(None, json.load(f)['error'])
  if returncode < 0:
    return TrialOutcome(None, f'killed by signal {-returncode}')
  return TrialOutcome(None, f'exited with code {returncode} (see {artifacts.LOG_FILE})')
