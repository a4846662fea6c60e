"""nas-garden command line: `python -m trainer.task --mode=...` (absl flags).

Modes:
  search           run (or resume) an architecture search in --job_dir
  augment_search   run (or resume) an augmentation policy search for a fixed
                   architecture (--base_job_dir/--base_trial_id or
                   --base_search_space/--base_nas_params_str)
  augment_preview  draw augmented samples of a policy (--nas_params_str) as PNG
  trial            run one trial from --nas_params_str, as a cloud training job
                   would
  list             print the leaderboard of a --stage of --job_dir
  make_data        convert a COCO JSON + image folder into Model Garden
                   TFRecords
"""

import json
import os
import random
import sys
import time

from absl import app
from absl import flags
import pyglove as pg

import search_spaces
from trainer import algorithms
from trainer import artifacts
from trainer import early_stopping
from trainer import executors
from trainer import leaderboard
from trainer import reward as reward_lib
from trainer import search
from trainer import store as store_lib

PROCESS_START = time.time()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Before TensorFlow loads.

# --multi_objective_cost -> the metric trials report for it.
MULTI_OBJECTIVE_COSTS = {'flops': 'multi_add_flops_billion',
                         'latency': 'latency_ms', 'memory': 'memory_mb'}
MODES = ('search', 'augment_search', 'augment_preview', 'trial', 'list',
         'make_data')
STAGES = ('search', 'augment_search')

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
flags.DEFINE_string('algorithm', 'random',
                    'random | grid | regularized_evolution')
flags.DEFINE_integer('population_size', 20, 'regularized_evolution population.')
flags.DEFINE_integer('tournament_size', 5, 'regularized_evolution tournament.')
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
                     'Trials run at once on this machine.')
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

FLAGS = flags.FLAGS


class UsageError(ValueError):
  """A flag is missing or inconsistent."""


def _require_job_dir() -> str:
  if not FLAGS.job_dir:
    raise UsageError('--job_dir is required')
  return os.path.abspath(FLAGS.job_dir)


def _trial_inputs(job_dir: str, base_search_space: str = '',
                  base_nas_params_str: str = ''):
  from trainer import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return trial.TrialInputs(
      search_space=FLAGS.search_space, experiment=FLAGS.experiment,
      config_file=FLAGS.config_file, params_override=FLAGS.params_override,
      train_data=FLAGS.train_data, eval_data=FLAGS.eval_data,
      data_dir=artifacts.data_dir(job_dir),
      base_search_space=base_search_space,
      base_nas_params_str=base_nas_params_str)


def _read_nas_params(value: str, flag: str = 'nas_params_str') -> str:
  if not value:
    raise UsageError(f'--{flag} is required with --mode={FLAGS.mode}')
  if value.lstrip().startswith('{'):
    return value
  if not os.path.isfile(value):
    raise UsageError(f'--{flag} is neither JSON nor a file: {value}')
  with open(value) as f:
    return f.read()


def _given_base_nas_params() -> str:
  """--base_nas_params_str read from a file if need be; '' when not given."""
  if not FLAGS.base_nas_params_str:
    return ''
  return _read_nas_params(FLAGS.base_nas_params_str, 'base_nas_params_str')


def run_trial_mode() -> None:
  """One trial; on any failure writes error.json for the controller."""
  from trainer import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  job_dir = _require_job_dir()
  trial_id = FLAGS.trial_id or int(os.environ.get('CLOUD_ML_TRIAL_ID', '1'))
  trial_dir = artifacts.trial_dir(job_dir, FLAGS.stage, trial_id)
  try:
    inputs = _trial_inputs(job_dir, FLAGS.base_search_space,
                           _given_base_nas_params())
    prepared = trial.prepare(inputs, _read_nas_params(FLAGS.nas_params_str),
                             FLAGS.seed)
    metrics = trial.run(prepared, trial_dir, started_at=PROCESS_START,
                        measure_latency=FLAGS.measure_latency)
  except Exception as e:
    os.makedirs(trial_dir, exist_ok=True)
    artifacts.write_text(os.path.join(trial_dir, artifacts.ERROR_FILE),
                         json.dumps({'error': one_line(e)}))
    raise
  shown = {k: v for k, v in metrics.items() if k != 'evaluations'}
  print(json.dumps(shown, sort_keys=True), flush=True)
  # Metrics, checkpoints and summaries are on disk; TensorFlow's interpreter
  # teardown would add about 6 s to every trial for nothing.
  sys.stderr.flush()
  os._exit(0)  # pylint: disable=protected-access


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
  if algorithm == 'regularized_evolution':
    identity.update(population_size=FLAGS.population_size,
                    tournament_size=FLAGS.tournament_size)
  return identity


def _run_search(stage: str, job_dir: str, inputs, algorithm_name: str,
                max_trials: int) -> None:
  """Validates everything, then runs or resumes one stage's search."""
  from trainer import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  if max_trials < 1:
    raise UsageError('--max_trials must be at least 1')
  space = search_spaces.get_search_space(inputs.search_space)
  algorithm = algorithms.make_algorithm(
      algorithm_name, FLAGS.seed, FLAGS.population_size, FLAGS.tournament_size)
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
  sample = pg.random_dna(pg.dna_spec(space), random.Random(FLAGS.seed))
  prepared = trial.prepare(inputs, search_spaces.nas_params_from_dna(sample))
  stopping = _early_stopping(prepared.params.trainer, reward)
  identity = _search_identity(inputs, prepared, algorithm_name)
  store = store_lib.Store.open(job_dir, create=True)
  with search.ControllerLock(job_dir):
    store.claim_identity(stage, identity)
    executor = executors.LocalExecutor(FLAGS.trial_timeout)

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
          }),
          artifacts.trial_dir(job_dir, stage, t.id))

    def feedback_value(status, metrics, trial_reward):
      """NSGA-II gets (quality, -cost); an infeasible candidate, untrained,
      gets (0, -cost) where its cost is known and nothing otherwise."""
      if not algorithm.multi_objective:
        return trial_reward
      if status == store_lib.INFEASIBLE:
        cost = metrics.get(cost_metric)
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
        early_stopping=stopping)
    print(f'{stage} {inputs.search_space} with {algorithm_name} in {job_dir}: '
          f'{max_trials} trials', flush=True)
    trials = controller.run()
    print(leaderboard.table(trials, controller.summary))
    print(leaderboard.best_report(trials))


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


def _base_architecture(job_dir: str):
  """(space, nas_params_str, search identity or {}) of the fixed architecture.

  From --base_search_space/--base_nas_params_str, else from a trial of the
  search stage of --base_job_dir (default --job_dir): --base_trial_id or the
  best completed one.
  """
  if FLAGS.base_nas_params_str:
    if FLAGS.base_job_dir or FLAGS.base_trial_id:
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
  if FLAGS.base_trial_id:
    trial = store.trial('search', FLAGS.base_trial_id)
    if trial.status != store_lib.COMPLETED:
      raise UsageError(f'search trial {trial.id} of {base_job_dir} is '
                       f'{trial.status}, not completed')
  else:
    trial = leaderboard.best(store.trials('search'))
    if trial is None:
      raise UsageError(f'{base_job_dir} has no completed search trial')
  return identity['search_space'], trial.nas_params_str, identity


def run_augment_search_mode() -> None:
  """Searches an augmentation policy for one fixed architecture.

  Experiment, config, overrides and data default to the base search's, so the
  policy is searched on the setting the architecture was found in.
  """
  job_dir = _require_job_dir()
  base_space, base_params, base = _base_architecture(job_dir)

  def inherited(flag: str, key: str) -> str:
    return FLAGS[flag].value if FLAGS[flag].present else base.get(key, '')

  experiment = inherited('experiment', 'experiment')
  if FLAGS['search_space'].present:
    space = FLAGS.search_space
  else:
    task = 'segmentation' if 'segmentation' in experiment else 'detection'
    space = f'randaugment_{task}'
  if not search_spaces.augmentation_task(space):
    augmentation_spaces = [s for s in search_spaces.list_search_spaces()
                           if search_spaces.augmentation_task(s)]
    raise UsageError(f'--search_space={space} is not an augmentation space; '
                     f'valid: {", ".join(augmentation_spaces)}')
  config_file = FLAGS.config_file
  if not FLAGS['config_file'].present and base:
    # The base search's config, as it ran: a copy in this job dir, so the
    # stage's identity does not hang on the base job's files.
    config_file = os.path.join(job_dir, 'augment_search_base_config.yaml')
    os.makedirs(job_dir, exist_ok=True)
    artifacts.write_text(config_file, base['config'])
  from trainer import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  inputs = trial.TrialInputs(
      search_space=space, experiment=experiment, config_file=config_file,
      params_override=inherited('params_override', 'params_override'),
      train_data=inherited('train_data', 'train_data'),
      eval_data=inherited('eval_data', 'eval_data'),
      data_dir=artifacts.data_dir(job_dir), base_search_space=base_space,
      base_nas_params_str=base_params)
  grid = space.startswith('randaugment')
  algorithm = FLAGS.algorithm if FLAGS['algorithm'].present else (
      'grid' if grid else 'regularized_evolution')
  max_trials = FLAGS.max_trials
  if not FLAGS['max_trials'].present and algorithm == 'grid':
    max_trials = pg.dna_spec(search_spaces.get_search_space(space)).space_size
  _run_search('augment_search', job_dir, inputs, algorithm, max_trials)


def run_augment_preview_mode() -> None:
  """A PNG grid: each row an image, then augmented copies with boxes/masks."""
  from augment import preview  # pylint: disable=g-import-not-at-top  (TensorFlow)
  from trainer import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
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
  from trainer import coco  # pylint: disable=g-import-not-at-top  (TensorFlow)
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


def one_line(error: BaseException) -> str:
  return ' '.join(str(error).split()) or type(error).__name__


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  user_errors = (ValueError, FileNotFoundError, store_lib.StoreError,
                 search.SearchFailed)
  try:
    {'search': run_search_mode, 'augment_search': run_augment_search_mode,
     'augment_preview': run_augment_preview_mode, 'trial': run_trial_mode,
     'list': run_list_mode, 'make_data': run_make_data_mode}[FLAGS.mode]()
  except user_errors as e:
    print(f'nas-garden: error: {one_line(e)}', file=sys.stderr)
    sys.exit(1)


def run() -> None:
  """Console-script entry point (`nas-garden`)."""
  app.run(main)


if __name__ == '__main__':
  run()
