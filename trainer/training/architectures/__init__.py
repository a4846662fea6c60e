"""Searched architectures as Model Garden components.

`binding_for` dispatches on a materialised spec's type, so a user's patched
copy of a prebuilt space (same spec classes, other candidates) runs without
any registration.
"""

from typing import Any, Callable, Dict, NamedTuple, Type

from official.core import config_definitions as cfg
import search_spaces
from trainer.training.architectures import efficientnet_v2
from trainer.training.architectures import mnasnet
from trainer.training.architectures import nasfpn
from trainer.training.architectures import spinenet


class ArchitectureBinding(NamedTuple):
  """How one spec type enters a config, and where it trains by default.

  `config_space` names the shipped configs (`<config_space>_<task>_...`) that
  a user space materialising to this type falls back to.
  """
  default_experiment: str
  config_space: str
  apply: Callable[[cfg.ExperimentConfig, Any], None]


def _apply_any_spinenet(params: cfg.ExperimentConfig,
                        spec: search_spaces.SpineNetSpec) -> None:
  """The mobile SpineNet builder for MBConv specs, the residual one otherwise."""
  if any(b.block_fn == 'mbconv' for _, b in spec.block_sequence()):
    spinenet.apply_spinenet_mbconv(params, spec)
  else:
    spinenet.apply_spinenet(params, spec)


def _apply_spinenet_scaling(params: cfg.ExperimentConfig,
                            spec: search_spaces.SpineNetScalingSpec) -> None:
  spinenet.apply_spinenet_scaling(
      params, spec, params.task.model.scaling_image_size_scale)


BINDINGS: Dict[Type[Any], ArchitectureBinding] = {
    search_spaces.MnasNetSpec: ArchitectureBinding(
        'nas_image_classification', 'mnasnet', mnasnet.apply_mnasnet),
    search_spaces.EfficientNetV2Spec: ArchitectureBinding(
        'nas_retinanet', 'efficientnet_v2', efficientnet_v2.apply_efficientnet_v2),
    search_spaces.SpineNetSpec: ArchitectureBinding(
        'nas_retinanet', 'spinenet', _apply_any_spinenet),
    search_spaces.NasFpnSpec: ArchitectureBinding(
        'nas_retinanet', 'nasfpn', nasfpn.apply_nasfpn),
    search_spaces.SpineNetScalingSpec: ArchitectureBinding(
        'nas_retinanet', 'spinenet_scaling', _apply_spinenet_scaling),
}


def binding_for(spec: Any) -> ArchitectureBinding:
  """The binding of a materialised spec; a clear error for unknown types."""
  for spec_type, binding in BINDINGS.items():
    if isinstance(spec, spec_type):
      return binding
  raise ValueError(
      f'no trainer for architectures of type {type(spec).__name__}; trainable '
      f'types: {", ".join(t.__name__ for t in BINDINGS)}')


def apply_architecture(params: cfg.ExperimentConfig, spec: Any) -> None:
  """Writes `spec` into `params` (unlocked) for its registered component."""
  binding_for(spec).apply(params, spec)
