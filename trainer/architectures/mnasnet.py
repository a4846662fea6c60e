"""Tunable MnasNet backbone, registered in Model Garden's backbone factory.

The architecture comes from a materialised `search_spaces.MnasNetSpec`
(serialised with `pg.to_json_str` into the config), so the classification and
detection tasks of Model Garden build searched networks without forks.
"""

from typing import Any, Dict, Optional

import pyglove as pg
import tf_keras

from official.modeling import hyperparams
from official.vision.modeling.backbones import factory
from official.vision.modeling.backbones import mobilenet
from official.vision.modeling.layers import nn_blocks
from official.vision.modeling.layers import nn_layers
import search_spaces

STEM_FILTERS = 32


def parse_spec(block_specs_json: str) -> search_spaces.MnasNetSpec:
  """The MnasNetSpec a config carries; a clear error when it carries none."""
  if not block_specs_json:
    raise ValueError('tunable_mnasnet needs block_specs_json: the materialised '
                     'MnasNetSpec of a trial (pg.to_json_str)')
  spec = pg.from_json_str(block_specs_json)
  if not isinstance(spec, search_spaces.MnasNetSpec):
    raise ValueError(f'block_specs_json holds {type(spec).__name__}, '
                     'not a MnasNetSpec')
  return spec


@tf_keras.utils.register_keras_serializable(package='nas_garden')
class TunableMnasNet(tf_keras.Model):
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
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    self._config_dict = {
        'block_specs_json': block_specs_json,
        'input_specs': input_specs,
        'endpoints_num_filters': endpoints_num_filters,
        'filter_size_scale': filter_size_scale,
        'activation': activation,
        'use_sync_bn': use_sync_bn,
        'norm_momentum': norm_momentum,
        'norm_epsilon': norm_epsilon,
        'kernel_regularizer': kernel_regularizer,
    }
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
    level = 1
    endpoints: Dict[str, Any] = {}
    for block in spec.blocks:
      for repeat in range(block.num_repeats):
        strides = block.strides if repeat == 0 else 1
        if strides > 1:
          endpoints[str(level)] = x
          level += 1
        x = self._block(x, block, scaled(block.output_filters), strides,
                        activation, kernel_regularizer, norm)
    endpoints[str(level)] = x
    self._output_specs = {l: endpoints[l].get_shape() for l in endpoints}
    if endpoints_num_filters > 0:
      x = mobilenet.Conv2DBNBlock(
          filters=endpoints_num_filters, kernel_size=1, strides=1,
          activation=activation, kernel_regularizer=kernel_regularizer,
          **norm)(x)
      endpoints[str(level)] = x
      self._output_specs[str(level)] = x.get_shape()
    super().__init__(inputs=inputs, outputs=endpoints, **kwargs)

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

  def get_config(self) -> Dict[str, Any]:
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)

  @property
  def output_specs(self):
    return self._output_specs


@factory.register_backbone_builder('tunable_mnasnet')
def build_tunable_mnasnet(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> tf_keras.Model:
  """Model Garden backbone builder for `backbone.type: tunable_mnasnet`."""
  cfg = backbone_config.get()
  return TunableMnasNet(
      block_specs_json=cfg.block_specs_json,
      input_specs=input_specs,
      endpoints_num_filters=cfg.endpoints_num_filters,
      filter_size_scale=cfg.filter_size_scale,
      activation=norm_activation_config.activation,
      use_sync_bn=norm_activation_config.use_sync_bn,
      norm_momentum=norm_activation_config.norm_momentum,
      norm_epsilon=norm_activation_config.norm_epsilon,
      kernel_regularizer=l2_regularizer)

