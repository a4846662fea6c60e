"""Tunable EfficientNetV2 backbone, registered in Model Garden's backbone factory.

The architecture comes from a materialised `search_spaces.EfficientNetV2Spec`
(serialised with `pg.to_json_str` into the config). Its (fused) MBConv blocks
are Model Garden's `InvertedBottleneckBlock`, and it returns one endpoint per
feature level, so classification and detection tasks both build it.
"""

import dataclasses
from typing import Optional

import tf_keras

from official.core import config_definitions as cfg
from official.modeling import hyperparams
from official.vision.modeling.backbones import factory
from official.vision.modeling.backbones import mobilenet
from official.vision.modeling.layers import nn_blocks
from official.vision.modeling.layers import nn_layers
import search_spaces
from trainer.training.architectures import blocks
from trainer.training.architectures import registry

# Model Garden's InvertedBottleneckBlock skips its expansion conv at ratio 1,
# which in a fused block is the strided kxk conv itself. Just above 1 keeps it
# (the expanded width still rounds to the input width), as EfficientNetV2's
# fused-MBConv with expand ratio 1 is defined.
_FUSED_UNEXPANDED_RATIO = 1.000001


@dataclasses.dataclass
class TunableEfficientNetV2(hyperparams.Config):
  """A searched EfficientNetV2; `endpoints_num_filters: 0` for detection.

  The stem width is Vertex's (32); `filter_size_scale` narrows every layer for
  cheap proxies (and widens it in compound scaling); `depth_multiplier`
  multiplies each block group's repeats (rounded up).
  """
  block_specs_json: str = ''
  endpoints_num_filters: int = 1280
  filter_size_scale: float = 1.0
  depth_multiplier: float = 1.0
  stem_filters: int = 32


@tf_keras.utils.register_keras_serializable(package='nas_garden')
class EfficientNetV2(blocks.LevelBackbone):
  """EfficientNetV2 from a spec: stem, block groups, endpoints per level.

  Each block group has its own activation; the stem and the optional 1x1 head
  conv (`endpoints_num_filters > 0`, for classification) use `activation`.
  """

  def __init__(self,
               block_specs_json: str,
               input_specs: tf_keras.layers.InputSpec = tf_keras.layers.InputSpec(
                   shape=[None, None, None, 3]),
               endpoints_num_filters: int = 1280,
               filter_size_scale: float = 1.0,
               depth_multiplier: float = 1.0,
               stem_filters: int = 32,
               activation: str = 'swish',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    config = blocks.constructor_arguments(locals())
    spec = blocks.load_spec(block_specs_json, search_spaces.EfficientNetV2Spec,
                            'tunable_efficientnet_v2')
    norm = dict(use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
                norm_epsilon=norm_epsilon)

    def conv_bn(filters, kernel_size, strides):
      return mobilenet.Conv2DBNBlock(
          filters=filters, kernel_size=kernel_size, strides=strides,
          activation=activation, kernel_regularizer=kernel_regularizer, **norm)

    def block_fn(x, block, strides):
      fused = block.block_type == 'fused_mbconv'
      expand_ratio = block.expand_ratio
      if fused and expand_ratio == 1:
        expand_ratio = _FUSED_UNEXPANDED_RATIO
      return nn_blocks.InvertedBottleneckBlock(
          in_filters=x.shape[-1],
          out_filters=nn_layers.round_filters(block.output_filters,
                                              filter_size_scale),
          expand_ratio=expand_ratio, strides=strides,
          kernel_size=block.kernel_size, se_ratio=block.se_ratio or None,
          activation=block.act_fn, use_depthwise=not fused,
          kernel_regularizer=kernel_regularizer, **norm)(x)

    def head(x):
      return conv_bn(endpoints_num_filters, 1, 1)(x)

    inputs = tf_keras.Input(shape=input_specs.shape[1:])
    x = conv_bn(nn_layers.round_filters(stem_filters, filter_size_scale), 3,
                2)(inputs)
    endpoints = blocks.build_level_endpoints(
        x, spec.blocks, block_fn, head if endpoints_num_filters > 0 else None,
        depth_multiplier)
    self._finish(config, inputs, endpoints, **kwargs)



@factory.register_backbone_builder('tunable_efficientnet_v2')
def build_tunable_efficientnet_v2(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> tf_keras.Model:
  """Model Garden backbone builder for `backbone.type: tunable_efficientnet_v2`."""
  backbone_cfg = backbone_config.get()
  return EfficientNetV2(
      block_specs_json=backbone_cfg.block_specs_json,
      input_specs=input_specs,
      endpoints_num_filters=backbone_cfg.endpoints_num_filters,
      filter_size_scale=backbone_cfg.filter_size_scale,
      depth_multiplier=backbone_cfg.depth_multiplier,
      stem_filters=backbone_cfg.stem_filters,
      **blocks.norm_activation_kwargs(norm_activation_config),
      kernel_regularizer=l2_regularizer)


@registry.register(search_spaces.EfficientNetV2Spec,
                   default_experiment='nas_retinanet',
                   config_space='efficientnet_v2')
def apply_efficientnet_v2(params: cfg.ExperimentConfig,
                          spec: search_spaces.EfficientNetV2Spec) -> None:
  """Writes an `efficientnet_v2` architecture as the config's backbone."""
  blocks.write_spec(params.task.model.backbone, 'tunable_efficientnet_v2', spec)
