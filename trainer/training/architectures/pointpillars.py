"""The PointPillars network of a PointPillarsSpec, from pillars (trainer/
datasets/pillars.py) to per-anchor outputs.

- Pillar feature net (the searched featurizer): each featurizer block's
  `block_repeats` point-wise layers (a bias-free dense layer, batch norm, the
  block's activation) on every point of every pillar, then a max over the
  pillar's points (padding excluded).
- Scatter: each pillar's features at its (row, column) of a zero
  bird's-eye-view (BEV) image (padding pillars write nothing).
- Backbone: the searched block groups; level 1 is the BEV grid, and a group
  at a higher level than the one before starts with a stride-2 block.
- Decoder: one searched block group per level, each level then resized to
  level 1's grid and concatenated (the paper's upsample-and-concatenate).
- Head: 1x1 convolutions giving, per BEV cell and anchor, class logits
  (starting at a 1% prior), the 7 box residuals (trainer/training/
  boxes3d.py) and 2 heading-direction logits.

Block functions (every decision of the space changes the network): `conv`
is a k x k convolution; `residual` two k x k convolutions, the first
`expand_ratio` times wider, with squeeze-excite and a shortcut; `bottleneck`
1x1, k x k and 1x1 convolutions around an inner width of `expand_ratio`/4
of the output, with squeeze-excite and a shortcut; `mbconv` Model Garden's
inverted bottleneck. Each convolution is followed by batch norm and, but
for a block's last, its activation.
"""

import math
from typing import Any, Dict

import pyglove as pg
import tensorflow as tf
import tf_keras

from official.modeling import tf_utils
from official.vision.modeling.layers import nn_blocks
from official.vision.modeling.layers import nn_layers
import search_spaces
from trainer.training.architectures import blocks
from trainer.training.architectures import registry


@registry.register(search_spaces.PointPillarsSpec,
                   default_experiment='nas_pointpillars',
                   config_space='pointpillars')
def apply_pointpillars(params: Any, spec: search_spaces.PointPillarsSpec
                       ) -> None:
  """The whole detector is searched: the model config carries the spec."""
  params.task.model.block_specs_json = pg.to_json_str(spec)


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


# Class logits start at a 1% probability (RetinaNet's prior), so the focal
# loss of the many background anchors does not swamp the first steps.
CLASS_PRIOR_BIAS = -math.log(99.0)


def _conv_bn(x, filters: int, kernel_size: int, strides: int, norm: Dict[str, Any],
             activation: Any = None):
  x = tf_keras.layers.Conv2D(filters, kernel_size, strides, padding='same',
                             use_bias=False)(x)
  x = tf_keras.layers.BatchNormalization(**norm)(x)
  return tf_keras.layers.Activation(activation)(x) if activation else x


def _block(x, spec: Any, filters: int, strides: int, norm: Dict[str, Any]):
  """One block of `spec.block_fn` (see the module docstring)."""
  activation = tf_utils.get_activation(spec.activation_fn)
  k = spec.kernel_size
  if spec.block_fn == 'conv':
    return _conv_bn(x, filters, k, strides, norm, activation)
  if spec.block_fn == 'mbconv':
    return nn_blocks.InvertedBottleneckBlock(
        in_filters=x.shape[-1], out_filters=filters,
        expand_ratio=spec.expand_ratio, strides=strides, kernel_size=k,
        se_ratio=spec.se_ratio or None, activation=spec.activation_fn,
        norm_momentum=norm['momentum'], norm_epsilon=norm['epsilon'])(x)
  shortcut = x
  if strides != 1 or x.shape[-1] != filters:
    shortcut = _conv_bn(x, filters, 1, strides, norm)
  if spec.block_fn == 'residual':
    y = _conv_bn(x, filters * spec.expand_ratio, k, strides, norm, activation)
    y = _conv_bn(y, filters, k, 1, norm)
  else:  # bottleneck
    inner = nn_layers.make_divisible(filters * spec.expand_ratio / 4, 8)
    y = _conv_bn(x, inner, 1, 1, norm, activation)
    y = _conv_bn(y, inner, k, strides, norm, activation)
    y = _conv_bn(y, filters, 1, 1, norm)
  if spec.se_ratio:
    y = nn_layers.SqueezeExcitation(
        in_filters=filters, out_filters=filters, se_ratio=spec.se_ratio,
        divisible_by=1, activation=spec.activation_fn)(y)
  return tf_keras.layers.Activation(activation)(y + shortcut)


def _group(x, spec: Any, filters: int, strides: int, norm: Dict[str, Any]):
  for repeat in range(spec.block_repeats):
    x = _block(x, spec, filters, strides if repeat == 0 else 1, norm)
  return x


def build_network(spec: search_spaces.PointPillarsSpec, grid_rows: int,
                  grid_cols: int, max_pillars: int, max_points: int,
                  num_classes: int, anchors_per_cell: int,
                  filter_size_scale: float = 1.0, norm_momentum: float = 0.99,
                  norm_epsilon: float = 1e-3) -> tf_keras.Model:
  """The network as a functional model: inputs `features` (B, P, M, 9),
  `indices` (B, P, 2) and `num_points` (B, P); outputs `class_logits` (B,
  rows, cols, anchors, classes), `box_residuals` (B, rows, cols, anchors,
  7) and `direction_logits` (B, rows, cols, anchors, 2). Filters of the
  featurizer, backbone and decoder are scaled by `filter_size_scale`."""
  norm = dict(momentum=norm_momentum, epsilon=norm_epsilon)

  def scaled(filters: int) -> int:
    return nn_layers.round_filters(filters, filter_size_scale)

  spec = spec.clone(override={
      f'featurizer_blocks[{i}].output_filters': scaled(b.output_filters)
      for i, b in enumerate(spec.featurizer_blocks)})
  features = tf_keras.Input([max_pillars, max_points, 9], name='features')
  indices = tf_keras.Input([max_pillars, 2], dtype=tf.int32, name='indices')
  num_points = tf_keras.Input([max_pillars], dtype=tf.int32,
                              name='num_points')
  pillar_features = PillarFeatureNet(
      pg.to_json_str(spec), norm_momentum, norm_epsilon)([features, num_points])
  x = PillarScatter(grid_rows, grid_cols)(
      [pillar_features, indices, num_points])
  level, endpoints = 1, {}
  for group in spec.backbone_blocks:
    strides = 2 if group.level > level else 1
    level = group.level
    x = _group(x, group, scaled(group.output_filters), strides, norm)
    endpoints[level] = x
  decoded = []
  for group in spec.decoder_blocks:
    y = _group(endpoints[group.level], group, scaled(group.output_filters), 1,
               norm)
    if group.level > 1:
      y = tf_keras.layers.Resizing(grid_rows, grid_cols,
                                   interpolation='bilinear')(y)
    decoded.append(y)
  x = tf_keras.layers.Concatenate()(decoded)

  def head(outputs: int, name: str, bias: float = 0.0):
    y = tf_keras.layers.Conv2D(
        anchors_per_cell * outputs, 1,
        bias_initializer=tf_keras.initializers.Constant(bias))(x)
    return tf_keras.layers.Reshape(
        [grid_rows, grid_cols, anchors_per_cell, outputs], name=name)(y)

  return tf_keras.Model(
      inputs={'features': features, 'indices': indices,
              'num_points': num_points},
      outputs={'class_logits': head(num_classes, 'class_logits',
                                    CLASS_PRIOR_BIAS),
               'box_residuals': head(7, 'box_residuals'),
               'direction_logits': head(2, 'direction_logits')})
