"""3D UNets for volume segmentation on Model Garden's volumetric_models.

`static_unet` is Model Garden's own `unet_3d` backbone and decoder (4
levels). `tunable_unet_encoder` is a searched encoder (`tunable_unet_encoder`
backbone, registered in Model Garden's backbone factory like the 2D ones)
under the same `unet_3d_decoder`. Model Garden's 3D residual blocks have a
fixed 3x3x3 kernel, so the searched blocks (kernel 3 or 5) are built here
from Keras 3D layers.
"""

import dataclasses
from typing import Any, Dict, Optional

import tf_keras

from official.core import config_definitions as cfg
from official.modeling import hyperparams
from official.projects.volumetric_models.modeling.backbones import unet_3d  # pylint: disable=unused-import  (registers unet_3d)
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
