"""What a search maximises: the MnasNet reward, or NSGA-II's (quality, -cost).

hard: acc * prod(min(1, (T/m)^w))   (Vertex's default, w=1)
soft: acc * prod((T/m)^w)           (the paper's soft form is w=0.07)
A target of 0 (or an unmeasured cost) leaves the reward unscaled.

The quality metric is the stage's (its task's: top_1_accuracy, AP, miou;
or the user's --reward_metric), named here once, not in every metrics dict.
"""

from typing import Any, Dict, NamedTuple, Optional, Tuple

from trainer import outcome

# Cost name (--multi_objective_cost, report columns) -> the metric trials
# report for it.
FLOPS = 'multi_add_flops_billion'
LATENCY = 'latency_ms'
MEMORY = 'memory_mb'
COSTS = {'flops': FLOPS, 'latency': LATENCY, 'memory': MEMORY}
# Flag of each reward target -> the cost metric it bounds.
TARGET_FLAGS = {
    'target_flops_multi_adds_billion': FLOPS,
    'target_device_latency_ms': LATENCY,
    'target_memory_mb': MEMORY,
}
# What a trained model is measured by after training (latency, memory)
# rather than estimated from its graph (FLOPs).
MEASURED_COSTS = (LATENCY, MEMORY)


class Objective(NamedTuple):
  """Turns a trial's metrics into what the search algorithm is fed.

  `targets` maps cost metrics to the reward's targets; `cost` (a cost
  metric) makes the objective two-dimensional, (quality, -cost) as NSGA-II
  takes it.
  """
  metric: str
  targets: Dict[str, float] = {}
  exponent: float = 1.0
  hard: bool = True
  cost: str = ''

  @property
  def multi_objective(self) -> bool:
    return bool(self.cost)

  def quality(self, metrics: Dict[str, Any]) -> float:
    """The quality metric's value, unscaled by any cost."""
    if not isinstance(metrics.get(self.metric), (int, float)):
      reported = sorted(k for k, v in metrics.items() if isinstance(v, float))
      raise ValueError(f'reward metric {self.metric!r} not reported; the '
                       f'trial reported: {", ".join(reported)}')
    return float(metrics[self.metric])

  def reward(self, metrics: Dict[str, Any]) -> float:
    value = self.quality(metrics)
    for metric, target in self.targets.items():
      value *= cost_factor(metrics.get(metric), target, self.exponent,
                           self.hard)
    return value

  def feedback(self, status: str, metrics: Optional[Dict[str, Any]],
               reward: float) -> Any:
    """What the algorithm learns from a rewarded trial: its reward, or for
    a multi-objective search (quality, -cost); an infeasible candidate,
    untrained, gets (0, -cost) where its cost is known and nothing
    otherwise. A ValueError means the trial lacks a metric."""
    if not self.multi_objective:
      return reward
    if status == outcome.INFEASIBLE:
      cost = (metrics or {}).get(self.cost)
      return None if cost is None else (0.0, -cost)
    return self.objectives(metrics)

  def objectives(self, metrics: Dict[str, Any]) -> Tuple[float, float]:
    """(quality, -cost), both maximised."""
    cost = metrics.get(self.cost)
    if not isinstance(cost, (int, float)):
      raise ValueError(f'multi-objective cost {self.cost!r} not reported')
    return self.quality(metrics), -float(cost)

  def needs_measurement(self) -> bool:
    """Whether trials must measure latency and memory after training."""
    return any(self.targets.get(m) for m in MEASURED_COSTS) or (
        self.cost in MEASURED_COSTS)

  def identity(self) -> Dict[str, Any]:
    """The objective as a stage records it, keyed by the flags that set it
    (a resume with another value names the flag)."""
    return {
        'quality_metric': self.metric,
        **{flag: self.targets.get(metric, 0.0)
           for flag, metric in TARGET_FLAGS.items()},
        'reward_exponent': self.exponent,
        'reward_mode': 'hard' if self.hard else 'soft',
        'multi_objective_cost': next(
            (name for name, metric in COSTS.items() if metric == self.cost), ''),
    }


def cost_factor(value: Optional[float], target: float, exponent: float,
                hard: bool) -> float:
  if not target or not value:
    return 1.0
  factor = (target / value) ** exponent
  return min(1.0, factor) if hard else factor
