"""Candidate proxy configs for the proxy search, and how their overrides
combine with the proxy the user configured.

A candidate is {name, params_override, train_data_fraction}: an override of
the proxy config (k=v pairs, or a YAML/JSON mapping, as --params_override),
and optionally the share of the training files it reads.
"""

import copy
import math
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

import yaml

from trainer import fileio

_FIELDS = ('name', 'params_override', 'train_data_fraction')


class Candidate(NamedTuple):
  name: str
  params_override: Union[str, Dict[str, Any]] = ''
  train_data_fraction: Optional[float] = None


def parse(value: str) -> List[Candidate]:
  """Candidates from a JSON/YAML list, or from a file holding one;
  ValueError with a one-line reason."""
  text = value
  if not value.lstrip().startswith('['):
    if not fileio.isfile(value):
      raise ValueError('--proxy_candidates is neither a JSON/YAML list nor a '
                       f'file: {value}')
    text = fileio.read_text(value)
  try:
    items = yaml.safe_load(text)
  except yaml.YAMLError as e:
    raise ValueError('cannot parse --proxy_candidates: '
                     f'{" ".join(str(e).split())}') from e
  if not isinstance(items, list) or not items:
    raise ValueError('--proxy_candidates must be a non-empty list of '
                     '{name, params_override, train_data_fraction}')
  candidates = [_candidate(item, i) for i, item in enumerate(items, 1)]
  names = [c.name for c in candidates]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f'proxy candidate names repeat: {", ".join(repeated)}')
  return candidates


def _candidate(item: Any, position: int) -> Candidate:
  where = f'proxy candidate {position}'
  if not isinstance(item, dict):
    raise ValueError(f'{where} is not a mapping')
  unknown = set(item) - set(_FIELDS)
  if unknown:
    raise ValueError(f'{where}: unknown fields {", ".join(sorted(unknown))}; '
                     f'valid: {", ".join(_FIELDS)}')
  name = item.get('name')
  if not isinstance(name, str) or not name.strip():
    raise ValueError(f'{where} has no name')
  override = item.get('params_override') or ''
  if not isinstance(override, (str, dict)):
    raise ValueError(f'{where} ({name}): params_override must be k=v pairs or '
                     'a mapping')
  fraction = item.get('train_data_fraction')
  if fraction is not None and (isinstance(fraction, bool) or
                               not isinstance(fraction, (int, float)) or
                               not 0 < fraction <= 1):
    raise ValueError(f'{where} ({name}): train_data_fraction must be in (0, 1]')
  return Candidate(name, override, fraction)


def defaults(task: str, input_size: Sequence[int], batch_size: int,
             num_train_files: int) -> List[Candidate]:
  """The built-in candidates around the configured proxy (the tiny CPU
  configs by default): the proxy itself (its evaluations give τ at each
  step, so shorter schedules need no candidates of their own), half the
  batch, half the training files where there are several, and for
  classification three quarters of the image size."""
  candidates = [
      Candidate('as_configured'),
      Candidate('half_batch', {'task': {'train_data': {
          'global_batch_size': max(1, batch_size // 2)}}}),
  ]
  if num_train_files >= 2:
    candidates.append(Candidate('half_data', train_data_fraction=0.5))
  if task == 'classification':
    height, width, channels = input_size
    smaller = [max(8, round(side * 0.75 / 8) * 8) for side in (height, width)]
    candidates.append(Candidate(f'image_{smaller[0]}px', {'task': {'model': {
        'input_size': [*smaller, channels]}}}))
  return candidates


def merge(*overrides: Dict[str, Any]) -> Dict[str, Any]:
  """Nested overrides merged in order, a later value winning."""
  merged: Dict[str, Any] = {}
  for override in overrides:
    for key, value in override.items():
      if isinstance(value, dict) and isinstance(merged.get(key), dict):
        merged[key] = merge(merged[key], value)
      else:
        merged[key] = copy.deepcopy(value)
  return merged


def train_files_share(files: Sequence[str], fraction: float) -> List[str]:
  """The first ⌈fraction·n⌉ of the sorted training files; ValueError when
  that is all of them (too few files to take a share)."""
  ordered = sorted(files)
  count = math.ceil(fraction * len(ordered))
  if fraction < 1 and count >= len(ordered):
    raise ValueError(f'train_data_fraction {fraction:g} of {len(ordered)} '
                     'training files is all of them; it needs data in more '
                     'files (shards)')
  return ordered[:count]
