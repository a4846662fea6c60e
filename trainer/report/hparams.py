"""TensorBoard HParams runs of a job's trials, one run per trial.

TensorBoard's HParams dashboard compares trials by their decisions and
metrics interactively, which the static page does not; the runs are rebuilt
from the store each time, so they can be written while a search goes on.
"""

import json
import os
from typing import Any, List, Sequence

import search_spaces
from trainer import fileio
from trainer.controller import store as store_lib
from trainer.report.data import (FLOPS, LATENCY, MEMORY, StageView, is_number,
                                 read_job)

HPARAMS_DIR = 'hparams'
STATUS_HPARAM = 'trial_status'


def _hparam_domain(literal_values: Sequence[Any]) -> List[Any]:
  """A decision point's candidates as HParams values (one type): its
  literals unquoted, ints widened to float beside floats, else strings."""
  values = [v[1:-1] if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] and
            v[0] in '\'"' else v for v in literal_values]
  kinds = {type(v) for v in values}
  if kinds == {int, float}:
    return [float(v) for v in values]
  if len(kinds) == 1 and kinds <= {int, float, str, bool}:
    return values
  return [str(v) for v in values]


def _write_stage_hparams(stage_dir: str, view: StageView) -> None:
  """The experiment (decision points and metrics) in `stage_dir`, then one
  run per trial: its choices, status and metrics (accuracy per evaluation)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (slow import)
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
  if view.architectures is None:
    raise search_spaces.SearchSpaceError(
        f'cannot list the {view.stage} stage\'s decision points: '
        f'{view.space_error}')
  domains = {str(dp.id): _hparam_domain(dp.literal_values)
             for dp in view.architectures.dna_spec.decision_points}
  hparams = [hp.HParam(name, hp.Discrete(list(dict.fromkeys(values))))
             for name, values in domains.items()]
  hparams.append(hp.HParam(STATUS_HPARAM, hp.Discrete(
      [store_lib.RUNNING, *store_lib.FINISHED_STATES])))
  metric_names = [view.quality_metric, 'reward', FLOPS] + [
      name for name in (LATENCY, MEMORY)
      if any(is_number((t.metrics or {}).get(name)) for t in view.trials)]
  writer = tf.summary.create_file_writer(stage_dir)
  with writer.as_default():
    hp.hparams_config(hparams=hparams,
                      metrics=[hp.Metric(name) for name in metric_names])
  writer.close()
  for t in view.trials:
    metrics = dict(t.metrics or {}, reward=t.reward)
    choices = json.loads(t.nas_params_str)
    values = {name: domains[name][int(choice.split('/', 1)[0])]
              for name, choice in choices.items()}
    values[STATUS_HPARAM] = t.status
    evaluations = [e for e in metrics.get('evaluations') or []
                   if is_number(e.get(view.quality_metric))]
    final_step = int(evaluations[-1]['step']) if evaluations else 0
    writer = tf.summary.create_file_writer(os.path.join(stage_dir, str(t.id)))
    with writer.as_default():
      hp.hparams(values, trial_id=f'{view.stage}/{t.id}',
                 start_time_secs=t.created_at)
      for e in evaluations:
        tf.summary.scalar(view.quality_metric, e[view.quality_metric],
                          step=int(e['step']))
      for name in metric_names:
        if is_number(metrics.get(name)) and not (
            name == view.quality_metric and evaluations):
          tf.summary.scalar(name, metrics[name], step=final_step)
    writer.close()


def write_hparams_summaries(job_dir: str) -> str:
  """Writes `<job_dir>/hparams/<stage>/<trial id>` TensorBoard runs; returns
  `<job_dir>/hparams`. View a stage with
  `tensorboard --logdir <job_dir>/hparams/<stage>` (HPARAMS tab).

  The directory is rebuilt from the store each time (no duplicate events)
  and swapped in whole.
  """
  views = read_job(job_dir)
  root = os.path.join(job_dir, HPARAMS_DIR)
  staging = f'{root}.tmp.{os.getpid()}'
  fileio.remove(staging)
  fileio.makedirs(staging)
  try:
    for view in views:
      _write_stage_hparams(os.path.join(staging, view.stage), view)
  except BaseException:
    fileio.remove(staging)
    raise
  fileio.replace_dir(staging, root)
  return root
