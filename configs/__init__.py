"""Model Garden-style experiment YAMLs shipped with nas-garden, in layers.

A shipped config `<space>_<task>_<stage>_<hardware>` (see shipped()) is
several YAML files applied in order, later wins, as Model Garden layers its
`--config_file`s. Each file holds only what its layer adds:

  <pair>.yaml          what all five configs of the pair share (model type,
                       backbone and decoder types, levels, ...)
  <pair>_tiny.yaml     the tiny CPU proxy's network and data
  <pair>_proxy.yaml    the Vertex AI NAS proxy sizes (about 5 epochs)
  <pair>_full.yaml     full-training sizes
  cpu.yaml, gpu.yaml, tpu.yaml   per hardware, for every pair
  train_cpu.yaml       full training on a CPU: 500 steps, evaluated every 100

where <pair> is `<space>_<task>`; VARIANTS says which layers each
`<stage>_<hardware>` applies.

`--config_file` takes a comma-separated list of shipped names and paths,
applied in order; resolve() turns it into the files to apply and text() into
one YAML text.
"""

import os
import re
from typing import List

import yaml

from trainer import fileio

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))

# Every pair of search space and task has the five VARIANTS.
PAIRS = (
    'efficientnet_v2_detection',
    'mnasnet_classification',
    'mnasnet_detection',
    'nasfpn_detection',
    'nasfpn_segmentation',
    'nasnet_classification',
    'nasnet_detection',
    'pointpillars_detection3d',
    'regnet_classification',
    'regnet_detection',
    'spinenet_detection',
    'spinenet_mbconv_detection',
    'spinenet_scaling_detection',
    'spinenet_segmentation',
    'spinenet_v2_detection',
    'unet_segmentation3d',
)

# `<stage>_<hardware>`: its layers, in order ({pair}: the name's pair).
VARIANTS = {
    'search_cpu': ('{pair}', 'cpu', '{pair}_tiny'),
    'train_cpu': ('{pair}', 'cpu', '{pair}_tiny', 'train_cpu'),
    'search_gpu': ('{pair}', '{pair}_proxy', 'gpu'),
    'search_tpu': ('{pair}', '{pair}_proxy', 'tpu'),
    'train_gpu': ('{pair}', '{pair}_full', 'gpu'),
}

_SHIPPED = {f'{pair}_{variant}': tuple(layer.format(pair=pair) + '.yaml'
                                       for layer in layers)
            for pair in PAIRS for variant, layers in VARIANTS.items()}


def shipped() -> list:
  """The shipped config names (the layer files alone are not listed)."""
  return sorted(_SHIPPED)


def layers(name: str) -> List[str]:
  """The files of shipped config `name`, in the order they apply."""
  return [os.path.join(CONFIG_DIR, f) for f in _SHIPPED[name]]


def resolve(value: str) -> str:
  """The files a `--config_file` value means, comma-joined in order.

  `value` is a comma-separated list of paths and shipped config names; a
  shipped name stands for its layers. Each file comes back as an absolute
  path; an element that names no file comes back unchanged, for the config
  loader to report.
  """
  if fileio.exists(value):
    return fileio.absolute(value)  # One path, whatever it holds.
  return ','.join(path for item in split(value) for path in _resolve_one(item))


def split(resolved: str) -> List[str]:
  """The files of a (resolved) `--config_file` value, in order."""
  if fileio.isfile(resolved):
    return [resolved]
  return [item.strip() for item in resolved.split(',') if item.strip()]


def _resolve_one(item: str) -> List[str]:
  if fileio.exists(item):
    return [fileio.absolute(item)]
  base = os.path.basename(item)
  name = base[:-len('.yaml')] if base.endswith('.yaml') else base
  if name in _SHIPPED:
    return layers(name)
  layer = os.path.join(CONFIG_DIR, name + '.yaml')  # A single layer file.
  return [layer] if name and os.path.isfile(layer) else [item]


def text(resolved: str) -> str:
  """The config `resolved` (as resolve() returns it) means, as one YAML text.

  One file: its text, verbatim. Several: their mappings merged in order
  (nested keys merged, later wins) and dumped as YAML, which loads into the
  same config as the files applied in order.
  """
  files = split(resolved)
  if len(files) == 1:
    return fileio.read_text(files[0])
  merged = {}
  for path in files:
    mapping = yaml.load(fileio.read_text(path), Loader=_Loader)
    if not isinstance(mapping, dict):
      raise ValueError(f'{path} must hold a YAML mapping of config keys')
    _merge(merged, mapping)
  if not merged:
    return ''
  return yaml.dump(merged, Dumper=_Dumper, sort_keys=False,
                   default_flow_style=None, width=88)


def _merge(into: dict, mapping: dict) -> None:
  for key, value in mapping.items():
    if isinstance(value, dict) and isinstance(into.get(key), dict):
      _merge(into[key], value)
    else:
      into[key] = value


# Exponent floats without a dot (1e-3) are floats, as Model Garden (and
# trainer.training.experiments.ConfigLoader) reads them; the dumper quotes
# strings that would read back as such floats.
_EXPONENT_FLOAT = re.compile(
    r'^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$')


class _Loader(yaml.SafeLoader):
  pass


class _Dumper(yaml.SafeDumper):
  pass


for _cls in (_Loader, _Dumper):
  _cls.add_implicit_resolver('tag:yaml.org,2002:float', _EXPONENT_FLOAT,
                             list('-+0123456789'))
