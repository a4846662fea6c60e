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

The verdict is often known before every trial has trained to its end:
`verdict` tells a running search when a candidate's trials can stop
(proxy_tasks.stopping).
"""

import math
import statistics
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from proxy_tasks import kendall
from proxy_tasks import reference as reference_lib
from trainer import objective

MIN_VALID_MODELS = 5
MIN_VALID_FRACTION = 0.7
DEFAULT_THRESHOLD = 0.65
GATING_COST = objective.LATENCY  # The platform checks latency ranking, not FLOPs.
PASSED, CANNOT_PASS = 'passed', 'cannot pass'


class ProxyRun(NamedTuple):
  """One reference model trained under a candidate proxy."""
  curve: Dict[int, float]  # Accuracy at each evaluated step.
  seconds_per_step: Optional[float]  # None where not timed (a stopped trial).
  # Billions of forward multiply-adds per train step (batch × per image);
  # None where FLOPs were not counted.
  compute_per_step: Optional[float]
  costs: Dict[str, float]  # Of reference.COST_METRICS, those measured.
  # Still training (or not started): it may yet evaluate steps after its
  # curve's last.
  training: bool = False


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
    rows.append({
        'step': step, 'kendall_tau': tau, 'num_models': len(paired),
        'train_compute': _median_to(step, [run.compute_per_step
                                           for run, _ in paired]),
        'train_seconds': _median_to(step, [run.seconds_per_step
                                           for run, _ in paired])})
  return rows


def _median_to(step: int, per_step: List[Optional[float]]) -> Optional[float]:
  """The median over models of a per-step amount times `step`; None where
  no model has it."""
  known = [value * step for value in per_step if value is not None]
  return statistics.median(known) if known else None


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
      'valid_models': sum(bool(run and run.curve) for run in runs),
  }


def evaluation_steps(train_steps: int, interval: int) -> List[int]:
  """The steps a trial evaluates at, as trainer.training.trial.EvalRecorder
  numbers them: every `interval` steps and at the end."""
  if interval <= 0 or interval >= train_steps:
    return [train_steps]
  return list(range(interval, train_steps, interval)) + [train_steps]


def tau_upper_bound(proxy: Sequence[Optional[float]],
                    full: Sequence[float]) -> Optional[float]:
  """The most τ-b of paired values can become once each None in `proxy` (a
  model not evaluated yet) has any value or drops out; τ itself without a
  None; None where τ stays undefined.

  τ-b = (C - D) / sqrt(Ny Nx), Ny and Nx the pairs untied in `full` and in
  `proxy`. Each pair with a None may turn concordant: C - D ≤ M - 2D, M the
  known C + D plus those pairs untied in `full`, D the known discordant
  pairs. Where that is positive, Nx ≥ M + the known pairs tied in `full`
  only, and the bound grows with M; where negative, Nx is at most that plus
  the other pairs with a None. Dropping a model never raises the bound.
  """
  if None not in proxy:
    return kendall.kendall_tau(proxy, full)
  untied_full = concordant = discordant = tied_full_only = free = 0
  free_tied_full = 0
  for i in range(len(full)):
    for j in range(i + 1, len(full)):
      dy = full[i] - full[j]
      untied_full += dy != 0
      if proxy[i] is None or proxy[j] is None:
        free += dy != 0
        free_tied_full += dy == 0
        continue
      dx = proxy[i] - proxy[j]
      if dy == 0:
        tied_full_only += dx != 0
      elif dx != 0:
        concordant += (dx > 0) == (dy > 0)
        discordant += (dx > 0) != (dy > 0)
  if not untied_full:
    return None
  ranked = concordant + discordant + free
  lead = ranked - 2 * discordant
  if not lead:
    return 0.0
  untied_proxy = ranked + tied_full_only + (free_tied_full if lead < 0 else 0)
  return lead / math.sqrt(untied_full * untied_proxy)


def tau_range_at(reference: Sequence[reference_lib.ReferenceModel],
                 runs: Sequence[Optional[ProxyRun]], step: int
                 ) -> Tuple[Optional[float], Optional[float]]:
  """(least, most) τ at `step` can become, whatever the models still
  training and not yet there evaluate at `step` (or if their trials fail
  first); least is None where τ may not count there, most where it cannot."""
  known, unknown = [], []
  for run, model in zip(runs, reference):
    if run and step in run.curve:
      known.append((run.curve[step], model.accuracy))
    elif run and run.training and step > max(run.curve, default=0):
      unknown.append((None, model.accuracy))
  if not enough_valid(len(known) + len(unknown), len(reference)):
    return None, None
  proxy, full = zip(*known, *unknown)
  most = tau_upper_bound(proxy, full)
  if not (known and enough_valid(len(known), len(reference)) and
          kendall.kendall_tau(*zip(*known)) is not None):
    return None, most  # Too few known, or they may stay all tied.
  negated = [None if x is None else -x for x in proxy]
  least = -tau_upper_bound(negated, full)
  return least, most


def verdict(reference: Sequence[reference_lib.ReferenceModel],
            runs: Sequence[Optional[ProxyRun]], steps: Sequence[int],
            threshold: float) -> Optional[str]:
  """A candidate's verdict once training on cannot change it, or None.

  `steps` are where its trials evaluate. The first step whose τ can still
  reach `threshold` decides: CANNOT_PASS where there is none, PASSED where
  τ there reaches it whatever the models still training evaluate (so
  `evaluate` gives the same crossing on the curves so far and on the
  curves trained to the end), assuming no trial fails. A candidate gated on
  latency (the reference has latency) measures it at its trials' ends, so
  only CANNOT_PASS stops it.
  """
  gated = any(GATING_COST in model.costs for model in reference)
  evaluated = {step for run in runs if run for step in run.curve}
  for step in sorted(evaluated | set(steps)):
    least, most = tau_range_at(reference, runs, step)
    if most is not None and most >= threshold:
      certain = least is not None and least >= threshold
      return PASSED if certain and not gated else None
  return CANNOT_PASS


def cheapest_passing(results: Dict[str, Dict[str, Any]]) -> Optional[str]:
  """The passing candidate with the least training compute to its pass
  step (uncounted compute last, then by time, untimed last; the first
  listed on a tie); None if none passes."""

  def cost(name):
    result = results[name]
    compute = result['pass_train_compute']
    seconds = result['pass_train_seconds']
    return (compute is None, compute or 0.0, seconds is None, seconds or 0.0)

  passing = [name for name, result in results.items() if result['passed']]
  return min(passing, key=cost, default=None)
