"""Compound scaling (EfficientNet, Tan & Le 2019): the (α, β, γ) grid and
the φ-scaled sizes (no TensorFlow).

A network scales by φ with depth d = α^φ, width w = β^φ and resolution
r = γ^φ, where α·β²·γ² ≈ 2 (so its FLOPs grow about 2^φ) and α, β, γ ≥ 1.
`--mode=compound_scaling` (trainer/modes/compound_scaling.py) grid-searches
(α, β, γ) at φ = 1 on the proxy, then trains the φ = 1..K models of the best.

Rounding is the paper's: filters to multiples of 8 (Model Garden's
`nn_layers.round_filters`, which the backbones apply to
`filter_size_scale`), repeats up (`round_repeats`), and the image size to a
multiple of the task's quantum (`round_resolution`).
"""

import itertools
import math
from typing import Dict, List, NamedTuple, Sequence

# Stages of the job's store: the grid at φ = 1 on the proxy, then the φ models.
GRID_STAGE = 'compound_scaling_grid'
MODELS_STAGE = 'compound_scaling'
RESULT_FILE = 'compound_scaling.json'
PLOT_FILE = 'compound_scaling.png'
# The FLOPs target of φ = 1: twice the base.
FLOPS_GROWTH = 2.0
# How far a point's α·β²·γ² may be from FLOPS_GROWTH (relative): the grid's
# points are rounded to 3 decimals; the paper's (1.2, 1.1, 1.15) is 4% off.
CONSTRAINT_TOLERANCE = 0.05
# The paper's coefficients for EfficientNet-B0 (depth, width, resolution).
PAPER_POINT = (1.2, 1.1, 1.15)
MAX_GRID_POINTS = 10


class ScalingPoint(NamedTuple):
  """Coefficients per unit φ: depth α, width β, resolution γ."""
  depth: float
  width: float
  resolution: float

  @property
  def flops_growth(self) -> float:
    """α·β²·γ²: how much one unit of φ multiplies the FLOPs."""
    return self.depth * self.width ** 2 * self.resolution ** 2

  def multipliers(self, phi: int) -> 'ScalingPoint':
    """(d, w, r) = (α^φ, β^φ, γ^φ)."""
    return ScalingPoint(self.depth ** phi, self.width ** phi,
                        self.resolution ** phi)

  def label(self) -> str:
    return (f'α={self.depth:.3f} β={self.width:.3f} '
            f'γ={self.resolution:.3f}')

  def to_json(self) -> Dict[str, float]:
    return {'alpha_depth': self.depth, 'beta_width': self.width,
            'gamma_resolution': self.resolution,
            'alpha_beta2_gamma2': round(self.flops_growth, 4)}


def satisfies_constraint(point: ScalingPoint,
                         tolerance: float = CONSTRAINT_TOLERANCE) -> bool:
  """α·β²·γ² within `tolerance` of 2, and α, β, γ ≥ 1."""
  return (min(point) >= 1.0 and
          abs(point.flops_growth / FLOPS_GROWTH - 1) <= tolerance)


def grid(points: int) -> List[ScalingPoint]:
  """`points` (α, β, γ) with α·β²·γ² = 2 (to rounding), α, β, γ ≥ 1.

  Each point splits the doubling of FLOPs between depth, width and
  resolution in shares (a, b, c), a + b + c = 1: α = 2^a, β = 2^(b/2),
  γ = 2^(c/2). The shares lie on the lattice of step 1/m whose interior (no
  share 0) first has `points` points, the ones nearest the even split first:
  1 point is the even split, 3 give one dimension half the doubling and the
  others a quarter each, 6 add the splits (2, 2, 1)/5 ...
  """
  if not 1 <= points <= MAX_GRID_POINTS:
    raise ValueError(f'--compound_scaling_grid_points={points}: give 1 to '
                     f'{MAX_GRID_POINTS}')
  m = 3
  while (m - 1) * (m - 2) // 2 < points:
    m += 1
  shares = [(a, b, m - a - b) for a, b in itertools.product(range(1, m),
                                                             repeat=2)
            if m - a - b >= 1]
  shares.sort(key=lambda s: (sum((x / m - 1 / 3) ** 2 for x in s),
                             [-x for x in s]))
  return [ScalingPoint(round(FLOPS_GROWTH ** (a / m), 3),
                       round(FLOPS_GROWTH ** (b / m / 2), 3),
                       round(FLOPS_GROWTH ** (c / m / 2), 3))
          for a, b, c in shares[:points]]


def round_repeats(repeats: int, depth_multiplier: float) -> int:
  """A block group's repeats scaled by depth, rounded up (the paper's
  ceiling); 1.0 keeps them."""
  if depth_multiplier == 1.0:
    return repeats
  # Float noise (e.g. 1.1 ** 2 * 100) does not add a block.
  return int(math.ceil(round(repeats * depth_multiplier, 9)))


def round_resolution(size: int, multiplier: float, quantum: int) -> int:
  """An image side scaled by `multiplier`, to the nearest multiple of
  `quantum` (at least one quantum)."""
  return max(quantum, int(round(size * multiplier / quantum)) * quantum)


def phis(max_phi: int) -> List[int]:
  if max_phi < 1:
    raise ValueError(f'--compound_scaling_max_phi={max_phi}: give 1 or more')
  return list(range(1, max_phi + 1))


def scaled_input_size(input_size: Sequence[int], multiplier: float,
                      quantum: int) -> List[int]:
  """[height, width, channels] with both sides scaled."""
  return [round_resolution(input_size[0], multiplier, quantum),
          round_resolution(input_size[1], multiplier, quantum),
          *input_size[2:]]
