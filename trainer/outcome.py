"""How a trial ended: its status, metrics and typed error (no TensorFlow).

The trial process writes its error here (`write_error`); the controller
reads a finished trial's outcome (`read`) and records it. Status and error
kind are explicit values, so nothing downstream inspects metric keys or
error text to tell a NaN loss or an early stop from a crash.
"""

import dataclasses
import json
import math
import os
import re
import signal
from typing import Any, Dict, Optional

from trainer import artifacts
from trainer import fileio

RUNNING = 'running'
COMPLETED = 'completed'
FAILED = 'failed'
# Never trained (over a hard budget) or its loss became NaN: reward 0, not
# counted as a failure.
INFEASIBLE = 'infeasible'
# Ended by early stopping, rewarded on what it reached.
STOPPED = 'stopped'
FINISHED = (COMPLETED, FAILED, INFEASIBLE, STOPPED)

# Error kinds.
CRASH = 'crash'
NAN = 'nan'
OOM = 'oom'
TIMEOUT = 'timeout'
ERROR_KINDS = (CRASH, NAN, OOM, TIMEOUT)


@dataclasses.dataclass(frozen=True)
class TrialError:
  kind: str
  message: str


@dataclasses.dataclass(frozen=True)
class Outcome:
  status: str
  metrics: Optional[Dict[str, Any]] = None
  error: Optional[TrialError] = None


def completed(metrics: Dict[str, Any]) -> Outcome:
  return Outcome(COMPLETED, metrics)


def stopped(metrics: Dict[str, Any]) -> Outcome:
  return Outcome(STOPPED, metrics)


def failed(kind: str, message: str) -> Outcome:
  return Outcome(FAILED, None, TrialError(kind, message))


def one_line(error: BaseException) -> str:
  """The error's message on one line. An error raised in a traced
  TensorFlow function keeps only its final exception, not the traceback
  TensorFlow puts before it."""
  lines = str(error).splitlines()
  if 'in user code:' in str(error):
    raised = [i for i, line in enumerate(lines)
              if re.match(r'\s*[\w.]+(Error|Exception): ', line)]
    lines = lines[raised[-1]:] if raised else lines
  return ' '.join(' '.join(lines).split()) or type(error).__name__


def error_of(exception: BaseException) -> TrialError:
  """The typed error of an exception a trial raised. TensorFlow's
  ResourceExhaustedError is out of memory; an error whose message holds
  "NaN" is a NaN loss (the platform's rule; Model Garden raises "The loss
  value is NaN ...")."""
  message = one_line(exception)
  if (type(exception).__name__ == 'ResourceExhaustedError' or
      isinstance(exception, MemoryError)):
    return TrialError(OOM, f'out of memory: {message}')
  return TrialError(NAN if 'NaN' in message else CRASH, message)


def write_error(trial_dir: str, error: TrialError) -> None:
  fileio.makedirs(trial_dir)
  fileio.write_text(os.path.join(trial_dir, artifacts.ERROR_FILE),
                    json.dumps(dataclasses.asdict(error)))


def write_metrics(trial_dir: str, metrics: Dict[str, Any]) -> None:
  fileio.write_text(os.path.join(trial_dir, artifacts.METRICS_FILE),
                    json.dumps(metrics, indent=1))


def read(trial_dir: str, returncode: int) -> Outcome:
  """The outcome of a trial process that exited with `returncode`: its
  metrics, else the error it wrote, else what its exit says."""
  metrics_path = os.path.join(trial_dir, artifacts.METRICS_FILE)
  if returncode == 0 and fileio.exists(metrics_path):
    return completed(json.loads(fileio.read_text(metrics_path)))
  error_path = os.path.join(trial_dir, artifacts.ERROR_FILE)
  if fileio.exists(error_path):
    return Outcome(FAILED, None,
                   TrialError(**json.loads(fileio.read_text(error_path))))
  if returncode == -signal.SIGKILL:
    return failed(OOM, 'killed by SIGKILL (the kernel\'s out-of-memory '
                  'killer sends it when memory runs out)')
  if returncode < 0:
    return failed(CRASH, f'killed by signal {-returncode}')
  return failed(CRASH, f'exited with code {returncode} (see '
                f'{artifacts.LOG_FILE})')


def timed_out(timeout_s: float) -> Outcome:
  return failed(TIMEOUT, f'timed out after {timeout_s:g} s')


def over_memory_limit(limit_mb: int, used_mb: float) -> Outcome:
  """A trial killed for holding more than --trial_memory_limit_mb; told
  apart from the kernel's SIGKILL by naming the cap and what was measured
  (rounded up: it is over the cap)."""
  return failed(OOM, f'out of memory: exceeded --trial_memory_limit_mb='
                f'{limit_mb} (measured peak {math.ceil(used_mb)} MB resident)')
