"""nas-garden command line: `python -m trainer.task --mode=...` (absl flags).

Modes:
  search           run (or resume) an architecture search in --job_dir
  train            full training of the --top_k (or named) search trials
  augment_search   run (or resume) an augmentation policy search for a fixed
                   architecture (--base_job_dir/--base_trial_id or
                   --base_search_space/--base_nas_params_str)
  augment_preview  draw augmented samples of a policy (--nas_params_str) as PNG
  pipeline         search, train, augmentation search, final model, export and
                   report in one resumable command
  export           the best (or a named) trial as SavedModel + TFLite
  report           report.html and TensorBoard HParams summaries of the job
  trial            run one trial from --nas_params_str, as a cloud training job
                   would
  list             print the leaderboard of a --stage of --job_dir
  make_data        convert a COCO JSON + image folder into Model Garden
                   TFRecords
  proxy_model_selection  shrink a sampled pool to a reference set spread over
                   accuracy and cost, training in rounds of growing budgets
  proxy_variance   train one model several times: variance and smoothness of
                   the proxy
  proxy_search     which candidate proxy ranks the reference set as full
                   training does (Kendall tau), and the cheapest that passes
"""

import json
import os
import re
import random
import shutil
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from absl import app
from absl import flags
import pyglove as pg

from proxy_tasks import candidates as candidates_lib
from proxy_tasks import model_selection
from proxy_tasks import proxy_search
from proxy_tasks import reference as reference_lib
from proxy_tasks import variance
import search_spaces
from trainer import algorithms
from trainer import artifacts
from trainer.controller import early_stopping
from trainer.controller import executors
from trainer.controller import leaderboard
from trainer.controller import reward as reward_lib
from trainer.controller import search
from trainer.controller import store as store_lib

PROCESS_START = time.time()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Before TensorFlow loads.

# --multi_objective_cost -> the metric trials report for it.
MULTI_OBJECTIVE_COSTS = {'flops': 'multi_add_flops_billion',
                         'latency': 'latency_ms', 'memory': 'memory_mb'}
MODES = ('search', 'train', 'augment_search', 'augment_preview', 'pipeline',
         'export', 'report', 'trial', 'list', 'make_data',
         'proxy_model_selection', 'proxy_variance', 'proxy_search')
STAGES = tuple(artifacts.STAGE_DIRS)
# --distribution_strategy: Model Garden's runtime strategies ('' keeps the
# config's).
RUNTIME_STRATEGIES = ('', 'one_device', 'mirrored', 'multi_worker_mirrored',
                      'tpu')

flags.DEFINE_enum('mode', 'search', MODES, 'What to run.')
flags.DEFINE_string('job_dir', None, 'Directory of the job: store, trials, data.')
flags.DEFINE_string('search_space', 'mnasnet',
                    'A prebuilt space name or package.module:function.')
flags.DEFINE_string('experiment', '',
                    'Registered Model Garden experiment; default: the one the '
                    'space\'s architectures train in.')
flags.DEFINE_string('config_file', '',
                    'Experiment YAML: a path or a shipped config name; default: '
                    'the space\'s tiny CPU search config.')
flags.DEFINE_string('params_override', '',
                    'Overrides applied after --config_file: k=v pairs '
                    '(a.b=1,c=2) or a YAML/JSON mapping.')
flags.DEFINE_string('train_data', '', 'Glob of training TFRecords (Model '
                    'Garden tf.Example format); default: built-in data.')
flags.DEFINE_string('eval_data', '', 'Glob of validation TFRecords.')
flags.DEFINE_integer('max_trials', 10, 'Trials in the search, in total.')
flags.DEFINE_integer('max_failed_trials', 3,
                     'Stop the search once this many trials failed (0: never).')
flags.DEFINE_string('algorithm', algorithms.DEFAULT_ALGORITHM,
                    ' | '.join(algorithms.ALGORITHMS) + ' (the default '
                    'measured best on NAS-Bench-201, bench/nasbench201.py).')
flags.DEFINE_integer('population_size', None,
                     'Evolution and NSGA-II population; default per algorithm.')
flags.DEFINE_integer('tournament_size', None,
                     'Evolution tournament; default per algorithm.')
flags.DEFINE_integer('seed', 0, 'Seeds the algorithm and every trial.')
flags.DEFINE_float('target_flops_multi_adds_billion', 0.0,
                   'FLOPs target (billions of multiply-adds) of the MnasNet '
                   'reward; 0: none.')
flags.DEFINE_float('target_device_latency_ms', 0.0,
                   'Latency target of the MnasNet reward, measured on this '
                   'machine from each trained model\'s batch-1 SavedModel; '
                   '0: none.')
flags.DEFINE_float('target_memory_mb', 0.0,
                   'Memory target of the MnasNet reward (peak while serving '
                   'one image); 0: none.')
flags.DEFINE_float('max_flops_multi_adds_billion', 0.0,
                   'Hard budget: candidates whose FLOPs, estimated from the '
                   'untrained model, exceed it are recorded as infeasible and '
                   'not trained; 0: none.')
flags.DEFINE_enum('multi_objective_cost', 'flops', list(MULTI_OBJECTIVE_COSTS),
                  'nsga2: the cost traded against the reward metric.')
flags.DEFINE_enum('early_stopping', 'none', early_stopping.RULES,
                  'median: stop a trial whose metric at --early_stopping_step '
                  'is below the median of finished trials there.')
flags.DEFINE_integer('early_stopping_step', 0,
                     'Train step at which the rule applies; default the first '
                     'evaluation (trainer.validation_interval).')
flags.DEFINE_integer('early_stopping_min_trials', 3,
                     'Finished trials needed before the rule stops any.')
flags.DEFINE_bool('measure_latency', False,
                  '--mode=trial: measure latency and memory after training.')
flags.DEFINE_integer('top_k', 3, '--mode=train|pipeline: train the k best '
                     'search trials.')
flags.DEFINE_string('retrain_search_job_dir', '',
                    '--mode=train: the search job whose trials are trained; '
                    'default --job_dir.')
flags.DEFINE_string('retrain_search_job_trials', '',
                    '--mode=train: search trial ids to train, e.g. 3,7 '
                    '(instead of --top_k).')
flags.DEFINE_bool('retrain_use_search_job_checkpoint', False,
                  '--mode=train: warm-start the searched component from its '
                  'search trial\'s checkpoint.')
flags.DEFINE_string('train_config_file', '',
                    'Full-training config (train, pipeline, final model, '
                    'model selection); default the space\'s train_cpu config.')
flags.DEFINE_string('train_params_override', '',
                    '--mode=train|pipeline: overrides of the full-training '
                    'config (--params_override stays the search\'s).')
flags.DEFINE_integer('augment_max_trials', 0,
                     '--mode=pipeline: augmentation trials; default the whole '
                     'RandAugment grid.')
flags.DEFINE_string('export_dir', '',
                    '--mode=export: where to write (default <job_dir>/export); '
                    '--mode=trial: retrain the model exported there.')
flags.DEFINE_integer('search_trial_id', 0,
                     '--mode=trial: the search trial a full training retrains '
                     '(recorded with its metrics).')
flags.DEFINE_string('init_checkpoint', '',
                    '--mode=trial: warm-start the searched component from '
                    'this checkpoint (file or dir).')
flags.DEFINE_float('reward_exponent', 1.0,
                   'w of the MnasNet reward acc * (T/m)^w.')
flags.DEFINE_enum('reward_mode', 'hard', ['hard', 'soft'],
                  'hard: the cost factor is capped at 1; soft: it is not.')
flags.DEFINE_string('nas_params_str', '',
                    '--mode=trial: the architecture, as Vertex AI NAS JSON or '
                    'a path to a .json file holding it.')
flags.DEFINE_integer('trial_id', 0, '--mode=trial: id of the trial dir; '
                     'default $CLOUD_ML_TRIAL_ID or 1.')
flags.DEFINE_integer('max_parallel_trials', 1,
                     'Trials run at once (local subprocesses or Ray tasks).')
flags.DEFINE_enum('executor', 'local', ['local', 'ray'],
                  'Where trials run: subprocesses of this machine, or Ray '
                  'tasks (pip install nas-garden[ray]).')
flags.DEFINE_string('ray_address', '',
                    '--executor=ray: the cluster ("auto", "ray://host:port"); '
                    'empty starts a local Ray instance.')
flags.DEFINE_float('cpus_per_trial', 1.0, '--executor=ray: CPUs each trial '
                   'task holds.')
flags.DEFINE_float('gpus_per_trial', 0.0, '--executor=ray: GPUs each trial '
                   'task holds (Ray sets its CUDA_VISIBLE_DEVICES).')
flags.DEFINE_bool('skip_nan_error', True,
                  'A trial whose loss becomes NaN is recorded infeasible (its '
                  'reward 0, not counted by --max_failed_trials) instead of '
                  'failed.')
flags.DEFINE_enum('distribution_strategy', '', list(RUNTIME_STRATEGIES),
                  'tf.distribute strategy inside each trial, set as Model '
                  'Garden\'s runtime.distribution_strategy; empty: the '
                  'config\'s. mirrored uses every GPU the trial sees.')
flags.DEFINE_string('tpu', '', 'With --distribution_strategy=tpu: the TPU '
                    'address (runtime.tpu).')
flags.DEFINE_bool('mixed_precision', False,
                  'Mixed precision inside trials: float16 with dynamic loss '
                  'scaling on GPUs, bfloat16 on TPUs and CPUs.')
flags.DEFINE_integer('cpu_replicas', 0,
                     'With mirrored strategies on a machine without GPUs: '
                     'split the CPU into this many logical devices, one '
                     'replica each (data parallelism without accelerators).')
flags.DEFINE_string('reward_metric', '',
                    'Metric the reward is computed from (e.g. AP50); default: '
                    'the task\'s (top_1_accuracy, AP, miou).')
flags.DEFINE_string('coco_annotation_file', '', '--mode=make_data: COCO JSON.')
flags.DEFINE_string('coco_image_dir', '', '--mode=make_data: its images.')
flags.DEFINE_string('output_prefix', '', '--mode=make_data: TFRecord prefix.')
flags.DEFINE_integer('num_shards', 1, '--mode=make_data: TFRecord shards.')
flags.DEFINE_float('trial_timeout', 0.0,
                   'Seconds before a trial is stopped and failed (0: none).')
flags.DEFINE_enum('stage', 'search', STAGES,
                  '--mode=trial|list: the stage whose trial dir or leaderboard '
                  'is meant.')
flags.DEFINE_string('base_job_dir', '',
                    '--mode=augment_search: job whose search trial fixes the '
                    'architecture; default --job_dir.')
flags.DEFINE_integer('base_trial_id', 0,
                     '--mode=augment_search: that trial\'s id; default its '
                     'best completed trial.')
flags.DEFINE_string('base_search_space', '',
                    'Space of the fixed architecture of an augmentation trial.')
flags.DEFINE_string('base_nas_params_str', '',
                    'The fixed architecture of an augmentation trial: Vertex '
                    'JSON or a .json file.')
flags.DEFINE_string('output_path', '',
                    '--mode=augment_preview: PNG path; default '
                    '<job_dir>/augment_preview.png.')
flags.DEFINE_integer('preview_images', 4,
                     '--mode=augment_preview: images (rows) drawn.')
flags.DEFINE_integer('preview_variants', 4,
                     '--mode=augment_preview: augmented copies of each image.')
flags.DEFINE_integer('proxy_start_models', 30,
                     '--mode=proxy_model_selection: architectures sampled '
                     '(with --seed) into the pool.')
flags.DEFINE_integer('proxy_final_models', 10,
                     '--mode=proxy_model_selection: models trained to '
                     'completion, the reference set.')
flags.DEFINE_integer('proxy_variance_runs', 5,
                     '--mode=proxy_variance: trainings of the model.')
flags.DEFINE_float('proxy_max_coefficient_of_variation',
                   variance.MAX_COEFFICIENT_OF_VARIATION,
                   '--mode=proxy_variance: the largest std/mean of the final '
                   'accuracies that passes.')
flags.DEFINE_float('proxy_max_smoothness', variance.MAX_SMOOTHNESS,
                   '--mode=proxy_variance: the largest smoothness score '
                   '(summed drops of the learning curve) that passes.')
flags.DEFINE_string('proxy_candidates', '',
                    '--mode=proxy_search: candidate proxies, a JSON/YAML list '
                    'of {name, params_override, train_data_fraction} or a '
                    'file holding one; default: built-in candidates around '
                    'the proxy config.')
flags.DEFINE_float('proxy_correlation_threshold',
                   proxy_search.DEFAULT_THRESHOLD,
                   '--mode=proxy_search: the Kendall tau with full-training '
                   'accuracy a candidate must reach.')
flags.DEFINE_string('proxy_reference', '',
                    '--mode=proxy_search: full-training accuracies, a CSV/JSON '
                    'file (nas_params_str, accuracy[, latency_ms]) or a job '
                    'dir (its model selection, else its train stage); '
                    'default --job_dir.')

FLAGS = flags.FLAGS


class UsageError(ValueError):
  """A flag is missing or inconsistent."""


def _require_job_dir() -> str:
  if not FLAGS.job_dir:
    raise UsageError('--job_dir is required')
  return os.path.abspath(FLAGS.job_dir)


def _trial_inputs(job_dir: str, base_search_space: str = '',
                  base_nas_params_str: str = ''):
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return trial.TrialInputs(
      search_space=FLAGS.search_space, experiment=FLAGS.experiment,
      config_file=FLAGS.config_file, params_override=FLAGS.params_override,
      train_data=FLAGS.train_data, eval_data=FLAGS.eval_data,
      data_dir=artifacts.data_dir(job_dir),
      base_search_space=base_search_space,
      base_nas_params_str=base_nas_params_str,
      config_stage=artifacts.config_stage(FLAGS.stage),
      init_checkpoint=FLAGS.init_checkpoint)


def _read_nas_params(value: str, flag: str = 'nas_params_str') -> str:
  if not value:
    raise UsageError(f'--{flag} is required with --mode={FLAGS.mode}')
  if value.lstrip().startswith('{'):
    return value
  if not os.path.isfile(value):
    raise UsageError(f'--{flag} is neither JSON nor a file: {value}')
  with open(value) as f:
    return f.read()


def _apply_export(export_dir: str) -> None:
  """--export_dir: retraining an exported model takes its space, architecture,
  experiment, config and seed, unless given as flags."""
  from trainer.training import export  # pylint: disable=g-import-not-at-top  (TensorFlow)
  for flag, value in export.retrain_inputs(export_dir).items():
    if not FLAGS[flag].present:
      FLAGS[flag].value = value


def _given_base_nas_params() -> str:
  """--base_nas_params_str read from a file if need be; '' when not given."""
  if not FLAGS.base_nas_params_str:
    return ''
  return _read_nas_params(FLAGS.base_nas_params_str, 'base_nas_params_str')


def run_trial_mode() -> None:
  """One trial; on any failure writes error.json for the controller."""
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  job_dir = _require_job_dir()
  trial_id = FLAGS.trial_id or int(os.environ.get('CLOUD_ML_TRIAL_ID', '1'))
  trial_dir = artifacts.trial_dir(job_dir, FLAGS.stage, trial_id)
  try:
    trial.split_cpu(FLAGS.cpu_replicas)
    if FLAGS.export_dir:
      _apply_export(FLAGS.export_dir)
    inputs = _trial_inputs(job_dir, FLAGS.base_search_space,
                           _given_base_nas_params())
    prepared = trial.prepare(inputs, _read_nas_params(FLAGS.nas_params_str),
                             FLAGS.seed, _runtime())
    metrics = trial.run(
        prepared, trial_dir, started_at=PROCESS_START,
        measure_latency=FLAGS.measure_latency,
        extra_metrics=({'search_trial_id': FLAGS.search_trial_id}
                       if FLAGS.search_trial_id else None))
  except Exception as e:
    os.makedirs(trial_dir, exist_ok=True)
    error = one_line(e)
    if isinstance(e, trial.tf.errors.ResourceExhaustedError):
      error = f'out of memory: {error}'
    # The platform's rule: an error whose text holds "NaN" is a NaN error.
    artifacts.write_text(os.path.join(trial_dir, artifacts.ERROR_FILE),
                         json.dumps({'error': error, 'nan_loss': 'NaN' in error}))
    raise
  shown = {k: v for k, v in metrics.items() if k != 'evaluations'}
  print(json.dumps(shown, sort_keys=True), flush=True)
  # Metrics, checkpoints and summaries are on disk; TensorFlow's interpreter
  # teardown would add about 6 s to every trial for nothing.
  sys.stderr.flush()
  os._exit(0)  # pylint: disable=protected-access


def _runtime():
  """The trial's runtime flags (trainer.training.trial.Runtime)."""
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return trial.Runtime(FLAGS.distribution_strategy, FLAGS.tpu,
                       FLAGS.mixed_precision, FLAGS.cpu_replicas)


def _search_identity(inputs, prepared, algorithm: str) -> dict:
  """What a resumed search must share with the run that started it."""
  with open(prepared.config_file) as f:
    config_text = f.read()
  identity = {
      'search_space': inputs.search_space, 'algorithm': algorithm,
      'seed': FLAGS.seed, 'experiment': prepared.experiment,
      'config': config_text, 'params_override': inputs.params_override,
      'train_data': inputs.train_data, 'eval_data': inputs.eval_data,
      'reward_exponent': FLAGS.reward_exponent, 'reward_mode': FLAGS.reward_mode,
      'reward_metric': FLAGS.reward_metric,
      'max_flops_multi_adds_billion': FLAGS.max_flops_multi_adds_billion,
      'early_stopping': FLAGS.early_stopping,
  }
  identity.update({flag: FLAGS[flag].value for flag in reward_lib.COST_METRICS})
  if FLAGS.early_stopping != 'none':
    identity.update(early_stopping_step=FLAGS.early_stopping_step,
                    early_stopping_min_trials=FLAGS.early_stopping_min_trials)
  if algorithm == 'nsga2':
    identity.update(multi_objective_cost=FLAGS.multi_objective_cost)
  if inputs.base_search_space:
    identity.update(base_search_space=inputs.base_search_space,
                    base_nas_params_str=inputs.base_nas_params_str)
  if algorithm in algorithms.EVOLUTION_SIZES:
    identity.update(population_size=FLAGS.population_size,
                    tournament_size=FLAGS.tournament_size)
  return identity


def _run_search(stage: str, job_dir: str, inputs, algorithm_name: str,
                max_trials: int, proposals: Optional[List[str]] = None,
                trial_flags: Callable[[Any], Dict[str, Any]] = lambda t: {},
                identity_extra: Optional[Dict[str, Any]] = None):
  """Validates everything, then runs or resumes one stage's search.

  With `proposals` (nas_params_str) the stage trains exactly those, in order,
  instead of searching; `trial_flags(trial)` adds flags to a trial's command.
  Returns the stage's trials.
  """
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  if max_trials < 1:
    raise UsageError('--max_trials must be at least 1')
  store_lib.check_writable(job_dir)  # Built-in data is written there first.
  space = search_spaces.get_search_space(inputs.search_space)
  if proposals is None:
    algorithm = algorithms.make_algorithm(
        algorithm_name, FLAGS.seed, FLAGS.population_size,
        FLAGS.tournament_size)
  else:
    algorithm = algorithms.FixedProposals(
        [search_spaces.dna_from_nas_params(space, p) for p in proposals])
  if FLAGS.max_parallel_trials < 1:
    raise UsageError('--max_parallel_trials must be at least 1')
  reward = reward_lib.Reward(
      targets={metric: FLAGS[flag].value
               for flag, metric in reward_lib.COST_METRICS.items()},
      exponent=FLAGS.reward_exponent, hard=FLAGS.reward_mode == 'hard',
      metric=FLAGS.reward_metric)
  cost_metric = MULTI_OBJECTIVE_COSTS[FLAGS.multi_objective_cost]
  measure_latency = bool(
      FLAGS.target_device_latency_ms or FLAGS.target_memory_mb or
      (algorithm.multi_objective and FLAGS.multi_objective_cost != 'flops'))
  # Builds a config with a sample architecture: every flag, file and the data
  # are checked before the store is touched.
  sample = (proposals[0] if proposals else search_spaces.nas_params_from_dna(
      pg.random_dna(pg.dna_spec(space), random.Random(FLAGS.seed))))
  prepared = trial.prepare(inputs, sample, runtime=_runtime())
  stopping = (None if proposals else
              _early_stopping(prepared.params.trainer, reward))
  identity = _search_identity(inputs, prepared, algorithm_name)
  identity.update(identity_extra or {})
  executor = _executor()
  store = store_lib.Store.open(job_dir, create=True)
  with search.ControllerLock(job_dir):
    store.claim_identity(stage, identity)

    def rerun(t, reason):
      store.restart_trial(stage, t.id)
      print(f'trial {t.id:>3}/{max_trials} re-running: {reason}', flush=True)

    def launch(t):
      return executor.start(
          executors.trial_argv({
              'search_space': inputs.search_space,
              'experiment': prepared.experiment,
              'config_file': prepared.config_file,
              'params_override': inputs.params_override,
              'train_data': inputs.train_data, 'eval_data': inputs.eval_data,
              'base_search_space': inputs.base_search_space,
              'base_nas_params_str': inputs.base_nas_params_str,
              'job_dir': job_dir, 'stage': stage, 'trial_id': t.id,
              'seed': FLAGS.seed * 100003 + t.id,
              'nas_params_str': t.nas_params_str,
              'measure_latency': measure_latency,
              'distribution_strategy': FLAGS.distribution_strategy,
              'tpu': FLAGS.tpu, 'mixed_precision': FLAGS.mixed_precision,
              'cpu_replicas': FLAGS.cpu_replicas,
              **trial_flags(t),
          }),
          artifacts.trial_dir(job_dir, stage, t.id),
          on_rerun=lambda reason: rerun(t, reason))

    def feedback_value(status, metrics, trial_reward):
      """NSGA-II gets (quality, -cost); an infeasible candidate, untrained,
      gets (0, -cost) where its cost is known and nothing otherwise."""
      if not algorithm.multi_objective:
        return trial_reward
      if status == store_lib.INFEASIBLE:
        cost = (metrics or {}).get(cost_metric)
        return None if cost is None else (0.0, -cost)
      return reward_lib.objectives(metrics, reward, cost_metric)

    budget = FLAGS.max_flops_multi_adds_billion

    def screen(nas_params_str):
      flops = trial.estimate_flops(trial.prepare(inputs, nas_params_str))
      if flops is None or flops <= budget:
        return None
      return ({'multi_add_flops_billion': flops},
              f'estimated {flops:.4g} B multiply-adds exceed the budget '
              f'{budget:g} B')

    controller = search.Search(
        store, stage, space, algorithm, launch, reward,
        max_trials, FLAGS.max_failed_trials,
        progress=lambda line: print(line, flush=True),
        max_parallel_trials=FLAGS.max_parallel_trials,
        feedback_value=feedback_value, screen=screen if budget else None,
        early_stopping=stopping, skip_nan_error=FLAGS.skip_nan_error)
    print(f'{stage} {inputs.search_space} with {algorithm_name} in {job_dir}: '
          f'{max_trials} trials', flush=True)
    trials = controller.run()
    print(leaderboard.table(trials, controller.summary))
    print(leaderboard.best_report(trials))
  return trials


def _executor():
  """The --executor, checked and started (Ray connects or starts here)."""
  if FLAGS.executor == 'local':
    ray_only = [f'--{f}' for f in ('ray_address', 'cpus_per_trial',
                                   'gpus_per_trial') if FLAGS[f].present]
    if ray_only:
      raise UsageError(
          f'{", ".join(ray_only)} only with --executor=ray (without '
          '--ray_address it starts a local Ray instance on this machine)')
    return executors.LocalExecutor(FLAGS.trial_timeout)
  if FLAGS.cpus_per_trial <= 0 or FLAGS.gpus_per_trial < 0:
    raise UsageError('--cpus_per_trial must be positive and --gpus_per_trial '
                     'not negative')
  try:
    import ray  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise UsageError('--executor=ray needs Ray: pip install '
                     '"nas-garden[ray]"') from None
  try:
    return executors.RayExecutor(
        FLAGS.ray_address, FLAGS.cpus_per_trial, FLAGS.gpus_per_trial,
        FLAGS.max_parallel_trials, FLAGS.trial_timeout)
  except (ConnectionError, RuntimeError) as e:
    raise UsageError(f'cannot use the Ray cluster at '
                     f'{FLAGS.ray_address or "a new local instance"}: '
                     f'{one_line(e)}') from None


def _early_stopping(trainer, reward):
  """The --early_stopping rule, checked against the config's evaluations."""
  if FLAGS.early_stopping == 'none':
    return None
  step = FLAGS.early_stopping_step or trainer.validation_interval
  if not 0 < trainer.validation_interval <= step < trainer.train_steps:
    raise UsageError(
        f'--early_stopping needs an evaluation at or after step {step} and '
        f'before the last (trainer.train_steps={trainer.train_steps}, '
        f'trainer.validation_interval={trainer.validation_interval})')
  return early_stopping.MedianStopping(step, reward.quality,
                                       FLAGS.early_stopping_min_trials)


def run_search_mode() -> None:
  job_dir = _require_job_dir()
  _run_search('search', job_dir, _trial_inputs(job_dir), FLAGS.algorithm,
              FLAGS.max_trials)


def _base_architecture(job_dir: str, trial_id: int):
  """(space, nas_params_str, search identity or {}) of the fixed architecture.

  From --base_search_space/--base_nas_params_str, else from a trial of the
  search stage of --base_job_dir (default --job_dir): `trial_id` or the best
  completed one.
  """
  if FLAGS.base_nas_params_str:
    if FLAGS.base_job_dir or trial_id:
      raise UsageError('give --base_nas_params_str or --base_job_dir/'
                       '--base_trial_id, not both')
    if not FLAGS.base_search_space:
      raise UsageError('--base_search_space is required with '
                       '--base_nas_params_str')
    return FLAGS.base_search_space, _given_base_nas_params(), {}
  base_job_dir = os.path.abspath(FLAGS.base_job_dir or job_dir)
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


def _augment_stage(job_dir: str, base_trial_id: int, max_trials: int,
                   space: str = '', algorithm: str = ''):
  """Searches an augmentation policy for one fixed architecture; returns
  (the augmentation space, the stage's trials).

  Experiment, config, overrides and data default to the base search's, so the
  policy is searched on the setting the architecture was found in. The space
  defaults to the task's RandAugment, searched whole by grid without
  `max_trials`; other algorithms get --max_trials.
  """
  base_space, base_params, base = _base_architecture(job_dir, base_trial_id)
  experiment = (FLAGS.experiment if FLAGS['experiment'].present
                else base.get('experiment', ''))
  if not space:
    task = 'segmentation' if 'segmentation' in experiment else 'detection'
    space = f'randaugment_{task}'
  if not search_spaces.augmentation_task(space):
    augmentation_spaces = [s for s in search_spaces.list_search_spaces()
                           if search_spaces.augmentation_task(s)]
    raise UsageError(f'--search_space={space} is not an augmentation space; '
                     f'valid: {", ".join(augmentation_spaces)}')
  inputs = _stage_inputs(job_dir, base, space, 'search', base_space,
                         base_params)
  if not FLAGS['config_file'].present and base:
    # The base search's config, as it ran: a copy in this job dir, so the
    # stage's identity does not hang on the base job's files.
    config_file = os.path.join(job_dir, 'augment_search_base_config.yaml')
    os.makedirs(job_dir, exist_ok=True)
    artifacts.write_text(config_file, base['config'])
    inputs = inputs._replace(config_file=config_file)
  algorithm = algorithm or ('grid' if space.startswith('randaugment')
                            else algorithms.DEFAULT_ALGORITHM)
  if not max_trials:
    max_trials = (pg.dna_spec(search_spaces.get_search_space(space)).space_size
                  if algorithm == 'grid' else FLAGS.max_trials)
  return space, _run_search('augment_search', job_dir, inputs, algorithm,
                            max_trials)


def run_augment_search_mode() -> None:
  given = lambda flag: FLAGS[flag].value if FLAGS[flag].present else ''
  _augment_stage(_require_job_dir(), FLAGS.base_trial_id,
                 FLAGS.max_trials if FLAGS['max_trials'].present else 0,
                 given('search_space'), given('algorithm'))


def _chosen_search_trials(job_dir: str):
  """(search job dir, its search identity, the search trials to train):
  --retrain_search_job_trials, else the --top_k best."""
  search_dir = os.path.abspath(FLAGS.retrain_search_job_dir or job_dir)
  store = store_lib.Store.open(search_dir, read_only=True)
  identity = store.job_identity('search')
  if identity is None:
    raise UsageError(f'{search_dir} has no architecture search to retrain')
  if FLAGS.retrain_search_job_trials:
    try:
      ids = [int(i) for i in FLAGS.retrain_search_job_trials.split(',')]
    except ValueError:
      raise UsageError('--retrain_search_job_trials must be trial ids, e.g. '
                       f'3,7 (got {FLAGS.retrain_search_job_trials!r})') from None
    chosen = [store.trial('search', i) for i in ids]
    for t in chosen:
      if t.status != store_lib.COMPLETED:
        raise UsageError(f'search trial {t.id} of {search_dir} is {t.status}, '
                         'not completed')
  else:
    if FLAGS.top_k < 1:
      raise UsageError('--top_k must be at least 1')
    chosen = leaderboard.ranked(
        [t for t in store.trials('search') if t.status == store_lib.COMPLETED]
    )[:FLAGS.top_k]
    if not chosen:
      raise UsageError(f'{search_dir} has no completed search trial to train')
  return search_dir, identity, chosen


def _stage_inputs(job_dir: str, identity: dict, search_space: str,
                  config_stage: str, base_search_space: str = '',
                  base_nas_params_str: str = ''):
  """A later stage's trial inputs: the search's experiment and data unless
  given; config and overrides of the stage's own (full-training defaults)."""
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)

  def inherited(flag: str) -> str:
    return FLAGS[flag].value if FLAGS[flag].present else identity.get(flag, '')

  return trial.TrialInputs(
      search_space=search_space, experiment=inherited('experiment'),
      config_file=(FLAGS.train_config_file if config_stage == 'train'
                   else FLAGS.config_file if FLAGS['config_file'].present
                   else ''),
      params_override=(FLAGS.train_params_override if config_stage == 'train'
                       else inherited('params_override')),
      train_data=inherited('train_data'), eval_data=inherited('eval_data'),
      data_dir=artifacts.data_dir(job_dir),
      base_search_space=base_search_space,
      base_nas_params_str=base_nas_params_str, config_stage=config_stage)


def _train_stage(job_dir: str):
  """Full training of chosen search trials (stage 'train'); returns it."""
  search_dir, identity, chosen = _chosen_search_trials(job_dir)
  inputs = _stage_inputs(job_dir, identity, identity['search_space'], 'train')
  ids = [t.id for t in chosen]

  def trial_flags(t):
    search_id = ids[t.id - 1]
    flags_ = {'search_trial_id': search_id}
    if FLAGS.retrain_use_search_job_checkpoint:
      flags_['init_checkpoint'] = artifacts.trial_dir(search_dir, 'search',
                                                      search_id)
    return flags_

  return _run_search(
      'train', job_dir, inputs, 'fixed', len(chosen),
      proposals=[t.nas_params_str for t in chosen], trial_flags=trial_flags,
      identity_extra={
          'search_job_dir': search_dir, 'search_trial_ids': ids,
          'warm_start': FLAGS.retrain_use_search_job_checkpoint})


def run_train_mode() -> None:
  _train_stage(_require_job_dir())


def _export(job_dir: str) -> str:
  """Exports --stage/--trial_id (default: the best final model) to
  --export_dir (default <job_dir>/export); returns the export dir."""
  from trainer.training import export  # pylint: disable=g-import-not-at-top  (TensorFlow)
  if FLAGS['stage'].present or FLAGS.trial_id:
    if not FLAGS.trial_id:
      raise UsageError('--trial_id is required with --stage in --mode=export')
    stage, trial_id = FLAGS.stage, FLAGS.trial_id
  else:
    stage, trial_id = export.best_trial(job_dir)
  export_dir = os.path.abspath(FLAGS.export_dir or
                               os.path.join(job_dir, 'export'))
  summary = export.export_trial(job_dir, stage, trial_id, export_dir)
  print(f'exported {stage} trial {trial_id} to {export_dir}: saved_model/, '
        f'tflite: {summary["tflite"]}', flush=True)
  return export_dir


def run_export_mode() -> None:
  _export(_require_job_dir())


def run_report_mode() -> None:
  from trainer import report  # pylint: disable=g-import-not-at-top
  job_dir = _require_job_dir()
  store_lib.Store.open(job_dir, read_only=True)  # A clear error if no job.
  print(f'wrote {report.write_hparams_summaries(job_dir)} (TensorBoard)')
  print(f'report: {report.write_report(job_dir)}')


def run_pipeline_mode() -> None:
  """search -> train top-k -> augmentation search on the best -> the final
  model (full training with the best policy) -> export and report. Each stage
  resumes from the store, so re-running the command continues the pipeline.
  """
  job_dir = _require_job_dir()
  print('== 1/5 search', flush=True)
  run_search_mode()
  print(f'== 2/5 train the top {FLAGS.top_k}', flush=True)
  trained = _train_stage(job_dir)
  best = leaderboard.best(trained)
  if best is None:
    raise search.SearchFailed('no trial of the train stage completed')
  identity = store_lib.Store.open(job_dir, read_only=True).job_identity(
      'search')
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  task = trial.TASK_FAMILIES[identity['experiment']].name
  if task not in search_spaces.AUGMENTATION_TASKS:
    print('== 3/5 augmentation search: skipped (no augmentation space for '
          f'{identity["experiment"]})', flush=True)
    print('== 4/5 final model: the best trained trial', flush=True)
  else:
    search_id = best.metrics['search_trial_id']
    print(f'== 3/5 augmentation search for search trial {search_id} (best '
          f'after full training)', flush=True)
    space, augmented = _augment_stage(job_dir, search_id,
                                      FLAGS.augment_max_trials)
    policy = leaderboard.best(augmented)
    if policy is None:
      raise search.SearchFailed('no augmentation trial completed')
    print('== 4/5 final model: full training with the best policy', flush=True)
    inputs = _stage_inputs(job_dir, identity, space, 'train',
                           identity['search_space'], best.nas_params_str)
    _run_search('final', job_dir, inputs, 'fixed', 1,
                proposals=[policy.nas_params_str],
                trial_flags=lambda t: {'search_trial_id': search_id})
  print('== 5/5 export and report', flush=True)
  _export(job_dir)
  run_report_mode()


def run_augment_preview_mode() -> None:
  """A PNG grid: each row an image, then augmented copies with boxes/masks."""
  from augment import preview  # pylint: disable=g-import-not-at-top  (TensorFlow)
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  job_dir = _require_job_dir()
  task = search_spaces.augmentation_task(FLAGS.search_space)
  if not task:
    raise UsageError(f'--search_space={FLAGS.search_space} is not an '
                     'augmentation space')
  nas_params_str = _read_nas_params(FLAGS.nas_params_str)
  if FLAGS.preview_images < 1 or FLAGS.preview_variants < 1:
    raise UsageError('--preview_images and --preview_variants must be >= 1')
  space = search_spaces.get_search_space(FLAGS.search_space)
  policy_spec = search_spaces.materialize(
      space, search_spaces.dna_from_nas_params(space, nas_params_str))
  params = trial.data_config(_trial_inputs(job_dir), task)
  path = FLAGS.output_path or os.path.join(job_dir, 'augment_preview.png')
  preview.write_preview(
      path, policy_spec, task, params, FLAGS.preview_images,
      FLAGS.preview_variants, FLAGS.seed)
  print(f'wrote {path}: {FLAGS.preview_images} images x '
        f'{FLAGS.preview_variants} augmented copies of '
        f'{search_spaces.architecture_summary(policy_spec)}')


def run_list_mode() -> None:
  store = store_lib.Store.open(_require_job_dir(), read_only=True)
  identity = store.job_identity(FLAGS.stage) or {}
  space = search_spaces.get_search_space(
      identity.get('search_space', FLAGS.search_space))

  def summarize(nas_params_str):
    return search_spaces.architecture_summary(search_spaces.materialize(
        space, search_spaces.dna_from_nas_params(space, nas_params_str)))

  trials = store.trials(FLAGS.stage)
  print(leaderboard.table(trials, summarize, top=len(trials) or 1))
  print(leaderboard.best_report(trials))


def run_make_data_mode() -> None:
  """COCO JSON + images -> TFRecords the detection/segmentation tasks read."""
  from trainer.datasets import coco  # pylint: disable=g-import-not-at-top  (TensorFlow)
  for flag in ('coco_annotation_file', 'coco_image_dir', 'output_prefix'):
    if not FLAGS[flag].value:
      raise UsageError(f'--{flag} is required with --mode=make_data')
  paths, num_images, num_classes = coco.coco_to_tfrecords(
      FLAGS.coco_annotation_file, FLAGS.coco_image_dir, FLAGS.output_prefix,
      FLAGS.num_shards)
  print(f'wrote {num_images} images to {len(paths)} shards: '
        f'{FLAGS.output_prefix}-*')
  print(f'use: --train_data=\'{FLAGS.output_prefix}-*\' --params_override='
        f'task.model.num_classes={num_classes},task.annotation_file='
        f'{coco.annotation_path(FLAGS.output_prefix)}')


# Proxy-task tools (issue 7): each a stage of the job's store whose trials
# run through the controller, so they resume after a kill like a search.

SELECTION_STAGE = 'proxy_model_selection'
VARIANCE_STAGE = 'proxy_variance'
PROXY_SEARCH_STAGE = 'proxy_search'
SELECTION_FILE = 'proxy_model_selection.json'
SELECTION_PLOT = 'proxy_model_selection.png'
VARIANCE_FILE = 'variance_and_smoothness.json'
PROXY_SEARCH_FILE = 'proxy_search.json'
PROXY_SEARCH_PLOT = 'proxy_search.png'


def _override_mapping(value) -> dict:
  """A --params_override value (k=v pairs or a YAML/JSON mapping; or a
  mapping already) as a nested mapping, parsed as trials parse it."""
  if isinstance(value, dict):
    return value
  if not value:
    return {}
  from trainer.training import experiments  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return experiments.parse_override(value)


def _merged_override(*values) -> str:
  """Overrides merged, a later one winning: one JSON mapping, the form a
  trial's --params_override takes."""
  merged = candidates_lib.merge(*map(_override_mapping, values))
  return json.dumps(merged, sort_keys=True) if merged else ''


def _with_learning_curve(inputs, nas_params_str: str):
  """`inputs`, evaluating after every train loop where their config
  evaluates only at the end: the proxy tools read learning curves."""
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  trainer_config = trial.prepare(inputs, nas_params_str).params.trainer
  if 0 < trainer_config.validation_interval < trainer_config.train_steps:
    return inputs
  return inputs._replace(params_override=_merged_override(
      inputs.params_override,
      {'trainer': {'validation_interval': trainer_config.steps_per_loop}}))


def _run_proxy_part(stage: str, job_dir: str, inputs, proposals: List[str],
                    trial_flags: Callable[[Any], Dict[str, Any]],
                    identity_extra: Dict[str, Any]):
  """Runs (or resumes) `stage` up to len(proposals) trials; returns them.

  Model selection and proxy search grow their stage in parts (rounds,
  candidates). A part that a later part already follows has only finished
  trials, so it is read from the store, not run again.
  """
  if os.path.exists(store_lib.store_path(job_dir)):
    recorded = store_lib.Store.open(job_dir, read_only=True).trials(stage)
    if len(recorded) > len(proposals):
      if [t.nas_params_str for t in recorded[:len(proposals)]] != proposals:
        raise UsageError(f'this job dir\'s {stage} stage trained other '
                         'architectures; resume with the same flags or use a '
                         'new --job_dir')
      return recorded[:len(proposals)]
  return _run_search(stage, job_dir, inputs, 'fixed', len(proposals),
                     proposals=proposals, trial_flags=trial_flags,
                     identity_extra=identity_extra)


def _accuracy(trial_metrics: Dict[str, Any]) -> float:
  return trial_metrics[trial_metrics['accuracy_key']]


def _write_json(path: str, value: Any) -> None:
  artifacts.write_text(path, json.dumps(value, indent=1) + '\n')


def _sampled_architectures(space_name: str, count: int) -> List[str]:
  """`count` distinct architectures of the space, drawn with --seed."""
  spec = pg.dna_spec(search_spaces.get_search_space(space_name))
  rng = random.Random(FLAGS.seed)
  pool = []
  for _ in range(100 * count):
    params = search_spaces.nas_params_from_dna(pg.random_dna(spec, rng))
    if params not in pool:
      pool.append(params)
    if len(pool) == count:
      return pool
  raise UsageError(f'{space_name} has too few distinct architectures for '
                   f'--proxy_start_models={count}')


def _continue_training(job_dir: str, from_id: int, to_id: int) -> None:
  """Gives model selection trial `to_id` the last checkpoint of `from_id`
  (weights, optimizer state and step): a survivor trains on from where its
  previous round stopped, as the platform's survivors do, instead of
  retraining from scratch. A trial dir with a checkpoint of its own (a round
  resumed after a kill) keeps it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  target = artifacts.trial_dir(job_dir, SELECTION_STAGE, to_id)
  if tf.train.latest_checkpoint(target):
    return
  checkpoint = tf.train.latest_checkpoint(
      artifacts.trial_dir(job_dir, SELECTION_STAGE, from_id))
  if checkpoint is None:
    raise search.SearchFailed(f'{SELECTION_STAGE} trial {from_id} kept no '
                              'checkpoint to continue from')
  os.makedirs(target, exist_ok=True)
  for path in tf.io.gfile.glob(checkpoint + '.*'):
    shutil.copy(path, target)
  # Written last: until it exists the copy counts as not made.
  name = os.path.basename(checkpoint)
  artifacts.write_text(os.path.join(target, 'checkpoint'),
                       f'model_checkpoint_path: "{name}"\n'
                       f'all_model_checkpoint_paths: "{name}"\n')


def _round_score(t, final: bool, cost_metric: str):
  """(accuracy, cost) of a round's trial, None if it has none: the last
  evaluation (at the round's budget), or in the last round the reported one
  (the best evaluation of a full training)."""
  if t.status != store_lib.COMPLETED or not t.metrics.get('evaluations'):
    return None
  cost = t.metrics.get(cost_metric)
  if not isinstance(cost, (int, float)):
    return None
  last = t.metrics['evaluations'][-1]
  return (_accuracy(t.metrics) if final else last[t.metrics['accuracy_key']],
          float(cost))


def run_proxy_model_selection_mode() -> None:
  """Shrinks --proxy_start_models sampled architectures to
  --proxy_final_models in rounds of growing budgets on the full-training
  config; the last round trains to completion. Writes the reference set
  (proxy_model_selection.json, readable by --proxy_reference) and a plot."""
  from proxy_tasks import plots  # pylint: disable=g-import-not-at-top
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  job_dir = _require_job_dir()
  inputs = _stage_inputs(job_dir, {}, FLAGS.search_space, 'train')
  pool = _sampled_architectures(FLAGS.search_space, FLAGS.proxy_start_models)
  full_steps = trial.prepare(inputs, pool[0]).params.trainer.train_steps
  rounds = model_selection.plan_rounds(
      FLAGS.proxy_start_models, FLAGS.proxy_final_models, full_steps)
  round_overrides = [
      _merged_override(inputs.params_override,
                       {'trainer': {'train_steps': r.train_steps}})
      for r in rounds]
  identity_extra = {'proxy_pool': pool,
                    'proxy_rounds': [list(r) for r in rounds]}
  round_of: Dict[int, int] = {}  # Trial id -> its round.
  proposals: List[str] = []
  survivors = [(params, None) for params in pool]  # (architecture, last trial)
  history = []
  for index, round_ in enumerate(rounds):
    first_id = len(proposals) + 1
    for trial_id, (params, previous) in enumerate(survivors, first_id):
      round_of[trial_id] = index
      if previous is not None:
        _continue_training(job_dir, previous, trial_id)
      proposals.append(params)
    print(f'== model selection round {index + 1}/{len(rounds)}: '
          f'{len(survivors)} models to step {round_.train_steps} '
          f'({round_.training_pct:.2f}% of {full_steps})', flush=True)
    trials = _run_proxy_part(
        SELECTION_STAGE, job_dir, inputs, proposals,
        lambda t: {'params_override': round_overrides[round_of[t.id]]},
        identity_extra)[first_id - 1:]
    cost_metric = model_selection.cost_metric(
        [t.metrics for t in trials if t.status == store_lib.COMPLETED])
    scores = {t.id: _round_score(t, round_.final, cost_metric) for t in trials}
    if round_.final:
      kept = [t.id for t in trials if scores[t.id] is not None]
    else:
      kept = model_selection.prune(
          scores, len(trials) - rounds[index + 1].num_models)
    if len(kept) < model_selection.MIN_KEPT:
      raise search.SearchFailed(f'only {len(kept)} models of round '
                                f'{index + 1} trained; model selection needs '
                                f'{model_selection.MIN_KEPT}')
    history.append({
        **round_._asdict(), 'round': index + 1, 'cost_metric': cost_metric,
        'models': [dict(zip(('accuracy', 'cost'), scores[t.id] or (None, None)),
                        trial_id=t.id, kept=t.id in kept) for t in trials]})
    pruned = [str(t.id) for t in trials if t.id not in kept]
    print(f'round {index + 1}: kept trials {", ".join(map(str, kept))}'
          + (f'; pruned {", ".join(pruned)}' if pruned else ''), flush=True)
    survivors = [(t.nas_params_str, t.id) for t in trials if t.id in kept]
  models = reference_lib.from_trials(
      [t for t in trials if t.id in kept], SELECTION_STAGE)
  path = os.path.join(job_dir, SELECTION_FILE)
  _write_json(path, {'search_space': FLAGS.search_space,
                     'full_train_steps': full_steps, 'rounds': history,
                     'models': reference_lib.to_rows(models)})
  plots.model_selection(os.path.join(job_dir, SELECTION_PLOT), history,
                        history[-1]['cost_metric'])
  print(f'reference set: {len(models)} models')
  for m in models:
    print(f'  {m.source}: accuracy {m.accuracy:.4f}, '
          + ', '.join(f'{k} {v:.4g}' for k, v in m.costs.items()))
  print(f'wrote {path} (use it as --proxy_reference) and '
        f'{os.path.join(job_dir, SELECTION_PLOT)}')


def run_proxy_variance_mode() -> None:
  """Trains one model --proxy_variance_runs times under the proxy config
  (each run its own seed) and writes variance_and_smoothness.json."""
  job_dir = _require_job_dir()
  runs = FLAGS.proxy_variance_runs
  if runs < 2:
    raise UsageError('--proxy_variance_runs must be at least 2')
  if FLAGS.nas_params_str:
    space, params, identity = (FLAGS.search_space,
                               _read_nas_params(FLAGS.nas_params_str), {})
  else:
    store = (store_lib.Store.open(job_dir, read_only=True)
             if os.path.exists(store_lib.store_path(job_dir)) else None)
    identity = store and store.job_identity('search')
    best = store and leaderboard.best(store.trials('search'))
    if not identity or best is None:
      raise UsageError('--mode=proxy_variance needs --nas_params_str or a '
                       'completed search trial in --job_dir')
    space, params = identity['search_space'], best.nas_params_str
  inputs = _with_learning_curve(
      _stage_inputs(job_dir, identity, space, 'search'), params)
  trials = _run_search(VARIANCE_STAGE, job_dir, inputs, 'fixed', runs,
                       proposals=[params] * runs,
                       identity_extra={'proxy_model': params})
  completed = [t for t in trials if t.status == store_lib.COMPLETED]
  curves = [[(e['step'], e[t.metrics['accuracy_key']])
             for e in t.metrics['evaluations']] for t in completed]
  summary = variance.summary(
      [_accuracy(t.metrics) for t in completed], curves,
      FLAGS.proxy_max_coefficient_of_variation, FLAGS.proxy_max_smoothness)
  per_run = summary.pop('smoothness_per_run')
  result = {
      'search_space': space, 'nas_params_str': params, **summary,
      'runs': [{'trial_id': t.id, 'seed': FLAGS.seed * 100003 + t.id,
                'accuracy': _accuracy(t.metrics), 'smoothness': smooth,
                'learning_curve': curve}
               for t, curve, smooth in zip(completed, curves, per_run)],
  }
  path = os.path.join(job_dir, VARIANCE_FILE)
  _write_json(path, result)

  def verdict(value, bound, passed):
    shown = '-' if value is None else f'{value:.4f}'
    return f'{shown} ({"passes" if passed else "fails"}: <= {bound:g})'

  print(f'{len(completed)} of {runs} runs completed; accuracies '
        + ', '.join(f'{_accuracy(t.metrics):.4f}' for t in completed))
  print('coefficient of variation: ' + verdict(
      summary['coefficient_of_variation'],
      summary['max_coefficient_of_variation'], summary['variance_passed']))
  print('smoothness: ' + verdict(summary['smoothness'],
                                 summary['max_smoothness'],
                                 summary['smoothness_passed']))
  print(f'wrote {path}')


def _proxy_reference(job_dir: str):
  """(reference models, their space, the identity of the stage that trained
  them or {}) from --proxy_reference: a file, or a job dir's model selection
  result, else its train stage."""
  path = os.path.abspath(FLAGS.proxy_reference or job_dir)
  if os.path.isfile(path):
    return reference_lib.read_file(path), FLAGS.search_space, {}
  if not os.path.exists(store_lib.store_path(path)):
    raise UsageError(f'--proxy_reference: {path} is neither a reference file '
                     'nor a job dir')
  store = store_lib.Store.open(path, read_only=True)
  selection = os.path.join(path, SELECTION_FILE)
  if os.path.isfile(selection):
    identity = store.job_identity(SELECTION_STAGE) or {}
    models = reference_lib.read_file(selection)
  else:
    identity = store.job_identity('train')
    if identity is None:
      raise UsageError(f'{path} has no full training to take reference '
                       'accuracies from (--mode=train or '
                       '--mode=proxy_model_selection); give '
                       '--proxy_reference=FILE')
    models = reference_lib.check(
        reference_lib.from_trials(store.trials('train'), 'train'), path)
  return models, identity.get('search_space', FLAGS.search_space), identity


def _candidate_inputs(base, candidate, sample: str):
  """The proxy config of one candidate: its override after the proxy's, its
  share of the training files, and evaluations along the way."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  inputs = base._replace(params_override=_merged_override(
      base.params_override, candidate.params_override))
  fraction = candidate.train_data_fraction
  if fraction is not None:
    task_config = trial.prepare(inputs, sample).params.task
    paths = task_config.train_data.input_path
    files = {f for pattern in (paths.split(',') if isinstance(paths, str)
                               else paths)
             for f in tf.io.gfile.glob(pattern)}
    data = {'train_data': {'input_path': candidates_lib.train_files_share(
                files, fraction)},
            'validation_data': {
                'input_path': task_config.validation_data.input_path},
            'model': {'num_classes': task_config.model.num_classes}}
    if getattr(task_config, 'annotation_file', ''):
      data['annotation_file'] = task_config.annotation_file
    # The data flags would replace the share the override names.
    inputs = inputs._replace(
        params_override=_merged_override(inputs.params_override,
                                         {'task': data}),
        train_data='', eval_data='')
  return _with_learning_curve(inputs, sample)


def _proxy_run(t, batch_size: int) -> Optional[proxy_search.ProxyRun]:
  """A proxy trial's learning curve, training speed and compute, and
  costs; None if it failed."""
  if t.status != store_lib.COMPLETED:
    return None
  metrics = t.metrics
  costs = {m: float(metrics[m]) for m in reference_lib.COST_METRICS
           if isinstance(metrics.get(m), (int, float))}
  flops = costs.get('multi_add_flops_billion')
  return proxy_search.ProxyRun(
      {e['step']: e[metrics['accuracy_key']] for e in metrics['evaluations']},
      metrics['train_and_eval_s'] / metrics['train_steps'],
      None if flops is None else batch_size * flops, costs)


def run_proxy_search_mode() -> None:
  """Trains the reference set under each candidate proxy in turn; Kendall
  tau against full-training accuracy at every evaluation step; the cheapest
  passing candidate. Writes proxy_search.json and proxy_search.png."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from proxy_tasks import plots  # pylint: disable=g-import-not-at-top
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  job_dir = _require_job_dir()
  models, space, identity = _proxy_reference(job_dir)
  base = _stage_inputs(
      job_dir, {k: identity[k] for k in ('experiment', 'train_data',
                                         'eval_data') if k in identity},
      space, 'search')
  sample = models[0].nas_params_str
  if FLAGS.proxy_candidates:
    candidates = candidates_lib.parse(FLAGS.proxy_candidates)
  else:
    prepared = trial.prepare(base, sample)
    task_config = prepared.params.task
    candidates = candidates_lib.defaults(
        trial.TASK_FAMILIES[prepared.experiment].name,
        task_config.model.input_size, task_config.train_data.global_batch_size,
        len(tf.io.gfile.glob(task_config.train_data.input_path)))
  candidate_inputs = [_candidate_inputs(base, c, sample) for c in candidates]
  threshold = FLAGS.proxy_correlation_threshold
  identity_extra = {
      'proxy_reference': [m.nas_params_str for m in models],
      'proxy_candidates': [[c.name, i.params_override, c.train_data_fraction]
                           for c, i in zip(candidates, candidate_inputs)]}
  count = len(models)

  def trial_flags(t):
    inputs = candidate_inputs[(t.id - 1) // count]
    return {'params_override': inputs.params_override,
            'train_data': inputs.train_data, 'eval_data': inputs.eval_data}

  proposals: List[str] = []
  results: Dict[str, Dict[str, Any]] = {}
  for index, (candidate, inputs) in enumerate(zip(candidates,
                                                  candidate_inputs)):
    proposals += [m.nas_params_str for m in models]
    override = candidate.params_override
    changes = [override if isinstance(override, str) else json.dumps(override)]
    if candidate.train_data_fraction:
      changes.append(f'{candidate.train_data_fraction:g} of the training files')
    print(f'== proxy candidate {index + 1}/{len(candidates)} {candidate.name}: '
          + (', '.join(c for c in changes if c) or 'as configured'), flush=True)
    trials = _run_proxy_part(PROXY_SEARCH_STAGE, job_dir, base, proposals,
                             trial_flags, identity_extra)[-count:]
    batch_size = trial.prepare(
        inputs, sample).params.task.train_data.global_batch_size
    result = proxy_search.evaluate(
        models, [_proxy_run(t, batch_size) for t in trials], threshold)
    results[candidate.name] = {
        'candidate': candidate._asdict(),
        'params_override': inputs.params_override,  # As the trials ran.
        'trial_ids': [t.id for t in trials], **result}
    by_step = ', '.join(
        f'{r["step"]}: '
        + ('-' if r['kendall_tau'] is None else f'{r["kendall_tau"]:.3f}')
        for r in result['kendall_tau_by_step'])
    verdict = 'does not pass'
    if result['passed']:
      compute = result['pass_train_compute']
      verdict = (f'passes at step {result["pass_step"]} ('
                 + ('-' if compute is None else f'{compute:.3g}')
                 + ' B multiply-adds, '
                 f'{result["pass_train_seconds"]:.1f} s per model)')
    print(f'{candidate.name}: kendall tau by step {by_step}; {verdict}',
          flush=True)
  best = proxy_search.cheapest_passing(results)
  path = os.path.join(job_dir, PROXY_SEARCH_FILE)
  _write_json(path, {
      'search_space': space, 'correlation_threshold': threshold,
      'reference': reference_lib.to_rows(models), 'candidates': results,
      'best': best,
      'best_train_steps': results[best]['pass_step'] if best else None})
  plots.proxy_search(os.path.join(job_dir, PROXY_SEARCH_PLOT), results,
                     threshold, best)
  print(f'best proxy: {best}, trained to step {results[best]["pass_step"]}'
        if best else f'no candidate reached kendall tau {threshold:g}')
  print(f'wrote {path} and {os.path.join(job_dir, PROXY_SEARCH_PLOT)}')


def one_line(error: BaseException) -> str:
  """The error's message on one line. An error raised in a traced
  TensorFlow function keeps only its final exception, not the traceback
  TensorFlow puts before it."""
  lines = str(error).splitlines()
  if 'in user code:' in str(error):
    raised = [i for i, line in enumerate(lines)
              if re.match(r'\s*[\w.]+(Error|Exception): ', line)]
    lines = lines[raised[-1]:] if raised else lines
  return ' '.join(' '.join(lines).split()) or type(error).__name__


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  user_errors = (ValueError, FileNotFoundError, store_lib.StoreError,
                 search.SearchFailed)
  try:
    {'search': run_search_mode, 'train': run_train_mode,
     'augment_search': run_augment_search_mode,
     'augment_preview': run_augment_preview_mode,
     'pipeline': run_pipeline_mode, 'export': run_export_mode,
     'report': run_report_mode, 'trial': run_trial_mode,
     'list': run_list_mode, 'make_data': run_make_data_mode,
     'proxy_model_selection': run_proxy_model_selection_mode,
     'proxy_variance': run_proxy_variance_mode,
     'proxy_search': run_proxy_search_mode}[FLAGS.mode]()
  except user_errors as e:
    print(f'nas-garden: error: {one_line(e)}', file=sys.stderr)
    sys.exit(1)


def run() -> None:
  """Console-script entry point (`nas-garden`)."""
  app.run(main)


if __name__ == '__main__':
  run()
