"""Which builder writes each materialised spec type into an experiment config.

Each architecture module registers its spec type where its builder is
defined, as Model Garden's backbone and decoder factories do:

  @registry.register(search_spaces.MnasNetSpec,
                     default_experiment='nas_image_classification',
                     config_space='mnasnet')
  def apply_mnasnet(params, spec): ...

Lookup is by isinstance, so a user's patched copy of a prebuilt space (same
spec classes, other candidates) binds without registering anything; when a
spec type and a subclass of it are both registered, the most specific wins.
"""

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Type

from official.core import config_definitions as cfg


class ArchitectureBinding(NamedTuple):
  """How one spec type enters a config, and where it trains by default.

  `config_space` names the shipped configs (`<config_space>_<task>_...`) that
  a user space materialising to this type falls back to.
  """
  default_experiment: str
  config_space: str
  apply: Callable[[cfg.ExperimentConfig, Any], None]


# In registration order, which the error for an unknown type lists.
_BINDINGS: Dict[Type[Any], ArchitectureBinding] = {}


def _name(fn: Callable[..., Any]) -> str:
  return f'{fn.__module__}.{fn.__qualname__}'


def register(spec_type: Type[Any], *, default_experiment: str,
             config_space: str):
  """Decorator: `apply(params, spec)` writes specs of `spec_type` into configs.

  Registering a type twice is an error, unless it is the same function again
  (a reloaded module).
  """

  def decorator(apply):
    existing = _BINDINGS.get(spec_type)
    if existing is not None and _name(existing.apply) != _name(apply):
      raise ValueError(
          f'{spec_type.__name__} is already bound to {_name(existing.apply)}; '
          f'cannot also bind it to {_name(apply)}')
    _BINDINGS[spec_type] = ArchitectureBinding(default_experiment,
                                               config_space, apply)
    return apply

  return decorator


def unregister(spec_type: Type[Any]) -> None:
  """Removes a spec type's binding (tests, notebooks); a no-op if it has none."""
  _BINDINGS.pop(spec_type, None)


def registered_types() -> List[Type[Any]]:
  """The bound spec types, in registration order."""
  return list(_BINDINGS)


def lookup(spec: Any) -> Optional[ArchitectureBinding]:
  """The binding of the most specific registered type `spec` is an instance
  of, or None."""
  for klass in type(spec).__mro__:
    if klass in _BINDINGS:
      return _BINDINGS[klass]
  # Virtual subclasses (abc.ABC.register) are instances but not in the MRO.
  for spec_type, binding in _BINDINGS.items():
    if isinstance(spec, spec_type):
      return binding
  return None
