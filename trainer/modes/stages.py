"""The stages of a job: search, full training of the best, augmentation
search, the final model, and the pipeline that runs them in order."""

import os
from typing import List

import pyglove as pg

import search_spaces
from trainer import algorithms
from trainer import artifacts
from trainer import fileio
from trainer.controller import leaderboard
from trainer.controller import search
from trainer.controller import store as store_lib
from trainer.modes import common
from trainer.modes import tools
from trainer.modes.common import UsageError


def run_search(args) -> None:
  job_dir = common.job_dir(args)
  common.run_stage(args, job_dir, common.search_spec(args), args.algorithm,
                   args.max_trials)


def base_architecture(args, job_dir: str, trial_id: int):
  """(space, nas_params_str, search identity or {}) of the fixed architecture.

  From --base_search_space/--base_nas_params_str, else from a trial of the
  search stage of --base_job_dir (default --job_dir): `trial_id` or the best
  completed one.
  """
  if args.base_nas_params_str:
    if args.base_job_dir or trial_id:
      raise UsageError('give --base_nas_params_str or --base_job_dir/'
                       '--base_trial_id, not both')
    if not args.base_search_space:
      raise UsageError('--base_search_space is required with '
                       '--base_nas_params_str')
    return (args.base_search_space,
            common.nas_params(args, 'base_nas_params_str'), {})
  base_job_dir = fileio.absolute(args.base_job_dir or job_dir)
  store = store_lib.Store.open(base_job_dir, read_only=True)
  identity = store.job_identity('search')
  if identity is None:
    raise UsageError(f'{base_job_dir} has no architecture search to take the '
                     'architecture from')
  if trial_id:
    trial = store.trial('search', trial_id)
    if trial.status != store_lib.COMPLETED:
      raise UsageError(f'search trial {trial.id} of {base_job_dir} is '
                       f'{trial.status}, not completed')
  else:
    trial = leaderboard.best(store.trials('search'))
    if trial is None:
      raise UsageError(f'{base_job_dir} has no completed search trial')
  return identity['search_space'], trial.nas_params_str, identity


def augment_stage(args, job_dir: str, base_trial_id: int, max_trials: int,
                  space: str = '', algorithm: str = ''):
  """Searches an augmentation policy for one fixed architecture; returns
  (the augmentation space, the stage's trials).

  Experiment, config, overrides and data default to the base search's, so the
  policy is searched on the setting the architecture was found in. The space
  defaults to the task's RandAugment, searched whole by grid without
  `max_trials`; other algorithms get --max_trials.
  """
  base_space, base_params, base = base_architecture(args, job_dir,
                                                     base_trial_id)
  experiment = args.value_if_given('experiment', base.get('experiment', ''))
  if not space:
    task = 'segmentation' if 'segmentation' in experiment else 'detection'
    space = f'randaugment_{task}'
  if not search_spaces.augmentation_task(space):
    augmentation_spaces = [s for s in search_spaces.list_search_spaces()
                           if search_spaces.augmentation_task(s)]
    raise UsageError(f'--search_space={space} is not an augmentation space; '
                     f'valid: {", ".join(augmentation_spaces)}')
  template = common.stage_spec(args, base, space, 'augment_search',
                               base_space, base_params)
  if not args.given('config_file') and base:
    # The base search's config, as it ran: a copy in this job dir, so the
    # stage's identity does not hang on the base job's files.
    config_file = os.path.join(job_dir, 'augment_search_base_config.yaml')
    fileio.makedirs(job_dir)
    fileio.write_text(config_file, base['config'])
    template = template.replace(config_file=config_file)
  algorithm = algorithm or ('grid' if space.startswith('randaugment')
                            else algorithms.DEFAULT_ALGORITHM)
  if not max_trials:
    max_trials = (pg.dna_spec(search_spaces.get_search_space(space)).space_size
                  if algorithm == 'grid' else args.max_trials)
  return space, common.run_stage(args, job_dir, template, algorithm,
                                 max_trials)


def run_augment_search(args) -> None:
  augment_stage(args, common.job_dir(args), args.base_trial_id,
                args.value_if_given('max_trials', 0),
                args.value_if_given('search_space'),
                args.value_if_given('algorithm'))


def _chosen_search_trials(args, job_dir: str):
  """(search job dir, its search identity, the search trials to train):
  --retrain_search_job_trials, else the --top_k best."""
  search_dir = fileio.absolute(args.retrain_search_job_dir or job_dir)
  store = store_lib.Store.open(search_dir, read_only=True)
  identity = store.job_identity('search')
  if identity is None:
    raise UsageError(f'{search_dir} has no architecture search to retrain')
  if args.retrain_search_job_trials:
    try:
      ids = [int(i) for i in args.retrain_search_job_trials.split(',')]
    except ValueError:
      raise UsageError('--retrain_search_job_trials must be trial ids, e.g. '
                       f'3,7 (got {args.retrain_search_job_trials!r})') from None
    chosen = [store.trial('search', i) for i in ids]
    for t in chosen:
      if t.status != store_lib.COMPLETED:
        raise UsageError(f'search trial {t.id} of {search_dir} is {t.status}, '
                         'not completed')
  else:
    if args.top_k < 1:
      raise UsageError('--top_k must be at least 1')
    chosen = leaderboard.ranked(
        [t for t in store.trials('search') if t.status == store_lib.COMPLETED]
    )[:args.top_k]
    if not chosen:
      raise UsageError(f'{search_dir} has no completed search trial to train')
  return search_dir, identity, chosen


def train_stage(args, job_dir: str) -> List[store_lib.Trial]:
  """Full training of chosen search trials (stage 'train'); returns it."""
  search_dir, identity, chosen = _chosen_search_trials(args, job_dir)
  template = common.stage_spec(args, identity, identity['search_space'],
                               'train')
  ids = [t.id for t in chosen]

  def customize(t, spec):
    if not args.retrain_use_search_job_checkpoint:
      return spec
    return spec.replace(init_checkpoint=artifacts.trial_dir(
        search_dir, 'search', ids[t.id - 1]))

  return common.run_stage(
      args, job_dir, template, 'fixed', len(chosen),
      proposals=[t.nas_params_str for t in chosen], customize=customize,
      trial_flags=lambda t: {'search_trial_id': ids[t.id - 1]},
      identity_extra={
          'search_job_dir': search_dir, 'search_trial_ids': ids,
          'warm_start': args.retrain_use_search_job_checkpoint})


def run_train(args) -> None:
  train_stage(args, common.job_dir(args))


def _final_model(args, job_dir: str, identity, best) -> None:
  """Augmentation search for the best trained trial, then its full training
  with the best policy (stage 'final')."""
  search_id = best.metrics['search_trial_id']
  print(f'== 3/5 augmentation search for search trial {search_id} (best '
        f'after full training)', flush=True)
  space, augmented = augment_stage(args, job_dir, search_id,
                                   args.augment_max_trials)
  policy = leaderboard.best(augmented)
  if policy is None:
    raise search.SearchFailed('no augmentation trial completed')
  print('== 4/5 final model: full training with the best policy', flush=True)
  template = common.stage_spec(args, identity, space, 'final',
                               identity['search_space'], best.nas_params_str)
  common.run_stage(args, job_dir, template, 'fixed', 1,
                   proposals=[policy.nas_params_str],
                   trial_flags=lambda t: {'search_trial_id': search_id})


def run_pipeline(args) -> None:
  """search -> train top-k -> augmentation search on the best -> the final
  model (full training with the best policy) -> export and report. Each stage
  resumes from the store, so re-running the command continues the pipeline.
  """
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  job_dir = common.job_dir(args)
  print('== 1/5 search', flush=True)
  run_search(args)
  print(f'== 2/5 train the top {args.top_k}', flush=True)
  best = leaderboard.best(train_stage(args, job_dir))
  if best is None:
    raise search.SearchFailed('no trial of the train stage completed')
  identity = store_lib.Store.open(job_dir, read_only=True).job_identity(
      'search')
  task = trial.TASK_FAMILIES[identity['experiment']].name
  if task not in search_spaces.AUGMENTATION_TASKS:
    print('== 3/5 augmentation search: skipped (no augmentation space for '
          f'{identity["experiment"]})', flush=True)
    print('== 4/5 final model: the best trained trial', flush=True)
  else:
    _final_model(args, job_dir, identity, best)
  print('== 5/5 export and report', flush=True)
  tools.export(args, job_dir, again=False)
  tools.run_report(args)
