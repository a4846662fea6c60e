"""Every flag of `python -m trainer.task`, defined once and grouped by mode.

Only the driver (trainer/task.py) reads absl's FLAGS: it hands each mode an
`Args`, the parsed values with which of them were given, so modes take
their inputs explicitly and tests can build them.
"""

from typing import Any, Dict, Iterable

from absl import flags

from proxy_tasks import proxy_search
from proxy_tasks import variance
from trainer import algorithms
from trainer import artifacts
from trainer import objective
from trainer import platform_flags
from trainer.controller import early_stopping
from trainer.training import devices

MODES = ('search', 'train', 'augment_search', 'augment_preview', 'pipeline',
         'export', 'report', 'trial', 'list', 'make_data',
         'proxy_model_selection', 'proxy_variance', 'proxy_search',
         'design_space', 'compound_scaling', 'oneshot_search')
STAGES = tuple(artifacts.STAGE_DIRS)
# --distribution_strategy: Model Garden's runtime strategies ('' keeps the
# config's).
RUNTIME_STRATEGIES = ('', 'one_device', 'mirrored', 'multi_worker_mirrored',
                      'tpu')

# --- Every mode
flags.DEFINE_enum('mode', 'search', MODES, 'What to run.')
flags.DEFINE_string('job_dir', None, 'Directory of the job: store, trials, '
                    'data. A URL (gs://, file://, ram://) is remote: see '
                    '--store_dir.')
flags.DEFINE_string('store_dir', '',
                    'With a URL --job_dir: the local folder of its SQLite '
                    'store (a copy is uploaded to the job dir after every '
                    'change, and downloaded when this folder has none); '
                    'default under ~/.cache/nas-garden/stores, keyed by the '
                    'URL.')
flags.DEFINE_integer('seed', 0, 'Seeds the algorithm and every trial.')
flags.DEFINE_string('stage', 'search',
                    '--mode=trial|list: the stage whose trial dir or '
                    'leaderboard is meant: ' + ' | '.join(STAGES) + ' | '
                    f'{artifacts.DESIGN_SPACE_STAGE_PREFIX}<space> '
                    '(--mode=design_space).')
flags.register_validator(
    'stage', artifacts.is_stage,
    message='--stage: one of ' + ', '.join(STAGES) + ' or '
    f'{artifacts.DESIGN_SPACE_STAGE_PREFIX}<space>')

# --- What a trial trains (spec.TrialSpec; --mode=trial takes it whole)
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
flags.DEFINE_string('nas_params_str', '',
                    '--mode=trial: the architecture, as Vertex AI NAS JSON or '
                    'a path to a .json file holding it.')
flags.DEFINE_string('base_search_space', '',
                    'Space of the fixed architecture of an augmentation trial '
                    '(or of --mode=compound_scaling).')
flags.DEFINE_string('base_nas_params_str', '',
                    'The fixed architecture of an augmentation trial: Vertex '
                    'JSON or a .json file.')
flags.DEFINE_integer('trial_id', 0, '--mode=trial: id of the trial dir; '
                     'default $CLOUD_ML_TRIAL_ID or 1.')
flags.DEFINE_integer('search_trial_id', 0,
                     '--mode=trial: the search trial a full training retrains '
                     '(recorded with its metrics).')
flags.DEFINE_string('init_checkpoint', '',
                    '--mode=trial: warm-start the searched component from '
                    'this checkpoint (file or dir).')
flags.DEFINE_string('export_dir', '',
                    '--mode=export: where to write (default <job_dir>/export); '
                    '--mode=trial: retrain the model exported there.')
flags.DEFINE_bool('measure_latency', False,
                  '--mode=trial: measure latency and memory on the trial\'s '
                  'device once training has ended and released it.')
flags.DEFINE_bool('report_metrics', True,
                  '--mode=trial: when it runs as a Vertex AI job, report its '
                  'reward to the hypertune metrics file.')
flags.DEFINE_bool('export_serving_model', False,
                  '--mode=trial: export the trained model as a batch-1 '
                  'SavedModel (saved_model/ in the trial dir).')

# --- How a trial runs (spec.Runtime)
flags.DEFINE_enum('accelerator', 'auto', list(devices.ACCELERATORS),
                  'What trials train on. auto: a TPU when --tpu or the '
                  'environment names one, a GPU when the trial process sees '
                  'one, else the CPU. Without --config_file a trial loads '
                  'its space\'s <stage>_<accelerator> config, and '
                  'runtime.num_gpus follows the GPUs it sees.')
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

# --- search, augment_search and every stage that runs trials
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
flags.DEFINE_integer('max_parallel_trials', 1,
                     'Trials run at once (local subprocesses or Ray tasks).')
flags.DEFINE_float('trial_timeout', 0.0,
                   'Seconds before a trial is stopped and failed (0: none).')
flags.DEFINE_integer('trial_memory_limit_mb', None,
                     'Resident memory (MB) each trial\'s processes may hold, '
                     'measured every 0.2 s: past it they are killed and the '
                     'trial fails as out of memory (local and Ray trials); '
                     'default no cap.')
flags.DEFINE_bool('warm_trials', True,
                  'Each trial process is a fork of one that has TensorFlow '
                  'and the trainer imported (about 5 s less per trial), '
                  'still a process of its own; on Ray, each worker keeps its '
                  'own such server; --nowarm_trials starts a fresh Python '
                  'for each.')
flags.DEFINE_bool('skip_nan_error', True,
                  'A trial whose loss becomes NaN is recorded infeasible (its '
                  'reward 0, not counted by --max_failed_trials) instead of '
                  'failed.')
flags.DEFINE_enum('early_stopping', 'none', early_stopping.RULES,
                  'median: stop a trial whose metric at --early_stopping_step '
                  'is below the median of finished trials there.')
flags.DEFINE_integer('early_stopping_step', 0,
                     'Train step at which the rule applies; default the first '
                     'evaluation (trainer.validation_interval).')
flags.DEFINE_integer('early_stopping_min_trials', 3,
                     'Finished trials needed before the rule stops any.')

# --- The objective (objective.Objective)
flags.DEFINE_string('reward_metric', '',
                    'Metric the reward is computed from (e.g. AP50); default: '
                    'the task\'s (top_1_accuracy, AP, miou).')
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
flags.DEFINE_float('reward_exponent', 1.0,
                   'w of the MnasNet reward acc * (T/m)^w.')
flags.DEFINE_enum('reward_mode', 'hard', ['hard', 'soft'],
                  'hard: the cost factor is capped at 1; soft: it is not.')
flags.DEFINE_enum('multi_objective_cost', 'flops', list(objective.COSTS),
                  'nsga2: the cost traded against the reward metric.')
flags.DEFINE_float('max_flops_multi_adds_billion', 0.0,
                   'Hard budget: candidates whose FLOPs, estimated from the '
                   'untrained model, exceed it are recorded as infeasible and '
                   'not trained; 0: none.')

# --- Where trials run
flags.DEFINE_enum('executor', 'local', ['local', 'ray'],
                  'Where trials run: subprocesses of this machine, or Ray '
                  'tasks (pip install nas-garden[ray]).')
flags.DEFINE_string('ray_address', '',
                    '--executor=ray: the cluster ("auto", "ray://host:port"); '
                    'empty starts a local Ray instance.')
flags.DEFINE_float('cpus_per_trial', 1.0, '--executor=ray: CPUs each trial '
                   'task holds.')
flags.DEFINE_float('gpus_per_trial', None,
                   'GPUs each trial holds, its own: a whole number, a share '
                   '1/k of one (0.5: two trials per GPU), or 0 (trials see '
                   'no GPU); default 1 where there are GPUs, else 0. Local: '
                   'the GPUs are those of CUDA_VISIBLE_DEVICES, else of '
                   'nvidia-smi, and each trial process gets its own in '
                   'CUDA_VISIBLE_DEVICES; trials beyond the free GPUs wait '
                   'for one (as Ray tasks wait), so --max_parallel_trials '
                   'above GPUs / gpus_per_trial runs no more at once. '
                   'Without GPUs trials keep CUDA_VISIBLE_DEVICES as set. '
                   'Ray: the task holds them and its trial sees exactly '
                   'those Ray assigned.')

# --- train, pipeline
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

# --- augment_search
flags.DEFINE_string('base_job_dir', '',
                    '--mode=augment_search|compound_scaling: job whose search '
                    'trial fixes the architecture; default --job_dir.')
flags.DEFINE_integer('base_trial_id', 0,
                     '--mode=augment_search|compound_scaling: that trial\'s '
                     'id; default its '
                     'best completed trial.')

# --- augment_preview
flags.DEFINE_string('output_path', '',
                    '--mode=augment_preview: PNG path; default '
                    '<job_dir>/augment_preview.png.')
flags.DEFINE_integer('preview_images', 4,
                     '--mode=augment_preview: images (rows) drawn.')
flags.DEFINE_integer('preview_variants', 4,
                     '--mode=augment_preview: augmented copies of each image.')

# --- make_data
flags.DEFINE_string('coco_annotation_file', '', '--mode=make_data: COCO JSON.')
flags.DEFINE_string('coco_image_dir', '', '--mode=make_data: its images.')
flags.DEFINE_string('nifti_image_dir', '',
                    '--mode=make_data: NIfTI images (.nii/.nii.gz, 3D or 4D '
                    'with channels last) for 3D segmentation.')
flags.DEFINE_string('nifti_label_dir', '',
                    '--mode=make_data: their labels, same file names.')
flags.DEFINE_string('kitti_dir', '',
                    '--mode=make_data: a KITTI 3D object folder (velodyne/, '
                    'label_2/, calib/) for lidar detection.')
flags.DEFINE_string('output_prefix', '', '--mode=make_data: TFRecord prefix.')
flags.DEFINE_integer('num_shards', 1, '--mode=make_data: TFRecord shards.')

# --- Proxy-task tools (proxy_model_selection, proxy_variance, proxy_search)
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

# --- Design-space analysis (--mode=design_space)
flags.DEFINE_string('design_spaces', '',
                    '--mode=design_space: two or more spaces to compare, '
                    'comma-separated (prebuilt names or package.module:'
                    'function).')
flags.DEFINE_integer('design_space_samples', 100,
                     '--mode=design_space: architectures sampled (with '
                     '--seed) and trained per space under the proxy config.')
flags.DEFINE_float('design_space_top', 0.1,
                   '--mode=design_space: the fraction of each space\'s best '
                   'models (at most 5, at least 1) whose block widths the '
                   'quantised linear rule is fitted to.')

# --- Compound scaling (--mode=compound_scaling)
flags.DEFINE_integer('compound_scaling_grid_points', 3,
                     '--mode=compound_scaling: (α depth, β width, γ '
                     'resolution) points with α·β²·γ² ≈ 2 trained at φ=1 on '
                     'the proxy (1 to 10).')
flags.DEFINE_integer('compound_scaling_max_phi', 3,
                     '--mode=compound_scaling: the best point\'s φ = 1..K '
                     'models trained fully.')

# --- One-shot search (--mode=oneshot_search)
flags.DEFINE_float('oneshot_warmup_fraction', 0.25,
                   '--mode=oneshot_search: the first fraction of the '
                   'supernet\'s trainer.train_steps trains paths drawn '
                   'uniformly, before the policy learns (TuNAS).')
flags.DEFINE_float('oneshot_policy_learning_rate', 0.05,
                   '--mode=oneshot_search: Adam learning rate of the '
                   'policy\'s logits.')
flags.DEFINE_float('oneshot_cost_penalty', 0.5,
                   '--mode=oneshot_search: -β of the absolute reward '
                   'accuracy + β|FLOPs/target - 1| with '
                   '--target_flops_multi_adds_billion.')
flags.DEFINE_integer('oneshot_checkpoint_steps', 50,
                     '--mode=oneshot_search: steps between checkpoints (and '
                     'progress lines); a killed search resumes from the last.')
flags.DEFINE_integer('oneshot_rank_samples', 0,
                     '--mode=oneshot_search: also evaluate this many random '
                     'architectures (from --seed) with the supernet\'s '
                     'weights, into oneshot.json.')

# --- The Vertex AI NAS trainer's flags (--mode=trial)
# Its container's command line (cloud_search_main.py), translated into ours by
# trainer/platform_flags.py; given with one of ours that says otherwise, a
# one-line error. Its other flags (--nas_params_str, --search_space,
# --config_file, --params_override, --retrain_*, --target_*) are ours already.
flags.DEFINE_string('job-dir', None, 'The platform\'s --job_dir.')
flags.DEFINE_string('training_data_path', None,
                    'The platform\'s --train_data.')
flags.DEFINE_string('validation_data_path', None,
                    'The platform\'s --eval_data.')
flags.DEFINE_enum('model', None,
                  sorted(platform_flags.MODEL_EXPERIMENTS) +
                  list(platform_flags.UNSUPPORTED_MODELS),
                  'The experiment: classification, retinanet, segmentation '
                  'or pointpillars means --experiment='
                  'nas_image_classification, nas_retinanet, '
                  'nas_semantic_segmentation or nas_pointpillars; default: '
                  'the space\'s (the platform\'s is retinanet).')
flags.DEFINE_bool('use_tpu', False,
                  'Train on the TPU: --accelerator=tpu '
                  '--distribution_strategy=tpu (--tpu, or the environment, '
                  'names it).')
flags.DEFINE_integer('num_cores', None,
                     'TPU cores; accepted for the platform\'s command lines: '
                     'as in its TF2 trainer, the TPU strategy trains on every '
                     'core of the TPU.')
flags.DEFINE_enum('job_mode', None, list(platform_flags.JOB_MODES),
                  'train: --evaluation=final (--evaluation=best with '
                  '--multiple_eval_during_search); train_and_eval: evaluate '
                  'every trainer.validation_interval (--evaluation=).')
flags.DEFINE_bool('skip_eval', False, 'Train without evaluating: '
                  '--evaluation=none.')
flags.DEFINE_bool('multiple_eval_during_search', False,
                  'Evaluate every trainer.validation_interval and report the '
                  'best evaluation: --evaluation=best.')
flags.DEFINE_enum('evaluation', '', list(platform_flags.EVALUATIONS),
                  'When a trial evaluates, what the three flags above '
                  'translate to. Empty: every trainer.validation_interval, '
                  'reporting the last evaluation (the best in full '
                  'training); final: once, after the last step; best: every '
                  'validation_interval, reporting the best (its checkpoint '
                  'kept in best_ckpt/); none: no evaluation, metrics without '
                  'the task\'s accuracy.')


class Args:
  """Parsed flag values by name (`args.job_dir`), and which were given on
  the command line (`args.given('experiment')`): a default and an explicit
  value equal to it differ where a later stage inherits the search's."""

  def __init__(self, values: Dict[str, Any], given: Iterable[str] = ()):
    self._values, self._given = dict(values), frozenset(given)

  @classmethod
  def parsed(cls, flag_values: flags.FlagValues) -> 'Args':
    names = list(flag_values)
    return cls({n: flag_values[n].value for n in names},
               [n for n in names if flag_values[n].present])

  def __getattr__(self, name: str) -> Any:
    try:
      return self._values[name]
    except KeyError:
      raise AttributeError(name) from None

  def given(self, name: str) -> bool:
    return name in self._given

  def value_if_given(self, name: str, default: Any = '') -> Any:
    return self._values[name] if name in self._given else default
