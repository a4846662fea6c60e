"""Searched architectures as Model Garden components.

Each architecture module binds its spec type where its builder is defined
(`registry.register`); importing this package imports them all, so they are
bound. `binding_for` dispatches on a materialised spec's type, so a user's
patched copy of a prebuilt space (same spec classes, other candidates) runs
without any registration.
"""

from typing import Any

from official.core import config_definitions as cfg
# Imported for their registrations (and in this order, which the error for an
# unknown type lists).
from trainer.training.architectures import mnasnet  # pylint: disable=unused-import
from trainer.training.architectures import efficientnet_v2  # pylint: disable=unused-import
from trainer.training.architectures import spinenet  # pylint: disable=unused-import
from trainer.training.architectures import nasfpn  # pylint: disable=unused-import
from trainer.training.architectures import regnet  # pylint: disable=unused-import
from trainer.training.architectures import nasnet  # pylint: disable=unused-import
from trainer.training.architectures import unet3d  # pylint: disable=unused-import
from trainer.training.architectures import pointpillars  # pylint: disable=unused-import
from trainer.training.architectures import registry
from trainer.training.architectures.registry import ArchitectureBinding  # pylint: disable=unused-import


def binding_for(spec: Any) -> ArchitectureBinding:
  """The binding of a materialised spec; a clear error for unknown types."""
  binding = registry.lookup(spec)
  if binding is None:
    raise ValueError(
        f'no trainer for architectures of type {type(spec).__name__}; '
        'trainable types: '
        f'{", ".join(t.__name__ for t in registry.registered_types())}')
  return binding


def apply_architecture(params: cfg.ExperimentConfig, spec: Any) -> None:
  """Writes `spec` into `params` (unlocked) for its registered component."""
  binding_for(spec).apply(params, spec)
