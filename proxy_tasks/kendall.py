"""Kendall's rank correlation τ-b, the measure of whether a proxy ranks
architectures as full training does.

Plain Python (no SciPy at run time); ties count as in
`scipy.stats.kendalltau`'s default τ-b, which the tests check it against.
"""

import math
from typing import Optional, Sequence


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
  """τ-b of paired values, or None where it is undefined (fewer than two
  pairs, or one side all tied; SciPy gives NaN there).

  τ-b = (C - D) / sqrt((C + D + Tx) (C + D + Ty)), counting over pairs the
  concordant C, the discordant D, and those tied in x only (Tx) or y only (Ty).
  """
  if len(x) != len(y):
    raise ValueError(f'kendall_tau needs paired values ({len(x)} vs {len(y)})')
  concordant = discordant = tied_x = tied_y = 0
  for i in range(len(x)):
    for j in range(i + 1, len(x)):
      dx, dy = x[i] - x[j], y[i] - y[j]
      if dx == 0 and dy == 0:
        continue
      if dx == 0:
        tied_x += 1
      elif dy == 0:
        tied_y += 1
      elif (dx > 0) == (dy > 0):
        concordant += 1
      else:
        discordant += 1
  untied = concordant + discordant
  denominator = math.sqrt((untied + tied_x) * (untied + tied_y))
  return (concordant - discordant) / denominator if denominator else None
