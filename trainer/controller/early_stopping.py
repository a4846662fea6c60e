"""Early stopping: the controller asks a rule's `check(trial_dir, trials)`
about each running trial and stops those it returns an outcome for.

A trial appends each evaluation to `evaluations.jsonl` in its dir as it
trains (metrics named as in metrics.json, plus `step`). The median rule here
ends a trial that is already behind its peers: once it has evaluated at or
after `step`, its quality there is compared with the finished trials' at the
same step; below their median, it is stopped and rewarded on what it
reached. (The proxy search's rule is proxy_tasks.stopping.)
"""

import json
import os
import statistics
from typing import Any, Callable, Dict, List, Optional

from trainer import artifacts
from trainer import fileio
from trainer import outcome
from trainer.controller import store as store_lib

RULES = ('none', 'median')


def evaluation_at(evaluations: List[Dict[str, Any]],
                  step: int) -> Optional[Dict[str, Any]]:
  """The first evaluation at or after `step`, or None."""
  return next((e for e in evaluations if e.get('step', 0) >= step), None)


def read_evaluations(trial_dir: str) -> List[Dict[str, Any]]:
  """The evaluations a running trial has written so far (whole lines only)."""
  path = os.path.join(trial_dir, artifacts.EVALUATIONS_FILE)
  if not fileio.exists(path):
    return []
  lines = fileio.read_text(path).split('\n')
  return [json.loads(line) for line in lines[:-1] if line]


def stopped(trial_dir: str,
            reported: Optional[Dict[str, Any]] = None) -> outcome.Outcome:
  """The outcome of a trial stopped now: the metrics of `reported` (one of
  its evaluations; by default the last, none before the first) and every
  evaluation it wrote, the learning curve it reached."""
  evaluations = read_evaluations(trial_dir)
  reported = reported or (evaluations[-1] if evaluations else {'step': None})
  metrics = {k: v for k, v in reported.items() if k != 'step'}
  return outcome.stopped(dict(metrics, evaluated_step=reported['step'],
                              evaluations=evaluations))


class MedianStopping:
  """Stops a trial whose quality at `step` is below the finished trials'
  median there; needs `min_trials` finished trials that reached `step`."""

  def __init__(self, step: int, quality: Callable[[Dict[str, Any]], float],
               min_trials: int = 3):
    if step < 1 or min_trials < 1:
      raise ValueError('early stopping needs step >= 1 and min_trials >= 1')
    self.step, self.quality, self.min_trials = step, quality, min_trials

  def check(self, trial_dir: str,
            finished: List[store_lib.Trial]) -> Optional[outcome.Outcome]:
    """The outcome to stop the trial with (its metrics those of the
    evaluation at `step`), or None to let it run."""
    current = evaluation_at(read_evaluations(trial_dir), self.step)
    if current is None:
      return None
    peers = [evaluation_at(t.metrics.get('evaluations', []), self.step)
             for t in finished
             if t.status in (store_lib.COMPLETED, store_lib.STOPPED)]
    peers = [self.quality(p) for p in peers if p is not None]
    if len(peers) < self.min_trials:
      return None
    if self.quality(current) >= statistics.median(peers):
      return None
    return stopped(trial_dir, current)
