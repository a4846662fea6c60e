"""Tunable RegNet/AnyNet backbone, registered in Model Garden's backbone factory.

The architecture comes from a materialised `search_spaces.AnyNetSpec` or
`search_spaces.RegNetSpec` (whose quantised linear rule gives the stages).
Blocks are the paper's X block (1x1 conv, 3x3 group conv, 1x1 conv, each with
batch norm, the last one's gamma starting at 0 so that every block starts as
the identity (Goyal et al. 2017; deep AnyNet samples do not train on a short
proxy without it); a projection shortcut where the block strides) and Y block (X
with squeeze-excite after the group conv, squeezing to a quarter of the
block's input width), laid out as in `tf_keras.applications.RegNetX002`, so
the published models have its parameter counts
(tests/unit/test_regnet.py). One endpoint per level: the stem is level 1,
stage i level i + 1.
"""

import dataclasses
from typing import Any, Optional

import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.modeling import hyperparams
from official.modeling import tf_utils
from official.vision.modeling.backbones import factory
from official.vision.modeling.backbones import mobilenet
from official.vision.modeling.layers import nn_layers
import search_spaces
from trainer.training.architectures import blocks
from trainer.training.architectures import registry

STEM_FILTERS = 32


@dataclasses.dataclass
class TunableRegNet(hyperparams.Config):
  """A searched RegNet or AnyNet; `filter_size_scale` narrows every stage
  (kept group-compatible) for cheap proxies."""
  block_specs_json: str = ''
  filter_size_scale: float = 1.0


def parse_spec(block_specs_json: str) -> search_spaces.AnyNetSpec:
  """The AnyNetSpec a config carries (a RegNetSpec as the AnyNet it builds)."""
  spec = blocks.load_spec(
      block_specs_json, (search_spaces.AnyNetSpec, search_spaces.RegNetSpec),
      'tunable_regnet')
  return spec.canonical()


def scaled_stage(stage: search_spaces.AnyNetStageSpec,
                 filter_size_scale: float) -> search_spaces.AnyNetStageSpec:
  """`stage` with its width times `filter_size_scale` (at least 8), made
  group-compatible again."""
  if filter_size_scale == 1.0:
    return stage.compatible()
  width = max(search_spaces.REGNET_QUANTUM,
              int(round(stage.width * filter_size_scale)))
  return stage.clone(override={'width': width}).compatible()


def _native_grouped_conv() -> bool:
  """Whether this process convolves groups natively: on GPUs and TPUs; on
  CPUs TensorFlow's grouped convolution is about 100x slower than the same
  groups convolved one by one."""
  return bool(tf.config.list_logical_devices('GPU') or
              tf.config.list_logical_devices('TPU'))


@tf_keras.utils.register_keras_serializable(package='nas_garden')
class GroupedConv2D(tf_keras.layers.Layer):
  """A bias-free 'same' convolution over groups of `group_width` input
  channels, with Conv2D(groups=...)'s kernel [k, k, group_width, filters].

  Natively convolved on accelerators; on a CPU, a group width of 1 (as many
  groups as channels) is a depthwise convolution and wider groups are
  convolved one by one and concatenated: the same numbers, fast.
  """

  def __init__(self, filters: int, kernel_size: int, strides: int,
               group_width: int, kernel_regularizer: Any = None, **kwargs):
    super().__init__(**kwargs)
    self._filters, self._kernel_size = filters, kernel_size
    self._strides, self._group_width = strides, group_width
    self._kernel_regularizer = kernel_regularizer

  def build(self, input_shape):
    self._groups = int(input_shape[-1]) // self._group_width
    self.kernel = self.add_weight(
        'kernel', shape=[self._kernel_size, self._kernel_size,
                         self._group_width, self._filters],
        initializer='he_normal', regularizer=self._kernel_regularizer,
        trainable=True)
    self._native = self._groups == 1 or _native_grouped_conv()
    super().build(input_shape)

  def call(self, inputs):
    strides = [1, self._strides, self._strides, 1]
    if self._native:
      return tf.nn.conv2d(inputs, self.kernel, strides, 'SAME')
    if self._group_width == 1 and self._filters == self._groups:
      k = self._kernel_size
      return tf.nn.depthwise_conv2d(
          inputs, tf.reshape(self.kernel, [k, k, self._filters, 1]), strides,
          'SAME')
    return tf.concat([
        tf.nn.conv2d(x, kernel, strides, 'SAME') for x, kernel in zip(
            tf.split(inputs, self._groups, axis=-1),
            tf.split(self.kernel, self._groups, axis=-1))], axis=-1)

  def get_config(self):
    return {**super().get_config(), 'filters': self._filters,
            'kernel_size': self._kernel_size, 'strides': self._strides,
            'group_width': self._group_width,
            'kernel_regularizer': self._kernel_regularizer}


class _Block:
  """One X or Y block of `width` output channels on an input of `width_in`."""

  def __init__(self, width_in: int, stage: search_spaces.AnyNetStageSpec,
               strides: int, squeeze_excite: bool, norm: dict, activation: str,
               kernel_regularizer: Any):
    self._inner = stage.width // stage.bottleneck_ratio
    self._stage, self._strides, self._width_in = stage, strides, width_in
    self._se = squeeze_excite
    self._norm, self._activation = norm, activation
    self._regularizer = kernel_regularizer

  def _conv_bn(self, x, filters, kernel_size=1, strides=1, group_width=None,
               activation=True, gamma='ones'):
    """A bias-free conv (grouped when `group_width` is given), batch norm
    and, with `activation`, the block's activation."""
    x = GroupedConv2D(filters, kernel_size, strides,
                      group_width or x.shape[-1], self._regularizer)(x)
    x = tf_keras.layers.BatchNormalization(
        momentum=self._norm['norm_momentum'],
        epsilon=self._norm['norm_epsilon'],
        synchronized=self._norm['use_sync_bn'], gamma_initializer=gamma)(x)
    if activation:
      x = tf_keras.layers.Activation(
          tf_utils.get_activation(self._activation))(x)
    return x

  def __call__(self, inputs):
    stage = self._stage
    shortcut = inputs
    if self._strides != 1 or self._width_in != stage.width:
      shortcut = self._conv_bn(inputs, stage.width, strides=self._strides,
                               activation=False)
    x = self._conv_bn(inputs, self._inner)
    x = self._conv_bn(x, self._inner, 3, self._strides,
                      group_width=stage.group_width)
    if self._se:
      x = nn_layers.SqueezeExcitation(
          in_filters=self._width_in, out_filters=self._inner,
          se_ratio=search_spaces.REGNET_SE_RATIO, divisible_by=1,
          round_down_protect=False, kernel_regularizer=self._regularizer,
          activation='relu', gating_activation='sigmoid')(x)
    x = self._conv_bn(x, stage.width, activation=False, gamma='zeros')
    return tf_keras.layers.Activation(
        tf_utils.get_activation(self._activation))(x + shortcut)


@tf_keras.utils.register_keras_serializable(package='nas_garden')
class RegNet(blocks.LevelBackbone):
  """RegNet/AnyNet from a spec: a 3x3 stride-2 stem of 32 filters, then its
  stages, the first block of each stride 2."""

  def __init__(self,
               block_specs_json: str,
               input_specs: tf_keras.layers.InputSpec = tf_keras.layers.InputSpec(
                   shape=[None, None, None, 3]),
               filter_size_scale: float = 1.0,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.9,
               norm_epsilon: float = 1e-5,
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    config = blocks.constructor_arguments(locals())
    spec = parse_spec(block_specs_json)
    norm = dict(use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
                norm_epsilon=norm_epsilon)
    inputs = tf_keras.Input(shape=input_specs.shape[1:])
    x = mobilenet.Conv2DBNBlock(
        filters=STEM_FILTERS, kernel_size=3, strides=2, activation=activation,
        kernel_regularizer=kernel_regularizer, **norm)(inputs)
    endpoints = {'1': x}
    for level, stage in enumerate(spec.stages, start=2):
      stage = scaled_stage(stage, filter_size_scale)
      for i in range(stage.depth):
        x = _Block(x.shape[-1], stage, 2 if i == 0 else 1,
                   spec.block_type == 'y', norm, activation,
                   kernel_regularizer)(x)
      endpoints[str(level)] = x
    self._finish(config, inputs, endpoints, **kwargs)


@factory.register_backbone_builder('tunable_regnet')
def build_tunable_regnet(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> tf_keras.Model:
  """Model Garden backbone builder for `backbone.type: tunable_regnet`."""
  backbone_cfg = backbone_config.get()
  return RegNet(
      block_specs_json=backbone_cfg.block_specs_json,
      input_specs=input_specs,
      filter_size_scale=backbone_cfg.filter_size_scale,
      **blocks.norm_activation_kwargs(norm_activation_config),
      kernel_regularizer=l2_regularizer)


def apply_regnet(params: cfg.ExperimentConfig, spec: Any) -> None:
  """Writes a RegNet or AnyNet architecture as the config's backbone. Under a
  decoder (detection) its stages must reach task.model.min_level: a RegNet
  whose quantised widths form one stage has levels 1-2 only."""
  min_level = params.task.model.as_dict().get('min_level')
  deepest = len(spec.stage_specs()) + 1
  if min_level is not None and deepest < min_level:
    raise ValueError(
        f'this architecture has {deepest - 1} stage(s), feature levels up to '
        f'{deepest}; the model needs level task.model.min_level={min_level}')
  blocks.write_spec(params.task.model.backbone, 'tunable_regnet', spec)


for _spec_type in (search_spaces.AnyNetSpec, search_spaces.RegNetSpec):
  registry.register(_spec_type, default_experiment='nas_image_classification',
                    config_space='regnet')(apply_regnet)
