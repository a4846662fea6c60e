"""The proxy search's early stopping: a candidate's trials stop once its
verdict is known (proxy_search.verdict), through the controller's
early-stopping hook as the median rule's do (trainer.controller.early_stopping).

Stopped trials keep the learning curve they reached; the rule reads
everything from the store and the trial dirs, so a resumed search decides
as the killed one would have.
"""

import os
from typing import Any, Dict, List, Optional, Sequence

from proxy_tasks import proxy_search
from proxy_tasks import reference as reference_lib
from trainer import artifacts
from trainer import outcome
from trainer.controller import early_stopping
from trainer.controller import store as store_lib


def curve(evaluations: List[Dict[str, Any]],
          quality_metric: str) -> Dict[int, float]:
  return {e['step']: e[quality_metric] for e in evaluations}


def recorded_run(trial: store_lib.Trial, quality_metric: str,
                 compute_per_step: Optional[float] = None
                 ) -> Optional[proxy_search.ProxyRun]:
  """A finished proxy trial's learning curve, training speed and costs (a
  stopped one's curve ends where it stopped, untimed); None if it failed."""
  if trial.status not in (store_lib.COMPLETED, store_lib.STOPPED):
    return None
  metrics = trial.metrics
  costs = {m: float(metrics[m]) for m in reference_lib.COST_METRICS
           if isinstance(metrics.get(m), (int, float))}
  seconds = (metrics['train_and_eval_s'] / metrics['train_steps']
             if trial.status == store_lib.COMPLETED else None)
  return proxy_search.ProxyRun(curve(metrics['evaluations'], quality_metric),
                               seconds, compute_per_step, costs)


class CandidateStopping:
  """Stops every trial of a candidate once its verdict cannot change.

  In the proxy search's `stage`, trials n·k+1 … n·(k+1) train the n
  reference models under candidate k, evaluating at `steps[k]`.
  """

  def __init__(self, job_dir: str, stage: str,
               reference: Sequence[reference_lib.ReferenceModel],
               steps: Sequence[Sequence[int]], quality_metric: str,
               threshold: float):
    self.job_dir, self.stage = job_dir, stage
    self.reference, self.steps = reference, steps
    self.quality_metric, self.threshold = quality_metric, threshold

  def check(self, trial_dir: str,
            trials: List[store_lib.Trial]) -> Optional[outcome.Outcome]:
    """The outcome to stop the trial in `trial_dir` with, or None to let it
    run."""
    count = len(self.reference)
    trial_id = int(os.path.basename(os.path.normpath(trial_dir)))
    candidate = (trial_id - 1) // count
    recorded = {t.id: t for t in trials}
    runs = [self._run(recorded.get(i)) for i in
            range(candidate * count + 1, (candidate + 1) * count + 1)]
    if proxy_search.verdict(self.reference, runs, self.steps[candidate],
                            self.threshold) is None:
      return None
    return early_stopping.stopped(trial_dir)

  def _run(self, trial: Optional[store_lib.Trial]
           ) -> Optional[proxy_search.ProxyRun]:
    """A trial's run so far; a running or unstarted one is still training."""
    if trial is not None and trial.status != store_lib.RUNNING:
      return recorded_run(trial, self.quality_metric)
    evaluations = [] if trial is None else early_stopping.read_evaluations(
        artifacts.trial_dir(self.job_dir, self.stage, trial.id))
    return proxy_search.ProxyRun(curve(evaluations, self.quality_metric),
                                 None, None, {}, training=True)
