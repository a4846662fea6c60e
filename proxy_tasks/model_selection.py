"""Model selection: the rounds that shrink a pool of architectures to a
reference set, and the pruning that keeps that set spread over accuracy and
cost.

Follows the Vertex AI NAS platform: each round removes 5 models; a round with
K models trains to a cumulative 100/K % more of the full schedule; the last
round trains to completion. Pruning min-max normalises accuracy and cost,
then repeatedly takes the closest pair and drops the member whose
second-nearest neighbour is closer (the one in the denser region). Unlike the
platform, the models holding the lowest and highest accuracy and cost are
never dropped while another choice exists, so the set keeps the whole range
a proxy must rank.
"""

import math
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from trainer import objective

MODELS_REMOVED_PER_ROUND = 5
MIN_KEPT = 2


class Round(NamedTuple):
  num_models: int
  training_pct: float  # Cumulative share of the full schedule, in %.
  train_steps: int
  final: bool  # Trains to completion: its accuracies are the reference.


def plan_rounds(start_models: int, final_models: int,
                full_train_steps: int) -> List[Round]:
  """The rounds from `start_models` down to `final_models`.

  Step budgets grow strictly, so a survivor continuing from its checkpoint
  always has steps left to train.
  """
  if final_models < MIN_KEPT or start_models < final_models:
    raise ValueError(f'model selection needs {MIN_KEPT} <= final models <= '
                     f'start models (got {start_models} -> {final_models})')
  rounds, pct, models, steps = [], 0.0, start_models, 0
  while models > final_models:
    pct += 100.0 / models
    steps = max(steps + 1, math.ceil(full_train_steps * pct / 100))
    rounds.append(Round(models, pct, steps, False))
    models = max(final_models, models - MODELS_REMOVED_PER_ROUND)
  if steps >= full_train_steps:
    raise ValueError(f'{len(rounds) + 1} rounds need more than '
                     f'{full_train_steps} train steps in the full schedule')
  rounds.append(Round(final_models, 100.0, full_train_steps, True))
  return rounds


Score = Optional[Tuple[float, float]]  # (accuracy, cost); None: invalid.


def prune(scores: Dict[Any, Score], num_to_remove: int) -> List[Any]:
  """The keys kept, in their order, after removing `num_to_remove`.

  Invalid models (None) are removed first and count toward the removals; at
  least MIN_KEPT valid models stay.
  """
  valid = {key: score for key, score in scores.items() if score is not None}
  if not valid:
    return []
  removals_left = num_to_remove - (len(scores) - len(valid))
  points = _normalized(valid)
  protected = _extremes(valid)
  while removals_left > 0 and len(points) > MIN_KEPT:
    del points[_next_removal(points, protected)]
    removals_left -= 1
  return [key for key in scores if key in points]


def _normalized(scores: Dict[Any, Tuple[float, float]]
                ) -> Dict[Any, Tuple[float, float]]:
  """Each axis min-max scaled to [0, 1]; a constant axis becomes 0."""
  columns = list(zip(*scores.values()))
  lows = [min(c) for c in columns]
  spans = [max(c) - low for c, low in zip(columns, lows)]
  return {key: tuple((v - low) / span if span else 0.0
                     for v, low, span in zip(score, lows, spans))
          for key, score in scores.items()}


def _extremes(scores: Dict[Any, Tuple[float, float]]) -> set:
  """The keys holding the lowest and highest accuracy and cost (the first in
  order where several tie)."""
  return {pick(scores, key=lambda k: scores[k][axis])
          for axis in (0, 1) for pick in (min, max)}


def _next_removal(points: Dict[Any, Tuple[float, float]], protected: set):
  """The member of the closest pair with the closer second-nearest
  neighbour; the pair's other member where that one is protected, the next
  pair where both are."""
  keys = list(points)
  pairs = sorted((math.dist(points[a], points[b]), i, j)
                 for i, a in enumerate(keys)
                 for j, b in enumerate(keys) if i < j)

  def second_nearest(key) -> float:
    return sorted(math.dist(points[key], points[other])
                  for other in keys if other != key)[1]

  first_choice = None
  for _, i, j in pairs:
    a, b = keys[i], keys[j]
    denser, sparser = ((a, b) if second_nearest(a) <= second_nearest(b)
                       else (b, a))
    if first_choice is None:
      first_choice = denser
    for choice in (denser, sparser):
      if choice not in protected:
        return choice
  return first_choice


def cost_metric(metrics: Sequence[Dict[str, Any]]) -> str:
  """Latency where every model reports it, else FLOPs: the cost the
  reference set is spread over."""
  if metrics and all(isinstance(m.get(objective.LATENCY), (int, float))
                     for m in metrics):
    return objective.LATENCY
  return objective.FLOPS
