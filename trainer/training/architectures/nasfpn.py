"""Searched NAS-FPN cells as a Model Garden decoder.

A materialised `search_spaces.NasFpnSpec` (serialised with `pg.to_json_str`
into the config) becomes Model Garden's own `NASFPN` through its
`block_specs`, on top of whatever backbone the experiment config names.
"""

import dataclasses
from typing import List, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.modeling import hyperparams
from official.vision.modeling.decoders import factory
from official.vision.modeling.decoders import nasfpn
import search_spaces
from trainer.training.architectures import blocks
from trainer.training.architectures import registry


@dataclasses.dataclass
class TunableNasFpn(hyperparams.Config):
  """A searched NAS-FPN cell, repeated `num_repeats` times."""
  block_specs_json: str = ''
  num_filters: int = 256
  num_repeats: int = 5
  use_separable_conv: bool = False


def spec_to_block_specs(spec: search_spaces.NasFpnSpec) -> List[nasfpn.BlockSpec]:
  """Model Garden block specs of a NasFpnSpec.

  Both index the input levels min..max then the blocks in build order, and
  Model Garden takes the last len(levels) blocks as the outputs, so the
  offsets carry over unchanged.
  """
  num_intermediate = len(spec.intermediate_blocks)
  return [
      nasfpn.BlockSpec(level, b.combine_fn, tuple(b.input_offsets),
                       is_output=i >= num_intermediate)
      for i, (level, b) in enumerate(spec.block_sequence())
  ]


@factory.register_decoder_builder('tunable_nasfpn')
def build_tunable_nasfpn(
    input_specs: Mapping[str, tf.TensorShape],
    model_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> tf_keras.Model:
  """Model Garden decoder builder for `decoder.type: tunable_nasfpn`."""
  decoder_cfg = model_config.decoder.get()
  spec = blocks.load_spec(decoder_cfg.block_specs_json,
                          search_spaces.NasFpnSpec, 'tunable_nasfpn')
  levels = list(range(model_config.min_level, model_config.max_level + 1))
  if sorted(spec.output_block_levels) != levels:
    # The offsets count the model's levels, so they must be the spec's.
    raise ValueError(
        f'the NasFpnSpec outputs levels {sorted(spec.output_block_levels)}; '
        f'the model has min_level..max_level {levels}')
  return nasfpn.NASFPN(
      input_specs=input_specs,
      min_level=model_config.min_level,
      max_level=model_config.max_level,
      block_specs=spec_to_block_specs(spec),
      num_filters=decoder_cfg.num_filters,
      num_repeats=decoder_cfg.num_repeats,
      use_separable_conv=decoder_cfg.use_separable_conv,
      kernel_regularizer=l2_regularizer,
      **blocks.norm_activation_kwargs(model_config.norm_activation))


@registry.register(search_spaces.NasFpnSpec, default_experiment='nas_retinanet',
                   config_space='nasfpn')
def apply_nasfpn(params: cfg.ExperimentConfig,
                 spec: search_spaces.NasFpnSpec) -> None:
  """Writes a `nasfpn` architecture as the config's decoder; keeps its backbone."""
  blocks.write_spec(params.task.model.decoder, 'tunable_nasfpn', spec)
