"""Searched architectures as Model Garden components.

`apply_architecture` writes a materialised spec into an experiment config; it
dispatches on the spec's type, so a user's patched copy of a prebuilt space
(same spec classes, other candidates) runs without any registration.
"""

from typing import Any, Callable, Dict, NamedTuple, Type

import pyglove as pg

from official.core import config_definitions as cfg
import search_spaces
from trainer.architectures import mnasnet  # pylint: disable=unused-import  (registers the backbone)


class ArchitectureBinding(NamedTuple):
  """How one spec type enters a config; its default experiment and config."""
  default_experiment: str
  default_config: str
  apply: Callable[[cfg.ExperimentConfig, Any], None]


def _apply_mnasnet_backbone(params: cfg.ExperimentConfig, spec: Any) -> None:
  backbone = params.task.model.backbone
  backbone.type = 'tunable_mnasnet'
  backbone.tunable_mnasnet.block_specs_json = pg.to_json_str(spec)


BINDINGS: Dict[Type[Any], ArchitectureBinding] = {
    search_spaces.MnasNetSpec: ArchitectureBinding(
        'nas_image_classification', 'mnasnet_classification_search_cpu',
        _apply_mnasnet_backbone),
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
