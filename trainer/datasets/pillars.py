"""Points -> pillars: PointPillars' input, made in the input pipeline.

The bird's-eye-view grid covers `point_range` in cells (pillars) of
`pillar_size` metres: row = floor((y - y_min) / size_y), column =
floor((x - x_min) / size_x). Each non-empty pillar keeps up to `max_points`
of its points, each decorated as the paper does with 9 features: x, y, z,
reflectance, its offset from the mean of the pillar's kept points (x, y, z)
and from the pillar's centre (x, y). At most `max_pillars` pillars are kept,
those with the most points (ties: first seen). The PointPillars model runs
its feature net over the points of each pillar and scatters the result back
to the grid by `indices`.
"""

from typing import Dict, NamedTuple, Tuple

import numpy as np
import tensorflow as tf

NUM_POINT_FEATURES = 9


class PillarGrid(NamedTuple):
  point_range: Tuple[Tuple[float, float, float], Tuple[float, float, float]]
  pillar_size: Tuple[float, float]
  max_pillars: int
  max_points: int

  @property
  def rows(self) -> int:
    (_, y_min, _), (_, y_max, _) = self.point_range
    return int(round((y_max - y_min) / self.pillar_size[1]))

  @property
  def cols(self) -> int:
    (x_min, _, _), (x_max, _, _) = self.point_range
    return int(round((x_max - x_min) / self.pillar_size[0]))

  def cell_centres(self) -> Tuple[np.ndarray, np.ndarray]:
    """The cells' centres: x of each column (cols,), y of each row (rows,)."""
    (x_min, y_min, _), _ = self.point_range
    return (x_min + (np.arange(self.cols) + 0.5) * self.pillar_size[0],
            y_min + (np.arange(self.rows) + 0.5) * self.pillar_size[1])


def pillarize(points: tf.Tensor, grid: PillarGrid) -> Dict[str, tf.Tensor]:
  """(N, 4) points -> features (P, M, 9), indices (P, 2) as (row, column)
  and num_points (P,) of P = max_pillars pillars of M = max_points points;
  points are packed from position 0, padding is zeros (num_points 0 for a
  padding pillar)."""
  points = tf.convert_to_tensor(points, tf.float32)
  low = tf.constant(grid.point_range[0], tf.float32)
  high = tf.constant(grid.point_range[1], tf.float32)
  inside = tf.reduce_all((points[:, :3] >= low) & (points[:, :3] < high), 1)
  points = tf.boolean_mask(points, inside)
  size = tf.constant(grid.pillar_size, tf.float32)
  cell_xy = tf.cast(tf.floor((points[:, :2] - low[:2]) / size), tf.int32)
  col = tf.minimum(cell_xy[:, 0], grid.cols - 1)
  row = tf.minimum(cell_xy[:, 1], grid.rows - 1)
  cells, pillar = tf.unique(row * grid.cols + col)
  count = tf.math.unsorted_segment_sum(tf.ones_like(pillar), pillar,
                                       tf.size(cells))
  # The pillars with the most points (top_k is stable: ties by first seen).
  kept = tf.math.top_k(count, k=tf.minimum(tf.size(cells),
                                           grid.max_pillars)).indices
  slot = tf.tensor_scatter_nd_update(
      tf.fill([tf.size(cells)], -1), kept[:, None], tf.range(tf.size(kept)))
  pillar = tf.gather(slot, pillar)
  # Each point's position among its pillar's points, in point order: its
  # index in the stably sorted points less that of its pillar's first (a
  # segment minimum over pillar + 1, the dropped -1 included; TFLite has no
  # searchsorted).
  order = tf.argsort(pillar, stable=True)
  segment = tf.gather(pillar, order) + 1
  index = tf.range(tf.size(order))
  first = tf.math.unsorted_segment_min(index, segment, grid.max_pillars + 1)
  position = tf.scatter_nd(order[:, None], index - tf.gather(first, segment),
                           tf.shape(order))
  keep = (pillar >= 0) & (position < grid.max_points)
  points, pillar, position = (tf.boolean_mask(t, keep) for t in
                              (points, pillar, position))
  row, col = tf.boolean_mask(row, keep), tf.boolean_mask(col, keep)
  num_pillars = grid.max_pillars
  num_points = tf.math.unsorted_segment_sum(tf.ones_like(pillar), pillar,
                                            num_pillars)
  mean = tf.math.unsorted_segment_sum(points[:, :3], pillar, num_pillars) / (
      tf.cast(tf.maximum(num_points, 1), tf.float32)[:, None])
  xs, ys = (tf.constant(c, tf.float32) for c in grid.cell_centres())
  centre = tf.stack([tf.gather(xs, col), tf.gather(ys, row)], 1)
  decorated = tf.concat([points, points[:, :3] - tf.gather(mean, pillar),
                         points[:, :2] - centre], axis=1)
  where = tf.stack([pillar, position], 1)
  features = tf.scatter_nd(where, decorated,
                           [num_pillars, grid.max_points, NUM_POINT_FEATURES])
  indices = tf.math.unsorted_segment_max(tf.stack([row, col], 1), pillar,
                                         num_pillars)
  indices = tf.where(num_points[:, None] > 0, indices, 0)
  return {'features': features, 'indices': indices, 'num_points': num_points}
