"""The store read into one view per stage, for the page and HParams runs.

Both outputs show the same trials, architectures and accuracy metric, so
they read the store once here and share `StageView`s. Reading only, so a
report can be written while a search is still going on.
"""

import json
import math
import os
from typing import Any, Dict, List, NamedTuple, Optional

import pyglove as pg

import search_spaces
from trainer import fileio
from trainer.controller import leaderboard
from trainer.objective import FLOPS, LATENCY, MEMORY  # pylint: disable=unused-import  (the report's cost columns)
from trainer.controller import store as store_lib

# Stages in the order the page shows them, with their headings.
STAGE_TITLES = {
    'search': 'Architecture search',
    'train': 'Full training of chosen architectures',
    'augment_search': 'Augmentation policy search',
    'compound_scaling_grid': 'Compound scaling grid (φ=1, proxy)',
    'compound_scaling': 'Compound scaling: the φ models',
}


def read_result(job_dir: str, file_name: str) -> Optional[Dict[str, Any]]:
  """A mode's JSON result beside the store (design_space.json,
  compound_scaling.json); None without one, or when it cannot be parsed."""
  path = os.path.join(job_dir, file_name)
  if not fileio.exists(path):
    return None
  try:
    return json.loads(fileio.read_text(path))
  except ValueError:
    return None


class Architectures:
  """Materialises a stage's trials; parses its space's decision points once,
  which takes up to a second for the larger spaces."""

  def __init__(self, space_name: str):
    self.space_name = space_name
    self.space = search_spaces.get_search_space(space_name)
    self.dna_spec = pg.dna_spec(self.space)

  def spec(self, nas_params_str: str) -> Any:
    return search_spaces.materialize(self.space, search_spaces.dna_from_nas_params(
        self.dna_spec, nas_params_str))

  def summary(self, nas_params_str: str) -> str:
    try:
      return search_spaces.architecture_summary(self.spec(nas_params_str))
    except search_spaces.SearchSpaceError as e:
      return f'(unreadable: {e})'


class StageView(NamedTuple):
  """One stage's trials with what the page says about them."""
  stage: str
  identity: Dict[str, Any]
  trials: List[store_lib.Trial]
  quality_metric: str
  best: Optional[store_lib.Trial]
  architectures: Optional[Architectures]
  space_error: str  # Why `architectures` is None, if it is.


def accuracy(trial: store_lib.Trial, key: str) -> Optional[float]:
  value = (trial.metrics or {}).get(key)
  return float(value) if is_number(value) else None


def is_number(value: Any) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool) and
          math.isfinite(value))


def read_stages(store: store_lib.Store) -> List[StageView]:
  """The stages that have trials. A train stage's trials retrain search
  trials, so without a space of its own it reads the search stage's."""
  views = []
  search_identity = store.job_identity('search') or {}
  for stage in STAGE_TITLES:
    trials = store.trials(stage)
    if not trials:
      continue
    identity = store.job_identity(stage) or {}
    space_name = identity.get('search_space') or (
        search_identity.get('search_space') if stage == 'train' else None)
    architectures, space_error = None, 'the stage records no search space'
    if space_name:
      try:
        architectures, space_error = Architectures(space_name), ''
      except search_spaces.SearchSpaceError as e:
        space_error = str(e)
    views.append(StageView(
        stage, identity, trials, identity.get('quality_metric') or 'accuracy',
        leaderboard.best(trials), architectures, space_error))
  return views


def architecture_summaries(view: StageView) -> Dict[int, str]:
  """Each trial's one-line architecture, '' where the space is unreadable."""
  if view.architectures is None:
    return {t.id: '' for t in view.trials}
  return {t.id: view.architectures.summary(t.nas_params_str) for t in view.trials}


def read_job(job_dir: str):
  """Every stage's view, read from the store in one read-only session."""
  store = store_lib.Store.open(job_dir, read_only=True)
  try:
    return read_stages(store)
  finally:
    store.close()

