"""What every mode that runs trials shares: the stage runner that wires a
trial spec, an objective, an algorithm and an executor into the controller.
"""

import contextlib
import functools
import random
from typing import Any, Callable, Dict, List, Optional

import pyglove as pg

import configs
import search_spaces
from trainer import algorithms
from trainer import artifacts
from trainer import fileio
from trainer import objective as objective_lib
from trainer import outcome
from trainer import spec as spec_lib
from trainer.controller import early_stopping
from trainer.controller import executors
from trainer.controller import leaderboard
from trainer.controller import search
from trainer.controller import store as store_lib
from trainer.controller import warm

# A trial's spec as the stage template gives it -> the spec it runs.
Customize = Callable[[store_lib.Trial, spec_lib.TrialSpec], spec_lib.TrialSpec]


class UsageError(ValueError):
  """A flag is missing or inconsistent."""


def job_dir(args) -> str:
  """--job_dir: an absolute path, or a URL whose store lives in --store_dir."""
  if not args.job_dir:
    raise UsageError('--job_dir is required')
  path = fileio.absolute(args.job_dir)
  if args.store_dir:
    store_lib.use_store_dir(path, args.store_dir)
  return path


def nas_params(args, flag: str = 'nas_params_str') -> str:
  """A required nas_params_str flag's JSON (read from its file if a path)."""
  if not getattr(args, flag):
    raise UsageError(f'--{flag} is required with --mode={args.mode}')
  return spec_lib.read_nas_params(getattr(args, flag), flag)


def runtime(args) -> spec_lib.Runtime:
  return spec_lib.Runtime(args.distribution_strategy, args.tpu,
                          args.mixed_precision, args.cpu_replicas,
                          args.accelerator)


def search_spec(args) -> spec_lib.TrialSpec:
  """The search stage's template as the flags describe it (no architecture
  yet)."""
  return spec_lib.TrialSpec(
      search_space=args.search_space, experiment=args.experiment,
      config_file=args.config_file, params_override=args.params_override,
      train_data=args.train_data, eval_data=args.eval_data, stage='search',
      seed=args.seed, runtime=runtime(args))


def stage_spec(args, identity: Dict[str, Any], search_space: str, stage: str,
               base_search_space: str = '',
               base_nas_params_str: str = '') -> spec_lib.TrialSpec:
  """A later stage's template: the search's experiment and data unless
  given; config and overrides of the stage's own (full-training defaults
  for a full-training stage)."""

  def inherited(flag: str) -> str:
    return args.value_if_given(flag, identity.get(flag, ''))

  full = artifacts.config_stage(stage) == 'train'
  return spec_lib.TrialSpec(
      search_space=search_space, experiment=inherited('experiment'),
      config_file=(args.train_config_file if full
                   else args.value_if_given('config_file')),
      params_override=(args.train_params_override if full
                       else inherited('params_override')),
      train_data=inherited('train_data'), eval_data=inherited('eval_data'),
      base_search_space=base_search_space,
      base_nas_params_str=base_nas_params_str, stage=stage, seed=args.seed,
      runtime=runtime(args))


def objective(args, quality_metric: str,
              multi_objective: bool) -> objective_lib.Objective:
  """The flags' objective; `quality_metric` is the task's, used unless
  --reward_metric names another."""
  return objective_lib.Objective(
      metric=args.reward_metric or quality_metric,
      targets={metric: getattr(args, flag)
               for flag, metric in objective_lib.TARGET_FLAGS.items()},
      exponent=args.reward_exponent, hard=args.reward_mode == 'hard',
      cost=(objective_lib.COSTS[args.multi_objective_cost]
            if multi_objective else ''))


def run_stage(args, stage_dir: str, template: spec_lib.TrialSpec,
              algorithm_name: str, max_trials: int,
              proposals: Optional[List[str]] = None,
              customize: Optional[Customize] = None,
              trial_flags: Callable[[store_lib.Trial], Dict[str, Any]] = (
                  lambda t: {}),
              identity_extra: Optional[Dict[str, Any]] = None,
              stopping=None,
              ) -> List[store_lib.Trial]:
  """Validates everything, then runs or resumes the stage `template.stage`
  of the job in `stage_dir`; returns its trials.

  With `proposals` (nas_params_str) the stage trains exactly those, in
  order, instead of searching. `customize(trial, spec)` changes a trial's
  spec; `trial_flags(trial)` adds flags to its command. `stopping`, an
  early-stopping rule (`check(trial_dir, trials)`, as
  early_stopping.MedianStopping), replaces --early_stopping's.
  """
  stage = template.stage
  if max_trials < 1:
    raise UsageError('--max_trials must be at least 1')
  if args.max_parallel_trials < 1:
    raise UsageError('--max_parallel_trials must be at least 1')
  if args.trial_memory_limit_mb is not None and args.trial_memory_limit_mb < 1:
    raise UsageError(f'--trial_memory_limit_mb={args.trial_memory_limit_mb}: '
                     'give a positive number of MB (or leave it out: no cap)')
  store_lib.check_writable(stage_dir)  # Built-in data is written there first.
  check_existing_store(stage_dir)  # Before built-in data is written.
  data_dir = artifacts.data_dir(stage_dir)
  space = search_spaces.get_search_space(template.search_space)
  if proposals is None:
    algorithm = algorithms.make_algorithm(
        algorithm_name, args.seed, args.population_size, args.tournament_size,
        architecture_key=functools.partial(search_spaces.architecture_key,
                                           space))
  else:
    algorithm = algorithms.FixedProposals(
        [search_spaces.dna_from_nas_params(space, p) for p in proposals])
  # Builds a config with a sample architecture: every flag, file and the data
  # are checked before the store is touched. TensorFlow loads only now: the
  # refusals above take a second, not its import.
  from trainer.training import trial as trial_lib  # pylint: disable=g-import-not-at-top
  if args.warm_trials and args.executor == 'local':
    warm.prepare_server()  # Before this process runs TensorFlow.
  sample = (proposals[0] if proposals else search_spaces.nas_params_from_dna(
      pg.random_dna(pg.dna_spec(space), random.Random(args.seed))))
  prepared = trial_lib.prepare(template.replace(nas_params_str=sample),
                               data_dir)
  template = template.replace(experiment=prepared.experiment,
                              config_file=prepared.config_file)
  goal = objective(args, prepared.quality_metric, algorithm.multi_objective)
  stopping = stopping or (None if proposals else
                          _early_stopping(args, prepared.params.trainer, goal))
  identity = {**template.identity(configs.text(prepared.config_file)),
              **goal.identity(), **_search_settings(args, algorithm_name),
              **(identity_extra or {})}
  executor = _executor(args)
  check_existing_store(stage_dir, stage, identity)
  store = store_lib.Store.open(stage_dir, create=True)
  # Closed however the stage ends: a refused resume leaves no -wal/-shm.
  with contextlib.closing(store), search.ControllerLock(
      store_lib.location(stage_dir)):
    store.claim_identity(stage, identity)

    def rerun(t, reason):
      store.restart_trial(stage, t.id)
      print(f'trial {t.id:>3}/{max_trials} re-running: {reason}', flush=True)

    def launch(t):
      spec = template.for_trial(t.id, t.nas_params_str)
      if customize:
        spec = customize(t, spec)
      return executor.start(
          spec.to_argv(stage_dir, t.id,
                       measure_latency=goal.needs_measurement(),
                       **trial_flags(t)),
          artifacts.trial_dir(stage_dir, stage, t.id),
          on_rerun=lambda reason: rerun(t, reason))

    budget = args.max_flops_multi_adds_billion

    def screen(nas_params_str):
      flops = trial_lib.estimate_flops(trial_lib.prepare(
          template.replace(nas_params_str=nas_params_str), data_dir))
      if flops is None or flops <= budget:
        return None
      return ({objective_lib.FLOPS: flops},
              f'estimated {flops:.4g} B multiply-adds exceed the budget '
              f'{budget:g} B')

    controller = search.Search(
        store, stage, space, algorithm, launch, goal,
        max_trials, args.max_failed_trials,
        progress=lambda line: print(line, flush=True),
        max_parallel_trials=args.max_parallel_trials,
        screen=screen if budget else None,
        early_stopping=stopping, skip_nan_error=args.skip_nan_error)
    print(f'{stage} {template.search_space} with {algorithm_name} in '
          f'{stage_dir}: {max_trials} trials', flush=True)
    trials = controller.run()
    print(leaderboard.table(trials, controller.summary, goal.metric))
    print(leaderboard.best_report(trials))
  return trials


def check_existing_store(stage_dir: str, stage: Optional[str] = None,
                         identity: Optional[Dict[str, Any]] = None) -> None:
  """Refuses a store this version cannot use, or a resume with a different
  identity, reading the store as it is: a refused command leaves its files
  (db, -wal, -shm) byte for byte as they were."""
  if not store_lib.exists(stage_dir):
    return
  store = store_lib.Store.open(stage_dir, read_only=True, untouched=True)
  with contextlib.closing(store):
    if identity is not None:
      store.check_identity(stage, identity)


def _search_settings(args, algorithm: str) -> Dict[str, Any]:
  """The identity's search settings besides the spec and the objective."""
  settings = {'algorithm': algorithm,
              'max_flops_multi_adds_billion': args.max_flops_multi_adds_billion,
              'early_stopping': args.early_stopping}
  if args.early_stopping != 'none':
    settings.update(early_stopping_step=args.early_stopping_step,
                    early_stopping_min_trials=args.early_stopping_min_trials)
  if algorithm in algorithms.EVOLUTION_SIZES:
    settings.update(population_size=args.population_size,
                    tournament_size=args.tournament_size)
  return settings


def _executor(args):
  """The --executor, checked and started (Ray connects or starts here)."""
  if args.executor == 'local':
    ray_only = [f'--{f}' for f in ('ray_address', 'cpus_per_trial')
                if args.given(f)]
    if ray_only:
      raise UsageError(
          f'{", ".join(ray_only)} only with --executor=ray (without '
          '--ray_address it starts a local Ray instance on this machine)')
    try:
      gpu_slots = executors.local_gpu_slots(args.gpus_per_trial)
    except ValueError as e:
      raise UsageError(str(e)) from None
    at_once = gpu_slots and gpu_slots.trials_at_once
    if at_once and at_once < args.max_parallel_trials:
      print(f'--max_parallel_trials={args.max_parallel_trials} but GPUs '
            f'{",".join(gpu_slots.gpus)} hold {at_once} trials at once: the '
            'others wait for a free GPU', flush=True)
    return executors.LocalExecutor(args.trial_timeout, gpu_slots,
                                   args.trial_memory_limit_mb,
                                   args.warm_trials)
  if args.cpus_per_trial <= 0 or (args.gpus_per_trial or 0) < 0:
    raise UsageError('--cpus_per_trial must be positive and --gpus_per_trial '
                     'not negative')
  try:
    import ray  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise UsageError('--executor=ray needs Ray: pip install '
                     '"nas-garden[ray]"') from None
  try:
    return executors.RayExecutor(
        args.ray_address, args.cpus_per_trial, args.gpus_per_trial,
        args.max_parallel_trials, args.trial_timeout,
        args.trial_memory_limit_mb, args.warm_trials)
  except (ConnectionError, RuntimeError) as e:
    raise UsageError(f'cannot use the Ray cluster at '
                     f'{args.ray_address or "a new local instance"}: '
                     f'{outcome.one_line(e)}') from None


def _early_stopping(args, trainer, goal: objective_lib.Objective):
  """The --early_stopping rule, checked against the config's evaluations."""
  if args.early_stopping == 'none':
    return None
  step = args.early_stopping_step or trainer.validation_interval
  if not 0 < trainer.validation_interval <= step < trainer.train_steps:
    raise UsageError(
        f'--early_stopping needs an evaluation at or after step {step} and '
        f'before the last (trainer.train_steps={trainer.train_steps}, '
        f'trainer.validation_interval={trainer.validation_interval})')
  return early_stopping.MedianStopping(step, goal.quality,
                                       args.early_stopping_min_trials)
