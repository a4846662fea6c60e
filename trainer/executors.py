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
from typing import Any, Dict, List, NamedTuple, Optional

from trainer import artifacts

_PR_SET_PDEATHSIG = 1
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


class LocalExecutor:
  """Runs each trial as a subprocess on this machine, one at a time."""

  def __init__(self, timeout_s: float = 0):
    self.timeout_s = timeout_s or None

  def run(self, argv: List[str], trial_dir: str) -> TrialOutcome:
    os.makedirs(trial_dir, exist_ok=True)
    for stale in (artifacts.METRICS_FILE, artifacts.ERROR_FILE):
      if os.path.exists(os.path.join(trial_dir, stale)):
        os.remove(os.path.join(trial_dir, stale))
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (_REPO_ROOT, env.get('PYTHONPATH')) if p)
    env.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
    env['PYTHONUNBUFFERED'] = '1'  # trial.log streams as the trial runs.
    with open(os.path.join(trial_dir, artifacts.LOG_FILE), 'w') as log:
      process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env,
                                 preexec_fn=_die_with_parent)
      try:
        returncode = process.wait(timeout=self.timeout_s)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return TrialOutcome(None, f'timed out after {self.timeout_s:g} s')
    return read_outcome(trial_dir, returncode)


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
