"""The MnasNet reward: accuracy scaled by how far each cost is from its target.

hard: acc * prod(min(1, (T/m)^w))   (Vertex's default, w=1)
soft: acc * prod((T/m)^w)           (the paper's soft form is w=0.07)
A target of 0 (or an unmeasured cost) leaves the reward unscaled.
"""

from typing import Any, Dict, NamedTuple, Optional

# Flag name of each target -> metric the trial reports for it.
COST_METRICS = {
    'target_flops_multi_adds_billion': 'multi_add_flops_billion',
}


class Reward(NamedTuple):
  """Computes a trial's reward from its metrics (which name their accuracy)."""
  targets: Dict[str, float] = {}  # metric name -> target value
  exponent: float = 1.0
  hard: bool = True

  def __call__(self, metrics: Dict[str, Any]) -> float:
    reward = float(metrics[metrics['accuracy_key']])
    for metric, target in self.targets.items():
      reward *= cost_factor(metrics.get(metric), target, self.exponent, self.hard)
    return reward


def cost_factor(value: Optional[float], target: float, exponent: float,
                hard: bool) -> float:
  if not target or not value:
    return 1.0
  factor = (target / value) ** exponent
  return min(1.0, factor) if hard else factor
