"""--mode=oneshot_search: TuNAS's weight-sharing search of the `mnasnet` or
`efficientnet_v2` space (trainer/oneshot/), on the search config's
classification task and data.

The supernet trains for the config's trainer.train_steps in
<job_dir>/oneshot/ (its checkpoints and oneshot.json). The result, the
policy's most likely architecture evaluated with the supernet's weights, is
stored as a completed trial of the job's search stage, so --mode=train,
export and report take it as any search result. The same command resumes a
killed search from its last checkpoint.
"""

import contextlib
import json
import os

import pyglove as pg

import configs
import search_spaces
from trainer import artifacts
from trainer import fileio
from trainer import objective as objective_lib
from trainer import outcome
from trainer.controller import leaderboard
from trainer.controller import search
from trainer.controller import store as store_lib
from trainer.modes import common
from trainer.modes.common import UsageError

SPACES = ('mnasnet', 'efficientnet_v2')
ONESHOT_DIR = 'oneshot'
RESULT_FILE = 'oneshot.json'
STAGE = 'search'


def _check(args) -> None:
  if args.search_space not in SPACES:
    raise UsageError(f'--mode=oneshot_search has supernets of '
                     f'{", ".join(SPACES)}, not {args.search_space}')
  if args.target_device_latency_ms or args.target_memory_mb:
    raise UsageError('--mode=oneshot_search rewards FLOPs '
                     '(--target_flops_multi_adds_billion): latency and memory '
                     'are measured on trained models, not on supernet paths')
  if not 0 <= args.oneshot_warmup_fraction < 1:
    raise UsageError(f'--oneshot_warmup_fraction='
                     f'{args.oneshot_warmup_fraction}: a fraction in [0, 1)')
  if args.oneshot_checkpoint_steps < 1 or args.oneshot_rank_samples < 0:
    raise UsageError('--oneshot_checkpoint_steps must be positive and '
                     '--oneshot_rank_samples not negative')
  if args.oneshot_cost_penalty < 0 or args.oneshot_policy_learning_rate <= 0:
    raise UsageError('--oneshot_cost_penalty must not be negative and '
                     '--oneshot_policy_learning_rate must be positive')


def _settings(args):
  from trainer.oneshot import search as oneshot  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return oneshot.Settings(
      seed=args.seed, warmup_fraction=args.oneshot_warmup_fraction,
      policy_learning_rate=args.oneshot_policy_learning_rate,
      cost_penalty=args.oneshot_cost_penalty,
      target_flops=args.target_flops_multi_adds_billion,
      checkpoint_steps=args.oneshot_checkpoint_steps)


def run_oneshot_search(args) -> None:
  job_dir = common.job_dir(args)
  _check(args)
  store_lib.check_writable(job_dir)
  common.check_existing_store(job_dir)
  space = search_spaces.get_search_space(args.search_space)
  template = common.search_spec(args)
  from trainer.training import trial as trial_lib  # pylint: disable=g-import-not-at-top
  sample = search_spaces.nas_params_from_dna(pg.dna_spec(space).first_dna())
  prepared = trial_lib.prepare(template.replace(nas_params_str=sample),
                               artifacts.data_dir(job_dir))
  if prepared.task_name != 'classification':
    raise UsageError(
        f'--mode=oneshot_search trains classification supernets, not '
        f'{prepared.task_name} ({prepared.config_file}): pass '
        '--experiment=nas_image_classification '
        '--config_file=mnasnet_classification_search_cpu')
  template = template.replace(experiment=prepared.experiment,
                              config_file=prepared.config_file)
  goal = common.objective(args, prepared.quality_metric, False)
  settings = _settings(args)
  identity = {**template.identity(configs.text(prepared.config_file)),
              **goal.identity(), 'algorithm': 'oneshot',
              'oneshot_warmup_fraction': settings.warmup_fraction,
              'oneshot_policy_learning_rate': settings.policy_learning_rate,
              'oneshot_cost_penalty': settings.cost_penalty}
  common.check_existing_store(job_dir, STAGE, identity)
  store = store_lib.Store.open(job_dir, create=True)
  with contextlib.closing(store), search.ControllerLock(
      store_lib.location(job_dir)):
    store.claim_identity(STAGE, identity)
    trials = store.trials(STAGE)
    if not any(t.status == store_lib.COMPLETED for t in trials):
      _search(store, job_dir, args, template, prepared, settings, goal,
              trials)
      trials = store.trials(STAGE)
    summary = lambda p: search_spaces.materialize(
        space, search_spaces.dna_from_nas_params(space, p)).summary()
    print(leaderboard.table(trials, summary, goal.metric))
    print(leaderboard.best_report(trials))


def _search(store, job_dir, args, template, prepared, settings, goal,
            trials) -> None:
  """Trains (or resumes) the supernet, then records its result as a trial."""
  # pylint: disable=g-import-not-at-top  (TensorFlow)
  from official.core import train_utils
  from trainer.oneshot import search as oneshot
  from trainer.training import trial as trial_lib
  work_dir = os.path.join(job_dir, ONESHOT_DIR)
  print(f'one-shot search of {args.search_space} in {work_dir}: '
        f'{prepared.params.trainer.train_steps} steps', flush=True)
  run = oneshot.OneShotSearch(args.search_space, prepared, settings, work_dir)
  figures = run.run(lambda line: print(line, flush=True))
  if figures['final_train_loss'] is not None and not oneshot.learned(
      figures['final_train_loss'], prepared.params.task.model.num_classes):
    print(f'warning: the supernet\'s training loss '
          f'{figures["final_train_loss"]:.4f} is still at chance (ln classes '
          f'= {figures["chance_loss"]:.4f}): its accuracies rank nothing, so '
          'its result is no better than a random architecture; give it more '
          'steps (trainer.train_steps)', flush=True)
  best = run.policy.most_likely()
  nas_params_str = run.nas_params_str(best)
  metrics = {prepared.quality_metric: run.evaluate(best),
             objective_lib.FLOPS: run.cost(best),
             'quality_metric': prepared.quality_metric,
             'oneshot': figures}
  # A run killed after adding the trial left it running: it is this one.
  running = [t for t in trials if t.status == store_lib.RUNNING]
  trial = running[0] if running else store.add_trial(STAGE, nas_params_str)
  trial_dir = artifacts.trial_dir(job_dir, STAGE, trial.id)
  fileio.makedirs(trial_dir)
  # The trial dir a trial of this architecture leaves, its checkpoint
  # holding the supernet's weights.
  result = trial_lib.prepare(template.replace(nas_params_str=nas_params_str),
                             artifacts.data_dir(job_dir))
  fileio.write_text(os.path.join(trial_dir, artifacts.NAS_PARAMS_FILE),
                    nas_params_str)
  fileio.write_text(os.path.join(trial_dir, artifacts.ARCHITECTURE_FILE),
                    pg.to_json_str(result.spec, json_indent=1))
  train_utils.serialize_config(result.params, trial_dir)
  metrics['params'] = int(
      run.save_model(best, result.params, trial_dir).count_params())
  outcome.write_metrics(trial_dir, metrics)
  ranked = run.rank_samples(args.oneshot_rank_samples)
  fileio.write_text(os.path.join(job_dir, ONESHOT_DIR, RESULT_FILE), json.dumps({
      'search_space': args.search_space, 'trial_id': trial.id,
      'nas_params_str': nas_params_str, 'metrics': metrics,
      'policy': oneshot.policy_table(run), 'ranked_samples': ranked},
      indent=1))
  store.complete_trial(STAGE, trial.id, metrics, goal.reward(metrics))
  print(f'one-shot result: trial {trial.id}, {run.spec(best).summary()}: '
        f'{prepared.quality_metric} {metrics[prepared.quality_metric]:.4f} '
        f'with the supernet\'s weights, {metrics[objective_lib.FLOPS]:.4g} B '
        'multiply-adds', flush=True)
