"""One trial: a nas_params_str in, a trained Model Garden model and metrics out.

The only place that trains. The controller runs it in a fresh process per
trial (`--mode=trial`), exactly as a cloud training job would.
"""

import inspect
import json
import os
import time
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np
import pyglove as pg
import tensorflow as tf
import tf_keras

from official.common import distribute_utils
from official.core import config_definitions as cfg
from official.core import task_factory
from official.core import train_lib
from official.core import train_utils
from official.modeling import performance
from official.vision.utils import summary_manager
from augment import parsers
import configs
import search_spaces
from trainer.training import architectures
from trainer import artifacts
from trainer import fileio
from trainer import objective
from trainer import outcome
from trainer import spec as spec_lib
from trainer.datasets import data
from trainer.datasets import lidar
from trainer.datasets import scenes
from trainer.datasets import shapes
from trainer.datasets import volumes
from trainer.training import devices
from trainer.training import experiments
from trainer.training import latency


class TaskFamily(NamedTuple):
  """What an experiment trains: names its configs, metric and built-in data."""
  name: str         # classification | detection | segmentation
  eval_metric: str  # Eval log key of the trial's accuracy.
  reported_as: str  # Name of that metric in the trial's metrics.


TASK_FAMILIES = {
    'nas_image_classification': TaskFamily(
        'classification', 'accuracy', 'top_1_accuracy'),
    'nas_retinanet': TaskFamily('detection', 'AP', 'AP'),
    'nas_semantic_segmentation': TaskFamily('segmentation', 'mean_iou', 'miou'),
    # Model Garden's generalised Dice (class-weighted mean over the classes).
    'nas_segmentation_3d': TaskFamily('segmentation3d',
                                      'val_generalized_dice', 'dice'),
    # Mean BEV AP over the classes (trainer/training/pointpillars_task.py).
    'nas_pointpillars': TaskFamily('detection3d', 'AP', 'AP'),
}


# The experiment an augmentation policy trains in, by its op table's task.
AUGMENTATION_EXPERIMENTS = {'detection': 'nas_retinanet',
                            'segmentation': 'nas_semantic_segmentation'}


# Model Garden keeps the best evaluation's checkpoint of a full training here.
BEST_CHECKPOINT_DIR = 'best_ckpt'

# Whose tiny CPU config a preview of each task's augmentation reads by default.
PREVIEW_CONFIG_SPACES = {'detection': 'spinenet', 'segmentation': 'nasfpn'}


class PreparedTrial(NamedTuple):
  spec: Any  # The architecture.
  nas_params_str: str
  experiment: str
  config_file: str  # Resolved path(s) of the YAML the config came from.
  params: cfg.ExperimentConfig
  seed: int
  policy_spec: Any = None  # The augmentation policy, in augmentation trials.
  evaluation: str = ''  # When it evaluates (spec.Runtime.evaluation).

  @property
  def quality_metric(self) -> str:
    """The name the trial reports its task's accuracy under."""
    return TASK_FAMILIES[self.experiment].reported_as

  @property
  def task_name(self) -> str:
    return TASK_FAMILIES[self.experiment].name


def prepare(inputs: spec_lib.TrialSpec, data_dir: str = '') -> PreparedTrial:
  """Validates every input and builds the trial's config, without training.
  Built-in data, when the spec names none, is written under `data_dir`.

  Raises a ValueError subclass or FileNotFoundError with a one-line message.
  """
  nas_params_str, seed = inputs.nas_params_str, inputs.seed
  searched = _materialize(inputs.search_space, nas_params_str)
  augmentation_task = search_spaces.augmentation_task(inputs.search_space)
  policy_spec = None
  if augmentation_task:
    if not (inputs.base_search_space and inputs.base_nas_params_str):
      raise ValueError(
          f'{inputs.search_space} searches a policy for a fixed architecture: '
          'give its --base_search_space and --base_nas_params_str (or '
          '--base_job_dir)')
    policy_spec, arch_space = searched, inputs.base_search_space
    spec = _materialize(arch_space, inputs.base_nas_params_str)
  else:
    spec, arch_space = searched, inputs.search_space
  binding = architectures.binding_for(spec)
  experiment = inputs.experiment or AUGMENTATION_EXPERIMENTS.get(
      augmentation_task, binding.default_experiment)
  family = _family(experiment)
  if augmentation_task and augmentation_task != family.name:
    raise ValueError(f'{inputs.search_space} augments {augmentation_task} '
                     f'data; experiment {experiment} trains {family.name}')
  gpus = len(tf.config.list_physical_devices('GPU'))
  accelerator = devices.resolve(inputs.runtime.accelerator,
                                inputs.runtime.tpu, gpus)
  config_file = configs.resolve(
      inputs.config_file or devices.default_config(
          arch_space, binding.config_space, family.name, inputs.config_stage,
          accelerator, configs.shipped()))
  params = _load_config(inputs, data_dir, experiment, config_file, seed)
  architectures.apply_architecture(params, spec)
  if policy_spec is not None:
    _apply_policy(params, family.name, policy_spec)
  if inputs.config_stage == 'train' or inputs.runtime.evaluation == 'best':
    params.trainer.best_checkpoint_export_subdir = BEST_CHECKPOINT_DIR
    params.trainer.best_checkpoint_eval_metric = family.eval_metric
    params.trainer.best_checkpoint_metric_comp = 'higher'
  if inputs.runtime.evaluation == 'final':
    params.trainer.validation_interval = params.trainer.train_steps
  _apply_runtime(params.runtime, inputs.runtime, accelerator, gpus)
  if inputs.init_checkpoint:
    params.task.init_checkpoint = inputs.init_checkpoint
    params.task.init_checkpoint_modules = (
        'decoder' if search_spaces.search_space_kind(binding.config_space) ==
        'decoder' else 'backbone')
  params.lock()
  return PreparedTrial(spec, nas_params_str, experiment, config_file, params,
                       seed, policy_spec, inputs.runtime.evaluation)


def _apply_runtime(config: cfg.RuntimeConfig, runtime: spec_lib.Runtime,
                   accelerator: str, gpus: int) -> None:
  """Maps the trial's runtime flags onto Model Garden's runtime config, for
  the `gpus` GPUs this process sees and the accelerator it trains on."""
  if config.distribution_strategy != 'tpu':
    config.num_gpus = devices.num_gpus(accelerator, gpus)
  if runtime.distribution_strategy:
    config.distribution_strategy = runtime.distribution_strategy
    config.num_gpus = (min(gpus, 1) if runtime.distribution_strategy ==
                       'one_device' else gpus)
  if runtime.tpu:
    config.tpu = runtime.tpu
  if runtime.cpu_replicas > 1 and (
      gpus or config.distribution_strategy not in ('mirrored',
                                                   'multi_worker_mirrored')):
    raise ValueError('--cpu_replicas needs a mirrored or '
                     'multi_worker_mirrored strategy on a machine without '
                     'GPUs')
  if runtime.mixed_precision:
    on_gpu = bool(gpus) and config.distribution_strategy != 'tpu'
    config.mixed_precision_dtype = 'float16' if on_gpu else 'bfloat16'
    config.loss_scale = 'dynamic' if on_gpu else None


def init_devices(cpu_replicas: int) -> None:
  """First thing in a trial process, before TensorFlow initialises its
  devices: GPU memory grows as needed (so the latency worker and other
  trials can share the GPU), and the CPU becomes `cpu_replicas` logical
  devices when asked."""
  for gpu in tf.config.list_physical_devices('GPU'):
    tf.config.experimental.set_memory_growth(gpu, True)
  split_cpu(cpu_replicas)


def split_cpu(replicas: int) -> None:
  """Makes the CPU `replicas` logical devices; must run before TensorFlow
  initialises its devices."""
  if replicas > 1:
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)


def _strategy(runtime: cfg.RuntimeConfig) -> tf.distribute.Strategy:
  """Model Garden's strategy for the runtime config; mirrored over the
  logical CPUs when split_cpu made several."""
  cpus = tf.config.list_logical_devices('CPU')
  if (len(cpus) > 1 and not runtime.num_gpus and runtime.distribution_strategy
      in ('mirrored', 'multi_worker_mirrored')):
    return tf.distribute.MirroredStrategy([d.name for d in cpus])
  return distribute_utils.get_distribution_strategy(
      distribution_strategy=runtime.distribution_strategy,
      all_reduce_alg=runtime.all_reduce_alg,
      num_gpus=runtime.num_gpus,
      tpu_address=runtime.tpu)


def data_config(inputs: spec_lib.TrialSpec, data_dir: str,
                task: str) -> cfg.ExperimentConfig:
  """`task`'s experiment config with its data resolved and no architecture:
  what an augmentation preview reads images and pixel constants from.

  The default config is the task's tiny CPU config of PREVIEW_CONFIG_SPACES.
  """
  experiment = inputs.experiment or AUGMENTATION_EXPERIMENTS[task]
  config_file = configs.resolve(
      inputs.config_file or f'{PREVIEW_CONFIG_SPACES[task]}_{task}_search_cpu')
  return _load_config(inputs, data_dir, experiment, config_file, seed=0)


def _family(experiment: str) -> TaskFamily:
  if experiment not in TASK_FAMILIES:
    raise experiments.ConfigError(
        f'unknown experiment {experiment!r}; valid: '
        f'{", ".join(sorted(TASK_FAMILIES))}')
  return TASK_FAMILIES[experiment]


def _load_config(inputs: spec_lib.TrialSpec, data_dir: str, experiment: str,
                 config_file: str, seed: int) -> cfg.ExperimentConfig:
  """The experiment's config from its file and overrides, with data and seed."""
  family = _family(experiment)
  params = experiments.load_experiment_config(
      experiment, config_file, inputs.params_override)
  params.override({'task': _data_override(inputs, data_dir, params,
                                          family.name)},
                  is_strict=True)
  params.override({'task': {'train_data': {'seed': seed}}}, is_strict=True)
  if params.task.model.num_classes <= 0:
    raise experiments.ConfigError(
        'task.model.num_classes must be set for your own data '
        '(config file or --params_override)')
  if family.name == 'segmentation3d':
    _check_volume_sizes(params.task)
  return params


def _check_volume_sizes(task: cfg.TaskConfig) -> None:
  """Model Garden's 3D reader reshapes each record to its data config's
  sizes: they must be the model's, or a trial fails deep in the input
  pipeline."""
  for split in ('train_data', 'validation_data'):
    for key in ('input_size', 'num_classes', 'num_channels'):
      data_value = getattr(task, split).as_dict()[key]
      model_value = task.model.as_dict()[key]
      if data_value != model_value:
        raise experiments.ConfigError(
            f'task.{split}.{key} is {data_value} but task.model.{key} is '
            f'{model_value}: give your 3D data\'s sizes to both')


def _materialize(space_name: str, nas_params_str: str) -> Any:
  space = search_spaces.get_search_space(space_name)
  return search_spaces.materialize(
      space, search_spaces.dna_from_nas_params(space, nas_params_str))


def _apply_policy(params: cfg.ExperimentConfig, task: str,
                  policy_spec: Any) -> None:
  """Puts the policy where the platform's configs carry it, once it builds."""
  spec_json = pg.to_json_str(policy_spec)
  parsers.build_policy(spec_json, task, params.task.augment_options)
  train_data = params.task.train_data
  (train_data.parser if task == 'detection' else train_data).aug_policy = (
      spec_json)


def _data_override(inputs: spec_lib.TrialSpec, data_dir: str,
                   params: cfg.ExperimentConfig, task: str) -> dict:
  """Points the config at the user's TFRecords, or at built-in data."""
  if bool(inputs.train_data) != bool(inputs.eval_data):
    raise ValueError('give both --train_data and --eval_data, or neither '
                     '(built-in data)')
  if inputs.train_data:
    data.check_files(inputs.train_data, '--train_data')
    data.check_files(inputs.eval_data, '--eval_data')
    return {'train_data': {'input_path': inputs.train_data},
            'validation_data': {'input_path': inputs.eval_data}}
  if params.task.train_data.input_path:
    data.check_files(params.task.train_data.input_path,
                     'task.train_data.input_path')
    data.check_files(params.task.validation_data.input_path,
                     'task.validation_data.input_path')
    return {}
  if task == 'detection3d':
    scene_data = lidar.make_scenes(os.path.join(data_dir, 'lidar'))
    return {'train_data': {'input_path': scene_data.train_glob},
            'validation_data': {'input_path': scene_data.eval_glob}}
  size = params.task.model.input_size[0] if params.task.model.input_size else 32
  if task == 'segmentation3d':
    volume_data = volumes.make_volumes(
        os.path.join(data_dir, f'volumes_{size}'), volume_size=size)
    sizes = {'num_classes': volume_data.num_classes,
             'num_channels': volume_data.num_channels}
    data_sizes = {**sizes, 'input_size': [size] * 3,
                  'label_dtype': volumes.LABEL_DTYPE}
    return {'train_data': {'input_path': volume_data.train_glob, **data_sizes},
            'validation_data': {'input_path': volume_data.eval_glob,
                                **data_sizes},
            'model': sizes}
  if task == 'classification':
    paths = _builtin_classification(params.task.builtin_data, data_dir, size)
    return {'train_data': {'input_path': paths.train},
            'validation_data': {'input_path': paths.eval},
            'model': {'num_classes': paths.num_classes}}
  scene_data = scenes.make_scenes(
      os.path.join(data_dir, f'scenes_{size}'), image_size=size)
  override = {'train_data': {'input_path': scene_data.train_glob},
              'validation_data': {'input_path': scene_data.eval_glob},
              'model': {'num_classes': scene_data.num_classes}}
  if task == 'detection':
    override['annotation_file'] = scene_data.eval_annotation_file
  return override


def _builtin_classification(name: str, data_dir: str,
                            size: int) -> data.DataPaths:
  """Built-in classification data `name` (task.builtin_data), written once
  under `data_dir`: digits at the config's image size; shapes always at 64
  px (the input pipeline resizes), so proxies at other sizes see the same
  images."""
  if name == 'shapes':
    return shapes.make_shapes(os.path.join(data_dir, 'shapes_64'))
  if name == 'digits':
    return data.make_digits(os.path.join(data_dir, f'digits_{size}'), size)
  raise experiments.ConfigError(
      f'unknown task.builtin_data {name!r}; valid: digits, shapes')


class EvalRecorder:
  """Orbit eval action keeping each evaluation's scalar metrics (named as in
  metrics.json, with the step) and appending them to evaluations.jsonl as
  they come, for the controller's early stopping.

  Orbit evaluates every `validation_interval` steps and at the end, counting
  from the step a re-run trial restores from its checkpoint.
  """

  def __init__(self, path: str, experiment: str, params: cfg.ExperimentConfig,
               first_step: int):
    self.records: List[Dict[str, float]] = []
    self._path, self._experiment = path, experiment
    self._interval = params.trainer.validation_interval
    self._last_step, self._first_step = params.trainer.train_steps, first_step

  def __call__(self, output: Dict[str, Any]) -> None:
    record = _final_metrics(self._experiment, {
        k: float(v) for k, v in output.items() if np.ndim(v) == 0})
    record['step'] = min(self._last_step, self._first_step +
                         self._interval * (len(self.records) + 1))
    self.records.append(record)
    fileio.append_text(self._path, json.dumps(record) + '\n')


class LoopTimer:
  """Orbit train action stamping the end of each train loop."""

  def __init__(self):
    self.times: List[float] = []

  def __call__(self, unused_output: Dict[str, Any]) -> None:
    self.times.append(time.perf_counter())

  def steady_steps_per_s(self, steps_per_loop: int) -> Optional[float]:
    """Train speed after the first loop, which includes the graph trace."""
    if len(self.times) < 2:
      return None
    return steps_per_loop * (len(self.times) - 1) / (self.times[-1] - self.times[0])


def estimate_flops(prepared: PreparedTrial) -> Optional[float]:
  """Multiply-adds (billions) of one image through the untrained model: what
  the controller screens candidates with before training any."""
  try:
    model = task_factory.get_task(prepared.params.task).build_model()
    flops = _count_flops(model, prepared.params.task.model)
  finally:
    tf_keras.backend.clear_session()
  return flops / 2 / 1e9 if flops else None


def run(prepared: PreparedTrial, trial_dir: str,
        started_at: Optional[float] = None, export_serving_model: bool = False,
        extra_metrics: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """Trains and evaluates the prepared trial; writes and returns its metrics.

  Metrics are the last evaluation's, or in full training (best checkpoint
  kept, or evaluation 'best') the best evaluation's; with evaluation 'none'
  the trial trains only. With `export_serving_model` the trained model is
  exported as a batch-1 SavedModel (what latency is measured on, after this
  process ends). `extra_metrics` (e.g. the search trial a retraining
  retrains) are recorded with the metrics.
  """
  started_at = started_at or time.time()
  fileio.makedirs(trial_dir)
  fileio.write_text(os.path.join(trial_dir, artifacts.NAS_PARAMS_FILE),
                    prepared.nas_params_str)
  fileio.write_text(os.path.join(trial_dir, artifacts.ARCHITECTURE_FILE),
                    pg.to_json_str(prepared.spec, json_indent=1))
  if prepared.policy_spec is not None:
    fileio.write_text(os.path.join(trial_dir, artifacts.POLICY_FILE),
                      pg.to_json_str(prepared.policy_spec, json_indent=1))
  train_utils.serialize_config(prepared.params, trial_dir)
  params = prepared.params
  tf_keras.utils.set_random_seed(prepared.seed)

  if params.runtime.mixed_precision_dtype:
    performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
  strategy = _strategy(params.runtime)
  with strategy.scope():
    task = task_factory.get_task(params.task, logging_dir=trial_dir)
  restored = tf.train.latest_checkpoint(trial_dir)
  first_step = int(restored.rsplit('-', 1)[1]) if restored else 0
  train_loops = LoopTimer()
  evals = EvalRecorder(
      os.path.join(trial_dir, artifacts.EVALUATIONS_FILE), prepared.experiment,
      params, first_step)
  with strategy.scope():
    trainer = train_utils.create_trainer(
        params, task, train=True, evaluate=prepared.evaluation != 'none',
        checkpoint_exporter=train_utils.maybe_create_best_ckpt_exporter(
            params, trial_dir))
    # Counting FLOPs traces the forward pass, which also builds a subclassed
    # model's lazy layers (RetinaNet's head, a segmentation head).
    flops = _count_flops(trainer.model, params.task.model)
    create_slots(trainer.optimizer, trainer.model.trainable_variables)
  setup_done = time.time()
  # Model Garden's runner sets up the Orbit controller (checkpoints,
  # summaries, actions); its run() would count the FLOPs again afterwards,
  # so the controller is driven here.
  mode = 'train' if prepared.evaluation == 'none' else 'train_and_eval'
  runner = train_lib.OrbitExperimentRunner(
      distribution_strategy=strategy, task=task, trainer=trainer, mode=mode,
      params=params, model_dir=trial_dir,
      train_actions=[train_loops], eval_actions=[evals],
      eval_summary_manager=summary_manager.maybe_build_eval_summary_manager(
          params=params, model_dir=trial_dir))
  try:
    with strategy.scope():
      if mode == 'train':
        runner.controller.train(steps=params.trainer.train_steps)
      else:
        runner.controller.train_and_evaluate(
            train_steps=params.trainer.train_steps,
            eval_steps=params.trainer.validation_steps,
            eval_interval=params.trainer.validation_interval)
  except tf.errors.DataLossError as e:
    corrupt = data.find_corrupt_record([params.task.train_data.input_path,
                                        params.task.validation_data.input_path])
    raise ValueError(f'corrupt TFRecord data: {corrupt or e.message}') from e
  trained = time.time()
  if not evals.records and prepared.evaluation != 'none':
    raise RuntimeError('the trial ran no evaluation; check trainer.train_steps '
                       'and trainer.validation_interval')
  reported = evals.records[-1] if evals.records else {'step': None}
  if params.trainer.best_checkpoint_export_subdir:
    reported = max(evals.records, key=lambda r: r[prepared.quality_metric])
  metrics = {k: v for k, v in reported.items() if k != 'step'}
  metrics.update(extra_metrics or {}, evaluated_step=reported['step'])
  metrics.update({
      objective.FLOPS: flops / 2 / 1e9 if flops else None,
      'params': int(trainer.model.count_params()),
      'train_steps': int(params.trainer.train_steps),
      'replicas': int(strategy.num_replicas_in_sync),
      'device': _device(params.runtime),
      'compute_dtype': tf_keras.mixed_precision.global_policy().compute_dtype,
      'steady_steps_per_s': train_loops.steady_steps_per_s(
          params.trainer.steps_per_loop),
      'setup_s': setup_done - started_at,
      'train_and_eval_s': trained - setup_done,
      'total_s': time.time() - started_at,
      'evaluations': evals.records,
      'quality_metric': prepared.quality_metric,
  })
  if export_serving_model:
    latency.export_serving_model(
        params, best_checkpoint(trial_dir),
        os.path.join(trial_dir, latency.SAVED_MODEL_SUBDIR))
  outcome.write_metrics(trial_dir, metrics)
  return metrics


def _device(runtime: cfg.RuntimeConfig) -> str:
  """Where the trial trained: `TPU`, `GPU:0 <name>` (`xN` for N GPUs) or
  `CPU`."""
  if runtime.distribution_strategy == 'tpu':
    return 'TPU'
  return latency.gpu_label(
      tf.config.list_physical_devices('GPU')[:runtime.num_gpus])


def best_checkpoint(trial_dir: str) -> Optional[str]:
  """The kept best checkpoint of a full training, else the latest one."""
  return (tf.train.latest_checkpoint(os.path.join(trial_dir, BEST_CHECKPOINT_DIR))
          or tf.train.latest_checkpoint(trial_dir))


def create_slots(optimizer: Any, variables: List[tf.Variable]) -> None:
  """Creates the optimizer's slot variables before the first training step.
  With the model built too, no variable is left for Orbit's training loop
  to create in its first trace, which a tf.function would then trace again
  without (the loop is a trial's costliest trace: 36 s of a tiny SpineNet
  detection trial's 64 s)."""
  if isinstance(optimizer, tf_keras.optimizers.legacy.Optimizer):
    optimizer._create_all_weights(variables)  # pylint: disable=protected-access  (the public route is a training step)
  else:
    optimizer.build(variables)


def _count_flops(model: tf_keras.Model,
                 model_config: Any) -> Optional[int]:
  """FLOPs of one image or volume; subclassed models (RetinaNet,
  segmentation) get an explicit input spec for the first argument of `call`
  (a 3D model's input size has no channels: `num_channels` adds them)."""
  if model.inputs:
    return train_utils.try_count_flops(model)
  shape = list(model_config.input_size)
  if 'num_channels' in model_config.as_dict():
    shape.append(model_config.num_channels)
  first_arg = next(iter(inspect.signature(model.call).parameters))
  return train_utils.try_count_flops(
      model, {first_arg: tf.TensorSpec([1, *shape], tf.float32)})


def _final_metrics(experiment: str, eval_record: Dict[str, float]) -> dict:
  """Every scalar of the last evaluation, the task's metric under its name."""
  family = TASK_FAMILIES[experiment]
  metrics = dict(eval_record)
  metrics[family.reported_as] = metrics.pop(family.eval_metric)
  return metrics

