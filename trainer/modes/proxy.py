"""The proxy-task modes: flags in, proxy_tasks.tools out."""

import os

from proxy_tasks import candidates as candidates_lib
from proxy_tasks import reference as reference_lib
from proxy_tasks import tools
from trainer import artifacts
from trainer import fileio
from trainer.controller import leaderboard
from trainer.controller import store as store_lib
from trainer.modes import common
from trainer.modes.common import UsageError


def _tool_inputs(args, job_dir: str):
  """(run_stage, prepare) for proxy_tasks.tools, bound to this job."""
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)

  def run_stage(template, proposals, customize=None, identity_extra=None,
                stopping=None):
    return common.run_stage(args, job_dir, template, 'fixed', len(proposals),
                            proposals=proposals, customize=customize,
                            identity_extra=identity_extra, stopping=stopping)

  def prepare(spec):
    return trial.prepare(spec, artifacts.data_dir(job_dir))

  return run_stage, prepare


def run_model_selection(args) -> None:
  job_dir = common.job_dir(args)
  template = common.stage_spec(args, {}, args.search_space,
                               tools.SELECTION_STAGE)
  tools.select_models(job_dir, template, args.proxy_start_models,
                      args.proxy_final_models, args.seed,
                      *_tool_inputs(args, job_dir))


def run_variance(args) -> None:
  job_dir = common.job_dir(args)
  if args.nas_params_str:
    space, params, identity = (args.search_space, common.nas_params(args), {})
  else:
    store = (store_lib.Store.open(job_dir, read_only=True)
             if store_lib.exists(job_dir) else None)
    identity = store and store.job_identity('search')
    best = store and leaderboard.best(store.trials('search'))
    if not identity or best is None:
      raise UsageError('--mode=proxy_variance needs --nas_params_str or a '
                       'completed search trial in --job_dir')
    space, params = identity['search_space'], best.nas_params_str
  template = common.stage_spec(args, identity, space, tools.VARIANCE_STAGE)
  tools.measure_variance(
      job_dir, template.replace(nas_params_str=params),
      args.proxy_variance_runs, args.proxy_max_coefficient_of_variation,
      args.proxy_max_smoothness, *_tool_inputs(args, job_dir))


def _reference(args, job_dir: str):
  """(reference models, their space, the identity of the stage that trained
  them or {}) from --proxy_reference: a file, or a job dir's model selection
  result, else its train stage."""
  path = fileio.absolute(args.proxy_reference or job_dir)
  if fileio.isfile(path):
    return reference_lib.read_file(path), args.search_space, {}
  if not store_lib.exists(path):
    raise UsageError(f'--proxy_reference: {path} is neither a reference file '
                     'nor a job dir')
  store = store_lib.Store.open(path, read_only=True)
  selection = os.path.join(path, tools.SELECTION_FILE)
  if fileio.isfile(selection):
    identity = store.job_identity(tools.SELECTION_STAGE) or {}
    models = reference_lib.read_file(selection)
  else:
    identity = store.job_identity('train')
    if identity is None:
      raise UsageError(f'{path} has no full training to take reference '
                       'accuracies from (--mode=train or '
                       '--mode=proxy_model_selection); give '
                       '--proxy_reference=FILE')
    models = reference_lib.check(reference_lib.from_trials(
        store.trials('train'), 'train', identity['quality_metric']), path)
  return models, identity.get('search_space', args.search_space), identity


def run_proxy_search(args) -> None:
  job_dir = common.job_dir(args)
  models, space, identity = _reference(args, job_dir)
  base = common.stage_spec(
      args, {k: identity[k] for k in ('experiment', 'train_data', 'eval_data')
             if k in identity}, space, tools.PROXY_SEARCH_STAGE)
  candidates = (candidates_lib.parse(args.proxy_candidates)
                if args.proxy_candidates else None)
  tools.search_proxy(job_dir, base, models, candidates,
                     args.proxy_correlation_threshold,
                     *_tool_inputs(args, job_dir))
