"""PointPillars' pillar feature net (the searched featurizer) and its
scatter of pillars back to the bird's-eye-view grid (trainer/datasets/
pillars.py makes the pillars).

The feature net applies each featurizer block's `block_repeats` point-wise
layers (a bias-free dense layer, batch norm, the block's activation) to
every point of every pillar, then max-pools over the pillar's points
(padding points excluded); the scatter writes each pillar's features at its
(row, column) of a zero grid (padding pillars write nothing).
"""

import tensorflow as tf
import tf_keras

from official.modeling import tf_utils
import search_spaces
from trainer.training.architectures import blocks


def parse_spec(block_specs_json: str) -> search_spaces.PointPillarsSpec:
  """The PointPillarsSpec a config carries; a clear error when it carries
  none."""
  return blocks.load_spec(block_specs_json, search_spaces.PointPillarsSpec,
                          'pointpillars')


@tf_keras.utils.register_keras_serializable(package='nas_garden')
class PillarFeatureNet(tf_keras.layers.Layer):
  """features (B, P, M, 9), num_points (B, P) -> pillar features (B, P, C),
  by the featurizer blocks of a PointPillarsSpec."""

  def __init__(self, block_specs_json: str, norm_momentum: float = 0.99,
               norm_epsilon: float = 1e-3, **kwargs):
    super().__init__(**kwargs)
    self._block_specs_json = block_specs_json
    self._norm = dict(momentum=norm_momentum, epsilon=norm_epsilon)
    self._layers = []
    for spec in parse_spec(block_specs_json).featurizer_blocks:
      for _ in range(spec.block_repeats):
        self._layers.append((
            tf_keras.layers.Dense(spec.output_filters, use_bias=False),
            tf_keras.layers.BatchNormalization(**self._norm),
            tf_utils.get_activation(spec.activation_fn)))

  def call(self, inputs, training=None):
    features, num_points = inputs
    x = features
    for dense, norm, activation in self._layers:
      x = activation(norm(dense(x), training=training))
    max_points = tf.shape(features)[2]
    valid = tf.range(max_points)[None, None, :] < num_points[..., None]
    pooled = tf.reduce_max(tf.where(valid[..., None], x, x.dtype.min), axis=2)
    return tf.where((num_points > 0)[..., None], pooled, tf.zeros_like(pooled))

  def get_config(self):
    return {**super().get_config(),
            'block_specs_json': self._block_specs_json,
            'norm_momentum': self._norm['momentum'],
            'norm_epsilon': self._norm['epsilon']}


@tf_keras.utils.register_keras_serializable(package='nas_garden')
class PillarScatter(tf_keras.layers.Layer):
  """pillar features (B, P, C), indices (B, P, 2), num_points (B, P) ->
  the bird's-eye-view image (B, rows, cols, C)."""

  def __init__(self, rows: int, cols: int, **kwargs):
    super().__init__(**kwargs)
    self._rows, self._cols = rows, cols

  def call(self, inputs):
    pillar_features, indices, num_points = inputs
    shape = tf.shape(pillar_features)
    batch = tf.broadcast_to(tf.range(shape[0])[:, None], shape[:2])
    where = tf.concat([batch[..., None], tf.cast(indices, tf.int32)], axis=-1)
    occupied = num_points > 0
    return tf.scatter_nd(
        tf.boolean_mask(where, occupied),
        tf.boolean_mask(pillar_features, occupied),
        tf.stack([shape[0], self._rows, self._cols, shape[2]]))

  def get_config(self):
    return {**super().get_config(), 'rows': self._rows, 'cols': self._cols}
