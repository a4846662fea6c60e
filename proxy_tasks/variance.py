"""How repeatable and how smooth a proxy's training is, as the Vertex AI NAS
platform measures it: a proxy whose accuracy varies between runs of one
model, or whose learning curve jumps, cannot rank models reliably.

Variance is the coefficient of variation std/mean of the runs' final
accuracies (population std). Smoothness normalises a run's steps and
accuracies to [0, 1], reads the learning curve as a linear spline, samples
its slope at 10 points in each of [0, .7), [.7, .9) and [.9, 1), and sums the
negative slopes (absolute value); a monotone curve scores 0.
"""

import statistics
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

MAX_COEFFICIENT_OF_VARIATION = 0.4  # The platform's "good" bound.
MAX_SMOOTHNESS = 10.0
SEGMENTS = ((0.0, 0.7), (0.7, 0.9), (0.9, 1.0))
SAMPLES_PER_SEGMENT = 10


def coefficient_of_variation(values: Sequence[float]) -> Optional[float]:
  """std/mean, or None for fewer than two values or a zero mean."""
  if len(values) < 2 or statistics.fmean(values) == 0:
    return None
  return statistics.pstdev(values) / statistics.fmean(values)


def smoothness(curve: Sequence[Tuple[int, float]]) -> Optional[float]:
  """The summed negative slope of one run's (step, accuracy) curve; None
  with fewer than two distinct steps."""
  by_step = dict(sorted(curve))  # A step evaluated twice keeps its last value.
  if len(by_step) < 2:
    return None
  x = _unit_scaled(np.array(list(by_step), dtype=float))
  y = _unit_scaled(np.array(list(by_step.values()), dtype=float))
  samples = np.concatenate([
      np.linspace(low, high, SAMPLES_PER_SEGMENT, endpoint=False)
      for low, high in SEGMENTS])
  # The slope of the spline piece each sample lies on (the right-hand piece
  # at a knot, as FITPACK's splev evaluates a degree-1 derivative).
  piece = np.clip(np.searchsorted(x, samples, side='right') - 1, 0, len(x) - 2)
  slopes = (y[piece + 1] - y[piece]) / (x[piece + 1] - x[piece])
  return float(abs(slopes[slopes < 0].sum()))


def _unit_scaled(values: np.ndarray) -> np.ndarray:
  span = values.max() - values.min()
  return (values - values.min()) / span if span else np.zeros_like(values)


def summary(accuracies: Sequence[float],
            curves: Sequence[Sequence[Tuple[int, float]]],
            max_coefficient_of_variation: float = MAX_COEFFICIENT_OF_VARIATION,
            max_smoothness: float = MAX_SMOOTHNESS) -> Dict[str, Any]:
  """Variance and smoothness of the runs of one model, with their verdicts
  (None where a measure is undefined, and then no pass)."""
  cv = coefficient_of_variation(accuracies)
  per_run = [smoothness(c) for c in curves]
  defined = [s for s in per_run if s is not None]
  mean = statistics.fmean(defined) if defined else None
  return {
      'coefficient_of_variation': cv,
      'max_coefficient_of_variation': max_coefficient_of_variation,
      'variance_passed': cv is not None and cv <= max_coefficient_of_variation,
      'smoothness': mean,
      'max_smoothness': max_smoothness,
      'smoothness_passed': mean is not None and mean <= max_smoothness,
      'smoothness_per_run': per_run,
  }
