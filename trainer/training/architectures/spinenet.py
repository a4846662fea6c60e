"""Searched SpineNets as Model Garden backbones, and the scaling space.

A materialised `search_spaces.SpineNetSpec` (serialised with `pg.to_json_str`
into the config) becomes Model Garden's own `SpineNet` (residual/bottleneck
blocks) or `SpineNetMobile` (MBConv blocks) through their `block_specs`, so
trials train the stock networks with a searched topology.
"""

import dataclasses
from typing import Iterable, List, Optional

import pyglove as pg
import tf_keras

from official.core import config_definitions as cfg
from official.modeling import hyperparams
from official.vision.modeling.backbones import factory
from official.vision.modeling.backbones import spinenet
from official.vision.modeling.backbones import spinenet_mobile
import search_spaces
from trainer.training.architectures import blocks
from trainer.training.architectures import registry

# Model Garden's stems build this many init blocks, which `input_offsets` 0
# and 1 address; its `block_specs` are the blocks after them.
MODEL_GARDEN_NUM_INIT_BLOCKS = 2


@dataclasses.dataclass
class TunableSpineNet(hyperparams.Config):
  """A searched SpineNet; the scaling knobs are those of SpineNet-49..190.

  `model_id` is the platform's key: as there, it must name a SpineNet of
  Model Garden's table (49S, 49, 96, 143, 143L, 190), and the network's
  widths and depth come from the explicit knobs, not from the table.
  """
  model_id: str = '49'
  block_specs_json: str = ''
  min_level: int = 3
  max_level: int = 7
  endpoints_num_filters: int = 256
  resample_alpha: float = 0.5
  block_repeats: int = 1
  filter_size_scale: float = 1.0
  init_stochastic_depth_rate: float = 0.0


@dataclasses.dataclass
class TunableSpineNetMbconv(hyperparams.Config):
  """A searched mobile SpineNet; defaults are Model Garden's SpineNet-49 mobile.

  `model_id` as in TunableSpineNet, from the mobile table (49, 49S, 49XS).
  """
  model_id: str = '49'
  block_specs_json: str = ''
  min_level: int = 3
  max_level: int = 7
  endpoints_num_filters: int = 48
  se_ratio: float = 0.2
  block_repeats: int = 1
  filter_size_scale: float = 1.0
  expand_ratio: int = 6
  init_stochastic_depth_rate: float = 0.0


def spec_to_block_specs(
    spec: search_spaces.SpineNetSpec) -> List[spinenet.BlockSpec]:
  """Model Garden block specs of a SpineNetSpec, for SpineNet and its mobile twin.

  Both Model Garden classes build the init blocks in their stem and read only
  level, block_fn, input_offsets and is_output, so the spec's blocks after the
  init blocks map one to one with unchanged offsets.
  """
  if len(spec.init_blocks) != MODEL_GARDEN_NUM_INIT_BLOCKS:
    raise ValueError(
        f'SpineNetSpec has {len(spec.init_blocks)} init blocks; Model '
        f"Garden's SpineNet stem builds {MODEL_GARDEN_NUM_INIT_BLOCKS}")
  num_intermediate = len(spec.intermediate_blocks)
  return [
      spinenet.BlockSpec(level, b.block_fn, tuple(b.input_offsets),
                         is_output=i >= num_intermediate)
      for i, (level, b) in enumerate(
          spec.block_sequence()[MODEL_GARDEN_NUM_INIT_BLOCKS:])
  ]


def _block_specs(backbone_cfg: hyperparams.Config, backbone_type: str,
                 block_fns: List[str],
                 model_ids: Iterable[str]) -> List[spinenet.BlockSpec]:
  """The config's block specs, checked against what the backbone can build
  (and its model_id against the backbone's table, as the platform does)."""
  if backbone_cfg.model_id not in model_ids:
    raise ValueError(f'{backbone_type}.model_id {backbone_cfg.model_id!r} is '
                     f'not a SpineNet; valid: {", ".join(model_ids)}')
  block_specs = spec_to_block_specs(blocks.load_spec(
      backbone_cfg.block_specs_json, search_spaces.SpineNetSpec, backbone_type))
  unknown = {b.block_fn for b in block_specs} - set(block_fns)
  if unknown:
    raise ValueError(f'{backbone_type} builds {", ".join(block_fns)} blocks, '
                     f'not {", ".join(sorted(unknown))}')
  missing = set(range(backbone_cfg.min_level, backbone_cfg.max_level + 1)) - {
      b.level for b in block_specs if b.is_output}
  if missing:
    raise ValueError(
        f'{backbone_type} needs output blocks for levels '
        f'{backbone_cfg.min_level}..{backbone_cfg.max_level}; the spec has '
        f'none for {sorted(missing)}')
  return block_specs


@factory.register_backbone_builder('tunable_spinenet')
def build_tunable_spinenet(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> tf_keras.Model:
  """Model Garden backbone builder for `backbone.type: tunable_spinenet`."""
  backbone_cfg = backbone_config.get()
  return spinenet.SpineNet(
      input_specs=input_specs,
      min_level=backbone_cfg.min_level,
      max_level=backbone_cfg.max_level,
      block_specs=_block_specs(backbone_cfg, 'tunable_spinenet',
                               ['residual', 'bottleneck'],
                               spinenet.SCALING_MAP),
      endpoints_num_filters=backbone_cfg.endpoints_num_filters,
      resample_alpha=backbone_cfg.resample_alpha,
      block_repeats=backbone_cfg.block_repeats,
      filter_size_scale=backbone_cfg.filter_size_scale,
      init_stochastic_depth_rate=backbone_cfg.init_stochastic_depth_rate,
      kernel_regularizer=l2_regularizer,
      **blocks.norm_activation_kwargs(norm_activation_config))


@factory.register_backbone_builder('tunable_spinenet_mbconv')
def build_tunable_spinenet_mbconv(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> tf_keras.Model:
  """Model Garden backbone builder for `backbone.type: tunable_spinenet_mbconv`.

  Model Garden's mobile stem puts its init blocks at levels 1 and 2.
  """
  backbone_cfg = backbone_config.get()
  return spinenet_mobile.SpineNetMobile(
      input_specs=input_specs,
      min_level=backbone_cfg.min_level,
      max_level=backbone_cfg.max_level,
      block_specs=_block_specs(backbone_cfg, 'tunable_spinenet_mbconv',
                               ['mbconv'], spinenet_mobile.SCALING_MAP),
      endpoints_num_filters=backbone_cfg.endpoints_num_filters,
      se_ratio=backbone_cfg.se_ratio,
      block_repeats=backbone_cfg.block_repeats,
      filter_size_scale=backbone_cfg.filter_size_scale,
      expand_ratio=backbone_cfg.expand_ratio,
      init_stochastic_depth_rate=backbone_cfg.init_stochastic_depth_rate,
      kernel_regularizer=l2_regularizer,
      **blocks.norm_activation_kwargs(norm_activation_config))


def _apply_backbone(params: cfg.ExperimentConfig, backbone_type: str,
                    spec: search_spaces.SpineNetSpec) -> None:
  """SpineNet outputs the feature pyramid itself: no decoder, as in Vertex."""
  blocks.write_spec(params.task.model.backbone, backbone_type, spec)
  params.task.model.decoder.type = 'identity'


def apply_spinenet(params: cfg.ExperimentConfig,
                   spec: search_spaces.SpineNetSpec) -> None:
  """Writes a `spinenet` or `spinenet_v2` architecture into a config."""
  _apply_backbone(params, 'tunable_spinenet', spec)


def apply_spinenet_mbconv(params: cfg.ExperimentConfig,
                          spec: search_spaces.SpineNetSpec) -> None:
  """Writes a `spinenet_mbconv` architecture into a config."""
  _apply_backbone(params, 'tunable_spinenet_mbconv', spec)


@registry.register(search_spaces.SpineNetSpec,
                   default_experiment='nas_retinanet', config_space='spinenet')
def apply_any_spinenet(params: cfg.ExperimentConfig,
                       spec: search_spaces.SpineNetSpec) -> None:
  """The mobile SpineNet builder for MBConv specs, the residual one otherwise."""
  if any(b.block_fn == 'mbconv' for _, b in spec.block_sequence()):
    apply_spinenet_mbconv(params, spec)
  else:
    apply_spinenet(params, spec)


def apply_spinenet_scaling(params: cfg.ExperimentConfig,
                           spec: search_spaces.SpineNetScalingSpec,
                           image_size_scale: float = 1.0,
                           width_scale: float = 1.0) -> None:
  """Scales the config's `tunable_spinenet` and its head, as Vertex does.

  The network scaled is the one in `backbone.tunable_spinenet.block_specs_json`
  (e.g. the best of a `spinenet` search), SpineNet-49 when that is empty.
  Model Garden's stock `spinenet` backbone cannot be used: it takes its widths
  and depth from a fixed per-model_id table, not from the config.

  `image_size_scale` multiplies the searched image size, rounded to a multiple
  of 2**max_level (at least one), so a cheap CPU proxy can rank the same
  scaling candidates at a lower resolution; 1.0 trains at the searched size.
  `width_scale` likewise multiplies the searched widths (filter_size_scale,
  and the endpoint and head filters, rounded to multiples of 8): at full
  width a candidate at 128 px trains at about 0.2 steps/s on 2 CPU cores, too
  slow for a CPU proxy to learn anything in minutes.
  """
  model = params.task.model
  backbone = model.backbone.tunable_spinenet
  if not backbone.block_specs_json:
    backbone.block_specs_json = pg.to_json_str(
        search_spaces.spinenet49_reference_spec())
  model.backbone.type = 'tunable_spinenet'
  backbone.endpoints_num_filters = _scaled_filters(
      spec.endpoints_num_filters, width_scale)
  backbone.filter_size_scale = spec.filter_size_scale * width_scale
  backbone.resample_alpha = spec.resample_alpha
  backbone.block_repeats = spec.block_repeats
  model.decoder.type = 'identity'
  model.head.num_convs = spec.head_num_convs
  model.head.num_filters = _scaled_filters(spec.head_num_filters, width_scale)
  stride = 2**backbone.max_level
  size = max(1, round(spec.image_size * image_size_scale / stride)) * stride
  model.input_size = [size, size, 3]
  # Segmentation parsers take their own output size; RetinaNet's reads
  # model.input_size.
  for data in (params.task.train_data, params.task.validation_data):
    if hasattr(data, 'output_size'):
      data.output_size = [size, size]


@registry.register(search_spaces.SpineNetScalingSpec,
                   default_experiment='nas_retinanet',
                   config_space='spinenet_scaling')
def apply_spinenet_scaling_at_config_scale(
    params: cfg.ExperimentConfig,
    spec: search_spaces.SpineNetScalingSpec) -> None:
  """`apply_spinenet_scaling` at the config's `scaling_image_size_scale` and
  `scaling_width_scale`."""
  apply_spinenet_scaling(params, spec,
                         params.task.model.scaling_image_size_scale,
                         params.task.model.scaling_width_scale)


def _scaled_filters(filters: int, scale: float) -> int:
  """`filters` times `scale`, rounded to a multiple of 8 (at least 8)."""
  return filters if scale == 1.0 else max(8, int(round(filters * scale / 8)) * 8)
