"""The reference set: architectures with their full-training accuracy (and
cost), which a proxy must rank alike.

It comes from a job's full trainings (store trials) or from a file the user
gives: CSV with a header, or JSON (a list of rows, or {"models": [rows]} as
model selection writes it). A row holds nas_params_str (a string, or the
JSON object itself) and accuracy, and may hold latency_ms,
multi_add_flops_billion and source (where the accuracy comes from).
"""

import csv
import io
import json
import os
from typing import Any, Dict, List, NamedTuple

from trainer import fileio
from trainer import objective

# Costs a reference model may carry, as trials report them.
COST_METRICS = (objective.LATENCY, objective.FLOPS)
MIN_MODELS = 3
_FIELDS = {'nas_params_str', 'accuracy', 'source', *COST_METRICS}


class ReferenceModel(NamedTuple):
  nas_params_str: str
  accuracy: float
  costs: Dict[str, float]  # Of COST_METRICS, those known.
  source: str  # Where the accuracy comes from, for the result file.


def read_file(path: str) -> List[ReferenceModel]:
  """Rows of a CSV or JSON reference file; ValueError naming a bad row."""
  if not fileio.isfile(path):
    raise FileNotFoundError(f'no reference file {path}')
  text = fileio.read_text(path)
  if path.endswith('.csv'):
    rows = list(csv.DictReader(io.StringIO(text, newline='')))
  else:
    try:
      rows = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path} is neither CSV (.csv) nor JSON: {e}') from e
  if isinstance(rows, dict):
    rows = rows.get('models')
  if not isinstance(rows, list):
    raise ValueError(f'{path} must hold a list of rows or {{"models": [...]}}')
  models = [_model(row, f'{os.path.basename(path)} row {i}')
            for i, row in enumerate(rows, 1)]
  return check(models, path)


def _model(row: Any, source: str) -> ReferenceModel:
  if not isinstance(row, dict):
    raise ValueError(f'{source} is not a mapping')
  unknown = set(row) - _FIELDS
  if unknown:
    raise ValueError(f'{source}: unknown fields {", ".join(sorted(unknown))}; '
                     f'valid: {", ".join(sorted(_FIELDS))}')
  params = row.get('nas_params_str')
  if isinstance(params, dict):
    params = json.dumps(params)
  if not isinstance(params, str) or not params.strip():
    raise ValueError(f'{source} has no nas_params_str')
  values = {}
  for field in ('accuracy', *COST_METRICS):
    if row.get(field) in (None, ''):
      continue
    try:
      values[field] = float(row[field])
    except (TypeError, ValueError):
      raise ValueError(f'{source}: {field} is not a number: '
                       f'{row[field]!r}') from None
  if 'accuracy' not in values:
    raise ValueError(f'{source} has no accuracy')
  accuracy = values.pop('accuracy')
  return ReferenceModel(params, accuracy, values,
                        str(row.get('source') or source))


def from_trials(trials: List[Any], stage: str,
                quality_metric: str) -> List[ReferenceModel]:
  """The completed trials of a full-training stage (store trials), each
  under its stage's quality metric."""
  models = []
  for t in trials:
    if t.status != 'completed':
      continue
    metrics = t.metrics
    costs = {m: float(metrics[m]) for m in COST_METRICS
             if isinstance(metrics.get(m), (int, float))}
    models.append(ReferenceModel(
        t.nas_params_str, float(metrics[quality_metric]), costs,
        f'{stage} trial {t.id}'))
  return models


def check(models: List[ReferenceModel], where: str) -> List[ReferenceModel]:
  """The models, if there are enough to rank."""
  if len(models) < MIN_MODELS:
    raise ValueError(f'{where} holds {len(models)} reference models; a '
                     f'ranking needs at least {MIN_MODELS}')
  return models


def to_rows(models: List[ReferenceModel]) -> List[Dict[str, Any]]:
  """The models as rows of a reference file."""
  return [{'nas_params_str': m.nas_params_str, 'accuracy': m.accuracy,
           **m.costs, 'source': m.source} for m in models]
