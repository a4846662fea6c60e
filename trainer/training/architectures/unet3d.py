"""3D UNets for volume segmentation on Model Garden's volumetric_models.

`static_unet` is Model Garden's own `unet_3d` backbone and decoder (4
levels). `tunable_unet_encoder` is a searched encoder (`tunable_unet_encoder`
backbone, registered in Model Garden's backbone factory like the 2D ones)
under the same `unet_3d_decoder`. Model Garden's 3D residual blocks have a
fixed 3x3x3 kernel, so the searched blocks (kernel 3 or 5) are built here
from Keras 3D layers. `tunable_unet_nasfpn` is a searched NAS-FPN cell over
the 4 levels (`tunable_unet_nasfpn` decoder, registered in volumetric_models'
decoder factory) on a stock `unet_3d` encoder: Model Garden's NAS-FPN is 2D,
so the cell is built here with its rules (resampling, sum and global
attention, unused same-level features added to outputs).
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.modeling import hyperparams
from official.projects.volumetric_models.modeling.backbones import unet_3d  # pylint: disable=unused-import  (registers unet_3d)
from official.projects.volumetric_models.modeling.decoders import factory as decoder_factory
from official.projects.volumetric_models.modeling.decoders import unet_3d_decoder  # pylint: disable=unused-import  (registers unet_3d_decoder)
from official.vision.modeling.backbones import factory
from official.vision.modeling.layers import nn_layers
import search_spaces
from trainer.training.architectures import blocks
from trainer.training.architectures import registry

# A bottleneck block's inner width, as a fraction of its output filters.
BOTTLENECK_RATIO = 0.25


@dataclasses.dataclass
class TunableUNetEncoder(hyperparams.Config):
  """A searched 3D UNet encoder; `filter_size_scale` narrows it for cheap
  proxies."""
  block_specs_json: str = ''
  filter_size_scale: float = 1.0


def parse_spec(block_specs_json: str) -> search_spaces.TunableUNetEncoderSpec:
  return blocks.load_spec(block_specs_json,
                          search_spaces.TunableUNetEncoderSpec,
                          'tunable_unet_encoder')


def _conv_bn(x, filters: int, kernel_size: int, norm: Dict[str, Any],
             kernel_regularizer, activation: Optional[str]):
  x = tf_keras.layers.Conv3D(
      filters, kernel_size, padding='same', use_bias=False,
      kernel_initializer='VarianceScaling',
      kernel_regularizer=kernel_regularizer)(x)
  x = tf_keras.layers.BatchNormalization(
      momentum=norm['norm_momentum'], epsilon=norm['norm_epsilon'],
      synchronized=norm['use_sync_bn'])(x)
  return tf_keras.layers.Activation(activation)(x) if activation else x


def _squeeze_excite(x, se_ratio: float, activation: str, kernel_regularizer):
  """Channel attention from the volume's mean of each channel."""
  filters = x.shape[-1]
  s = tf_keras.layers.GlobalAveragePooling3D(keepdims=True)(x)
  s = tf_keras.layers.Conv3D(max(1, int(filters * se_ratio)), 1,
                             activation=activation,
                             kernel_regularizer=kernel_regularizer)(s)
  s = tf_keras.layers.Conv3D(filters, 1, activation='sigmoid',
                             kernel_regularizer=kernel_regularizer)(s)
  return tf_keras.layers.Multiply()([x, s])


def encoder_block(x, block: search_spaces.UNetEncoderBlockSpec, filters: int,
                  activation: str, norm: Dict[str, Any], kernel_regularizer):
  """One searched block: basic (two k^3 convs) or bottleneck (1^3, k^3, 1^3
  convs), squeeze-excite when `se_ratio` > 0, and the identity skip when
  `id_skip` and the block keeps its input's width (as in EfficientNet)."""
  k = block.kernel_size
  if block.block_type == 'basic_block':
    y = _conv_bn(x, filters, k, norm, kernel_regularizer, activation)
    y = _conv_bn(y, filters, k, norm, kernel_regularizer, None)
  else:
    inner = max(8, int(filters * BOTTLENECK_RATIO))
    y = _conv_bn(x, inner, 1, norm, kernel_regularizer, activation)
    y = _conv_bn(y, inner, k, norm, kernel_regularizer, activation)
    y = _conv_bn(y, filters, 1, norm, kernel_regularizer, None)
  if block.se_ratio:
    y = _squeeze_excite(y, block.se_ratio, activation, kernel_regularizer)
  if block.id_skip and x.shape[-1] == filters:
    y = tf_keras.layers.Add()([x, y])
  return tf_keras.layers.Activation(activation)(y)


@tf_keras.utils.register_keras_serializable(package='nas_garden')
class UNetEncoder3D(blocks.LevelBackbone):
  """The searched encoder: one block group per level 1-4, each level after
  the first halving the volume by max pooling; {level: features}."""

  def __init__(self,
               block_specs_json: str,
               input_specs: tf_keras.layers.InputSpec = tf_keras.layers.InputSpec(
                   shape=[None, None, None, None, 1]),
               filter_size_scale: float = 1.0,
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    config = blocks.constructor_arguments(locals())
    spec = parse_spec(block_specs_json)
    norm = dict(use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
                norm_epsilon=norm_epsilon)
    inputs = tf_keras.Input(shape=input_specs.shape[1:])
    x, endpoints = inputs, {}
    for level, group in enumerate(spec.blocks, start=1):
      if level > 1:
        x = tf_keras.layers.MaxPool3D(pool_size=2, strides=2)(x)
      filters = nn_layers.round_filters(group.num_filters, filter_size_scale)
      for _ in range(group.num_repeats):
        x = encoder_block(x, group, filters, spec.activation, norm,
                          kernel_regularizer)
      endpoints[str(level)] = x
    self._finish(config, inputs, endpoints, **kwargs)


@factory.register_backbone_builder('tunable_unet_encoder')
def build_tunable_unet_encoder(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> tf_keras.Model:
  """Backbone builder for `backbone.type: tunable_unet_encoder` (its
  activation is searched, so norm_activation's is not used)."""
  backbone_cfg = backbone_config.get()
  return UNetEncoder3D(
      block_specs_json=backbone_cfg.block_specs_json,
      input_specs=input_specs,
      filter_size_scale=backbone_cfg.filter_size_scale,
      use_sync_bn=norm_activation_config.use_sync_bn,
      norm_momentum=norm_activation_config.norm_momentum,
      norm_epsilon=norm_activation_config.norm_epsilon,
      kernel_regularizer=l2_regularizer)


@dataclasses.dataclass
class TunableUNetNasFpn(hyperparams.Config):
  """A searched 3D NAS-FPN cell, repeated `num_repeats` times, with
  `num_filters` at every level."""
  block_specs_json: str = ''
  num_filters: int = 32
  num_repeats: int = 1


def _resample(x, level: int, target_level: int, filters: int,
              norm: Dict[str, Any], kernel_regularizer):
  """`x` at `level` brought to `target_level` with `filters` channels:
  a 1^3 projection when the width differs, max pooling down, nearest
  upsampling up."""
  if x.shape[-1] != filters:
    x = _conv_bn(x, filters, 1, norm, kernel_regularizer, None)
  if level < target_level:
    stride = 2 ** (target_level - level)
    return tf_keras.layers.MaxPool3D(pool_size=stride, strides=stride,
                                     padding='same')(x)
  if level > target_level:
    return tf_keras.layers.UpSampling3D(size=2 ** (level - target_level))(x)
  return x


def _global_attention(coarse, fine):
  """NAS-FPN's attention: the coarser feature plus the finer one gated by
  the sigmoid of the coarser one's spatial maximum per channel."""
  gate = tf_keras.layers.Lambda(lambda t: tf.math.sigmoid(
      tf.math.reduce_max(t, axis=[1, 2, 3], keepdims=True)))(coarse)
  return tf_keras.layers.Add()([coarse, tf_keras.layers.Multiply()(
      [fine, gate])])


def nasfpn_cell(feats: List[Any], spec: search_spaces.UNetNasFpnSpec,
                filters: int, activation: str, norm: Dict[str, Any],
                kernel_regularizer) -> Dict[int, Any]:
  """One cell over `feats` (levels 1-4, in order); {level: output}."""
  feats, levels = list(feats), list(search_spaces.UNET_LEVELS)
  used = [0] * len(feats)
  num_intermediate = len(spec.intermediate_blocks)
  outputs = {}
  for i, (level, block) in enumerate(spec.block_sequence()):
    nodes = []
    for offset in block.input_offsets:
      used[offset] += 1
      nodes.append((levels[offset], _resample(
          feats[offset], levels[offset], level, filters, norm,
          kernel_regularizer)))
    if block.combine_fn == 'sum':
      x = tf_keras.layers.Add()([n for _, n in nodes])
    else:
      (level0, node0), (level1, node1) = nodes
      x = (_global_attention(node0, node1) if level0 >= level1 else
           _global_attention(node1, node0))
    if i >= num_intermediate:  # An output: adds unused same-level features.
      for j, (feat, feat_level) in enumerate(zip(feats, levels)):
        if not used[j] and feat_level == level:
          used[j] += 1
          x = tf_keras.layers.Add()([x, _resample(
              feat, feat_level, level, filters, norm, kernel_regularizer)])
    x = tf_keras.layers.Activation(activation)(x)
    x = _conv_bn(x, filters, 3, norm, kernel_regularizer, None)
    feats.append(x)
    levels.append(level)
    used.append(0)
    if i >= num_intermediate:
      outputs[level] = x
  return outputs


@tf_keras.utils.register_keras_serializable(package='nas_garden')
class UNetNasFpn3D(blocks.LevelBackbone):
  """The searched 3D decoder: the encoder's levels 1-4 projected to
  `num_filters`, then `num_repeats` NAS-FPN cells; {level: features}."""

  def __init__(self, input_specs: Mapping[str, tf.TensorShape],
               block_specs_json: str, num_filters: int = 32,
               num_repeats: int = 1, activation: str = 'relu',
               use_sync_bn: bool = False, norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    config = blocks.constructor_arguments(locals())
    spec = blocks.load_spec(block_specs_json, search_spaces.UNetNasFpnSpec,
                            'tunable_unet_nasfpn')
    levels = [str(level) for level in search_spaces.UNET_LEVELS]
    if sorted(input_specs) != levels:
      raise ValueError(f'tunable_unet_nasfpn needs encoder levels {levels}, '
                       f'got {sorted(input_specs)}')
    norm = dict(use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
                norm_epsilon=norm_epsilon)
    inputs = {level: tf_keras.Input(shape=input_specs[level][1:])
              for level in levels}
    feats = [_resample(inputs[level], int(level), int(level), num_filters,
                       norm, kernel_regularizer) for level in levels]
    for _ in range(num_repeats):
      outputs = nasfpn_cell(feats, spec, num_filters, activation, norm,
                            kernel_regularizer)
      feats = [outputs[level] for level in search_spaces.UNET_LEVELS]
    self._finish(config, inputs,
                 {str(level): outputs[level] for level in sorted(outputs)},
                 **kwargs)


@decoder_factory.register_decoder_builder('tunable_unet_nasfpn')
def build_tunable_unet_nasfpn(
    input_specs: Mapping[str, tf.TensorShape],
    model_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> tf_keras.Model:
  """volumetric_models decoder builder for `decoder.type:
  tunable_unet_nasfpn`."""
  decoder_cfg = model_config.decoder.get()
  return UNetNasFpn3D(
      input_specs=input_specs,
      block_specs_json=decoder_cfg.block_specs_json,
      num_filters=decoder_cfg.num_filters,
      num_repeats=decoder_cfg.num_repeats,
      **blocks.norm_activation_kwargs(model_config.norm_activation),
      kernel_regularizer=l2_regularizer)


def _unet_decoder(params: cfg.ExperimentConfig) -> None:
  """Model Garden's 3D UNet decoder over the encoder's 4 levels."""
  model = params.task.model
  model.decoder.type = 'unet_3d_decoder'
  model.decoder.unet_3d_decoder.model_id = len(search_spaces.UNET_LEVELS)


@registry.register(search_spaces.StaticUNetSpec,
                   default_experiment='nas_segmentation_3d',
                   config_space='unet')
def apply_static_unet(params: cfg.ExperimentConfig,
                      spec: search_spaces.StaticUNetSpec) -> None:
  """The baseline: Model Garden's 4-level `unet_3d` (its base_filters from
  the config) and decoder."""
  del spec  # One architecture.
  backbone = params.task.model.backbone
  backbone.type = 'unet_3d'
  backbone.unet_3d.model_id = len(search_spaces.UNET_LEVELS)
  _unet_decoder(params)


@registry.register(search_spaces.TunableUNetEncoderSpec,
                   default_experiment='nas_segmentation_3d',
                   config_space='unet')
def apply_tunable_unet_encoder(
    params: cfg.ExperimentConfig,
    spec: search_spaces.TunableUNetEncoderSpec) -> None:
  """A searched encoder under Model Garden's 3D UNet decoder."""
  blocks.write_spec(params.task.model.backbone, 'tunable_unet_encoder', spec)
  _unet_decoder(params)


@registry.register(search_spaces.UNetNasFpnSpec,
                   default_experiment='nas_segmentation_3d',
                   config_space='unet')
def apply_tunable_unet_nasfpn(params: cfg.ExperimentConfig,
                              spec: search_spaces.UNetNasFpnSpec) -> None:
  """A searched decoder on the config's 4-level `unet_3d` encoder."""
  backbone = params.task.model.backbone
  backbone.type = 'unet_3d'
  backbone.unet_3d.model_id = len(search_spaces.UNET_LEVELS)
  blocks.write_spec(params.task.model.decoder, 'tunable_unet_nasfpn', spec)
