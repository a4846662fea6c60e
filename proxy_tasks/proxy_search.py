"""Proxy search: whether a candidate proxy ranks the reference models as full
training does, from which evaluation step on, and which passing candidate is
cheapest.

As on the Vertex AI NAS platform, Kendall τ between the proxy's accuracy and
the full-training accuracy is taken at every evaluation step the proxy
trials recorded, and only where enough models have a result there: at least
5 (all, in a smaller reference set) and at least 70 %. A candidate passes at
the first step where τ reaches the threshold, and, where both sides measured
latency, once the latency τ reaches it too. Its cost there is the median
training compute of the reference models up to that step (steps × batch ×
multiply-adds per image): unlike training time, which is reported too, it
does not depend on what else the machine runs.
"""

import statistics
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from proxy_tasks import kendall
from proxy_tasks import reference as reference_lib
from trainer import objective

MIN_VALID_MODELS = 5
MIN_VALID_FRACTION = 0.7
DEFAULT_THRESHOLD = 0.65
GATING_COST = objective.LATENCY  # The platform checks latency ranking, not FLOPs.


class ProxyRun(NamedTuple):
  """One reference model trained under a candidate proxy."""
  curve: Dict[int, float]  # Accuracy at each evaluated step.
  seconds_per_step: float
  # Billions of forward multiply-adds per train step (batch × per image);
  # None where FLOPs were not counted.
  compute_per_step: Optional[float]
  costs: Dict[str, float]  # Of reference.COST_METRICS, those measured.


def enough_valid(num_valid: int, num_models: int) -> bool:
  """Whether enough models have a proxy result for their τ to count."""
  return (num_valid >= max(2, min(MIN_VALID_MODELS, num_models)) and
          num_valid >= MIN_VALID_FRACTION * num_models)


def correlation_by_step(reference: Sequence[reference_lib.ReferenceModel],
                        runs: Sequence[Optional[ProxyRun]]
                        ) -> List[Dict[str, Any]]:
  """τ at each evaluated step (None with too few models there), with the
  models counted and their median training compute and seconds to that
  step. `runs` pairs with `reference`; None for a model whose proxy trial
  failed."""
  steps = sorted({step for run in runs if run for step in run.curve})
  rows = []
  for step in steps:
    paired = [(run, model) for run, model in zip(runs, reference)
              if run and step in run.curve]
    tau = (kendall.kendall_tau([run.curve[step] for run, _ in paired],
                               [model.accuracy for _, model in paired])
           if enough_valid(len(paired), len(reference)) else None)
    computes = [run.compute_per_step * step for run, _ in paired
                if run.compute_per_step is not None]
    rows.append({
        'step': step, 'kendall_tau': tau, 'num_models': len(paired),
        'train_compute': statistics.median(computes) if computes else None,
        'train_seconds': statistics.median(
            run.seconds_per_step * step for run, _ in paired)})
  return rows


def cost_correlations(reference: Sequence[reference_lib.ReferenceModel],
                      runs: Sequence[Optional[ProxyRun]]
                      ) -> Dict[str, Optional[float]]:
  """τ between the proxy's and the reference's costs, for each cost both
  sides measured."""
  taus = {}
  for metric in reference_lib.COST_METRICS:
    paired = [(run.costs[metric], model.costs[metric])
              for run, model in zip(runs, reference)
              if run and metric in run.costs and metric in model.costs]
    if paired:
      taus[metric] = (kendall.kendall_tau(*zip(*paired))
                      if enough_valid(len(paired), len(reference)) else None)
  return taus


def evaluate(reference: Sequence[reference_lib.ReferenceModel],
             runs: Sequence[Optional[ProxyRun]],
             threshold: float = DEFAULT_THRESHOLD) -> Dict[str, Any]:
  """One candidate's correlations, and where (if anywhere) it passes."""
  by_step = correlation_by_step(reference, runs)
  costs = cost_correlations(reference, runs)
  crossing = next((row for row in by_step if row['kendall_tau'] is not None
                   and row['kendall_tau'] >= threshold), None)
  gate = costs.get(GATING_COST, threshold)
  passed = crossing is not None and gate is not None and gate >= threshold
  final = by_step[-1] if by_step else {}
  return {
      'kendall_tau_by_step': by_step,
      'final_kendall_tau': final.get('kendall_tau'),
      'final_train_compute': final.get('train_compute'),
      'final_train_seconds': final.get('train_seconds'),
      'cost_kendall_tau': costs,
      'passed': passed,
      'pass_step': crossing['step'] if passed else None,
      'pass_train_compute': crossing['train_compute'] if passed else None,
      'pass_train_seconds': crossing['train_seconds'] if passed else None,
      'valid_models': sum(run is not None for run in runs),
  }


def cheapest_passing(results: Dict[str, Dict[str, Any]]) -> Optional[str]:
  """The passing candidate with the least training compute to its pass
  step (uncounted compute last, then by time; the first listed on a tie);
  None if none passes."""

  def cost(name):
    result = results[name]
    compute = result['pass_train_compute']
    return (compute is None, compute or 0.0, result['pass_train_seconds'])

  passing = [name for name, result in results.items() if result['passed']]
  return min(passing, key=cost, default=None)
