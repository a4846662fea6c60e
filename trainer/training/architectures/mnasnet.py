"""Tunable MnasNet backbone, registered in Model Garden's backbone factory.

The architecture comes from a materialised `search_spaces.MnasNetSpec`
(serialised with `pg.to_json_str` into the config), so the classification and
detection tasks of Model Garden build searched networks without forks.
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

STEM_FILTERS = 32


@dataclasses.dataclass
class TunableMnasNet(hyperparams.Config):
  """A searched MnasNet; `filter_size_scale` narrows it for cheap proxies
  (and widens it in compound scaling), `depth_multiplier` multiplies each
  block group's repeats (rounded up).

  `features_only` is the platform's key for a backbone without the head conv
  (detection), the same as `endpoints_num_filters: 0`.
  """
  block_specs_json: str = ''
  endpoints_num_filters: int = 1280
  filter_size_scale: float = 1.0
  depth_multiplier: float = 1.0
  features_only: bool = False


def parse_spec(block_specs_json: str) -> search_spaces.MnasNetSpec:
  """The MnasNetSpec a config carries; a clear error when it carries none."""
  return blocks.load_spec(block_specs_json, search_spaces.MnasNetSpec,
                          'tunable_mnasnet')


@tf_keras.utils.register_keras_serializable(package='nas_garden')
class MnasNet(blocks.LevelBackbone):
  """MnasNet from a spec: stem, block groups, endpoints per feature level.

  `endpoints_num_filters > 0` adds the 1x1 head conv on the last level (used
  for classification); detection uses the raw per-level features.
  """

  def __init__(self,
               block_specs_json: str,
               input_specs: tf_keras.layers.InputSpec = tf_keras.layers.InputSpec(
                   shape=[None, None, None, 3]),
               endpoints_num_filters: int = 1280,
               filter_size_scale: float = 1.0,
               depth_multiplier: float = 1.0,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    config = blocks.constructor_arguments(locals())
    spec = parse_spec(block_specs_json)
    norm = dict(use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
                norm_epsilon=norm_epsilon)

    def scaled(filters: int) -> int:
      return nn_layers.round_filters(filters, filter_size_scale)

    inputs = tf_keras.Input(shape=input_specs.shape[1:])
    x = mobilenet.Conv2DBNBlock(
        filters=scaled(STEM_FILTERS), kernel_size=3, strides=2,
        activation=activation, kernel_regularizer=kernel_regularizer,
        **norm)(inputs)

    def block_fn(x, block, strides):
      return self._block(x, block, scaled(block.output_filters), strides,
                         activation, kernel_regularizer, norm)

    def head(x):
      return mobilenet.Conv2DBNBlock(
          filters=endpoints_num_filters, kernel_size=1, strides=1,
          activation=activation, kernel_regularizer=kernel_regularizer,
          **norm)(x)

    endpoints = blocks.build_level_endpoints(
        x, spec.blocks, block_fn, head if endpoints_num_filters > 0 else None,
        depth_multiplier)
    self._finish(config, inputs, endpoints, **kwargs)

  @staticmethod
  def _block(x, block, filters, strides, activation, kernel_regularizer, norm):
    if block.block_fn == 'conv':
      return mobilenet.Conv2DBNBlock(
          filters=filters, kernel_size=block.kernel_size, strides=strides,
          activation=activation, kernel_regularizer=kernel_regularizer,
          **norm)(x)
    return nn_blocks.InvertedBottleneckBlock(
        in_filters=x.shape[-1], out_filters=filters,
        expand_ratio=block.expand_ratio, strides=strides,
        kernel_size=block.kernel_size,
        se_ratio=block.se_ratio or None, activation=activation,
        kernel_regularizer=kernel_regularizer, **norm)(x)



@factory.register_backbone_builder('tunable_mnasnet')
def build_tunable_mnasnet(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> tf_keras.Model:
  """Model Garden backbone builder for `backbone.type: tunable_mnasnet`."""
  backbone_cfg = backbone_config.get()
  return MnasNet(
      block_specs_json=backbone_cfg.block_specs_json,
      input_specs=input_specs,
      endpoints_num_filters=(0 if backbone_cfg.features_only else
                             backbone_cfg.endpoints_num_filters),
      filter_size_scale=backbone_cfg.filter_size_scale,
      depth_multiplier=backbone_cfg.depth_multiplier,
      **blocks.norm_activation_kwargs(norm_activation_config),
      kernel_regularizer=l2_regularizer)


@registry.register(search_spaces.MnasNetSpec,
                   default_experiment='nas_image_classification',
                   config_space='mnasnet')
def apply_mnasnet(params: cfg.ExperimentConfig,
                  spec: search_spaces.MnasNetSpec) -> None:
  """Writes a `mnasnet` architecture as the config's backbone."""
  blocks.write_spec(params.task.model.backbone, 'tunable_mnasnet', spec)
