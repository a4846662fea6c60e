"""Helpers shared by the spec-built backbones and decoders.

Each tunable component reads its materialised spec from a config string and
the block-group backbones (MnasNet, EfficientNetV2) collect their per-level
endpoints the same way, so both live here once.
"""

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Type, Union

import pyglove as pg
import tf_keras

from trainer import compound_scaling


def load_spec(block_specs_json: str,
              spec_type: Union[Type[Any], Tuple[Type[Any], ...]],
              component: str) -> Any:
  """The `spec_type` (or one of a tuple of types) a config carries; a clear
  error when it carries none. `component` names the backbone or decoder type
  in the message.
  """
  names = ' or '.join(t.__name__ for t in (
      spec_type if isinstance(spec_type, tuple) else (spec_type,)))
  if not block_specs_json:
    raise ValueError(f'{component} needs block_specs_json: the materialised '
                     f'{names} of a trial (pg.to_json_str)')
  spec = pg.from_json_str(block_specs_json)
  if not isinstance(spec, spec_type):
    raise ValueError(f'block_specs_json holds {type(spec).__name__}, '
                     f'not a {names}')
  return spec


def write_spec(component: Any, component_type: str, spec: Any) -> None:
  """Selects `component_type` in a backbone or decoder OneOf config and stores
  the materialised spec in its `block_specs_json`."""
  component.type = component_type
  component.get().block_specs_json = pg.to_json_str(spec)


def norm_activation_kwargs(norm_activation_config: Any) -> Dict[str, Any]:
  """The activation and batch-norm arguments a backbone builder passes on."""
  return dict(activation=norm_activation_config.activation,
              use_sync_bn=norm_activation_config.use_sync_bn,
              norm_momentum=norm_activation_config.norm_momentum,
              norm_epsilon=norm_activation_config.norm_epsilon)


def build_level_endpoints(
    x: Any, block_groups: Sequence[Any],
    build_block: Callable[[Any, Any, int], Any],
    head: Optional[Callable[[Any], Any]] = None,
    depth_multiplier: float = 1.0) -> Dict[str, Any]:
  """Stacks block groups on level-1 features `x`; returns {level: features}.

  A group builds `num_repeats` blocks (times `depth_multiplier`, rounded up:
  compound scaling's depth) with `build_block(x, group, strides)`, the first
  with the group's `strides`. A level's endpoint is its last feature
  map before a stride-2 block, as detection decoders and heads expect. `head`,
  if given, maps the last level's features (e.g. a classification 1x1 conv).
  """
  level = 1
  endpoints: Dict[str, Any] = {}
  for group in block_groups:
    for repeat in range(compound_scaling.round_repeats(group.num_repeats,
                                                       depth_multiplier)):
      strides = group.strides if repeat == 0 else 1
      if strides > 1:
        endpoints[str(level)] = x
        level += 1
      x = build_block(x, group, strides)
  endpoints[str(level)] = head(x) if head else x
  return endpoints


def constructor_arguments(arguments: Dict[str, Any]) -> Dict[str, Any]:
  """A LevelBackbone's config: the `locals()` of its `__init__` taken before
  anything else is assigned, without `self` and the Keras `kwargs`."""
  return {name: value for name, value in arguments.items()
          if name not in ('self', 'kwargs', '__class__')}


class LevelBackbone(tf_keras.Model):
  """A functional backbone or decoder returning {level: features}, rebuilt
  from config.

  Subclasses take `config = constructor_arguments(locals())` as the first
  statement of `__init__`, build their graph, then call
  `_finish(config, inputs, endpoints)`, so Keras serialisation and Model
  Garden's `output_specs` come for free.
  """

  def _finish(self, config: Dict[str, Any], inputs: Any,
              endpoints: Dict[str, Any], **kwargs) -> None:
    self._config_dict = config
    self._output_specs = {l: endpoints[l].get_shape() for l in endpoints}
    super().__init__(inputs=inputs, outputs=endpoints, **kwargs)

  def get_config(self) -> Dict[str, Any]:
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)

  @property
  def output_specs(self):
    return self._output_specs
