"""The MnasNet reward: accuracy scaled by how far each cost is from its target.

hard: acc * prod(min(1, (T/m)^w))   (Vertex's default, w=1)
soft: acc * prod((T/m)^w)           (the paper's soft form is w=0.07)
A target of 0 (or an unmeasured cost) leaves the reward unscaled.
"""

from typing import Any, Dict, NamedTuple, Optional, Tuple

# Flag name of each target -> metric the trial reports for it.
COST_METRICS = {
    'target_flops_multi_adds_billion': 'multi_add_flops_billion',
    'target_device_latency_ms': 'latency_ms',
    'target_memory_mb': 'memory_mb',
}


class Reward(NamedTuple):
  """Computes a trial's reward from its metrics.

  `metric` names the quality metric (e.g. AP50); by default the one the
  trial reports as its accuracy (`accuracy_key`: top_1_accuracy, AP, miou).
  """
  targets: Dict[str, float] = {}  # metric name -> target value
  exponent: float = 1.0
  hard: bool = True
  metric: str = ''

  def __call__(self, metrics: Dict[str, Any]) -> float:
    reward = self.quality(metrics)
    for metric, target in self.targets.items():
      reward *= cost_factor(metrics.get(metric), target, self.exponent, self.hard)
    return reward

  def quality(self, metrics: Dict[str, Any]) -> float:
    """The reward metric's value, unscaled by any cost."""
    name = self.metric or metrics['accuracy_key']
    if not isinstance(metrics.get(name), (int, float)):
      reported = sorted(k for k, v in metrics.items() if isinstance(v, float))
      raise ValueError(f'reward metric {name!r} not reported; the trial '
                       f'reported: {", ".join(reported)}')
    return float(metrics[name])


def objectives(metrics: Dict[str, Any], reward: Reward,
               cost_metric: str) -> Tuple[float, float]:
  """(quality, -cost), both maximised: what a multi-objective algorithm
  (NSGA-II) is fed, e.g. accuracy against FLOPs or latency."""
  cost = metrics.get(cost_metric)
  if not isinstance(cost, (int, float)):
    raise ValueError(f'multi-objective cost {cost_metric!r} not reported')
  return reward.quality(metrics), -float(cost)


def cost_factor(value: Optional[float], target: float, exponent: float,
                hard: bool) -> float:
  if not target or not value:
    return 1.0
  factor = (target / value) ** exponent
  return min(1.0, factor) if hard else factor
