"""Serving latency and memory of a trained model, as Vertex AI NAS measures.

Vertex AI NAS exports a float32, batch-1 SavedModel of the trained model (with
batched NMS for RetinaNet); a worker loads it, runs 20 warm-up and N timed
inferences on a random image of the model's input size, and reports the
latency and the device memory the model used. Here the worker is a fresh
process on the trial's own device, started once training is done: `python -m
trainer.training.latency --saved_model_dir=DIR` prints the figures of
`measure` as one JSON line. It inherits the trial's CUDA_VISIBLE_DEVICES (the
GPUs the executor gave the trial), takes GPU memory only as it needs it (the
trial process keeps what training allocated), runs on the first GPU it sees,
else on the CPU, and records which as `latency_device` (`GPU:0 <name>` or
`CPU`).

Threads: the worker pins TensorFlow's intra- and inter-op pools to
MEASURE_THREADS (1) threads, so the figure is each architecture's sequential
cost, independent of the host's core count. Trials share a few CPU cores with
each other and with training, and a multi-threaded batch-1 inference waits on
whichever of its threads is descheduled: on a 2-core host with 4-5 runnable
threads, repeated measurements of one tiny model gave medians of 1.2-1.6 ms
with one thread and 2.8-7.5 ms with TensorFlow's default pools. Descheduled
runs still form a tail, so `latency_cv` can be high on a busy host while the
median (`latency_ms`) holds. `--threads=0` keeps TensorFlow's defaults.
"""

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.modeling import hyperparams
from official.projects.volumetric_models.configs import semantic_segmentation_3d
from official.projects.volumetric_models.serving import semantic_segmentation_3d as serving_3d
from official.vision.configs import retinanet
from official.vision.serving import export_saved_model_lib
# Private, and pinned with tf_keras: the only switch for Keras's SavedModel
# hooks when the saved object is not itself a Keras model.
from tf_keras.src.saving.legacy.saved_model import utils as keras_saved_model
from trainer import artifacts
from trainer import fileio
from trainer import objective
from trainer.training import devices
from trainer.training import pointpillars_task

MEASURE_THREADS = 1
# Points of the random lidar frame a PointPillars detector is timed on (a
# KITTI frame holds about 20,000 in its front-view range).
LIDAR_POINTS = 20000
SAVED_MODEL_SUBDIR = 'saved_model'
SERVING_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY


def export_serving_model(params: cfg.ExperimentConfig,
                         checkpoint_path_or_dir: str, export_dir: str) -> str:
  """Exports the checkpoint's model as Vertex AI NAS measures it; returns
  `export_dir`.

  Model Garden's export picks its classification, detection or segmentation
  module from the task config's type (the platform's task configs subclass
  those; 3D segmentation gets volumetric_models' module), builds the model
  with Model Garden's factories and restores every model variable from the
  checkpoint. The signature `serving_default` takes a [1, H, W, 3] uint8
  `inputs` image ([1, D, H, W, C] for a 3D model) and returns what Model
  Garden serves (logits and probs; detections after NMS; segmentation
  logits). A PointPillars detector is ours (pointpillars_task): `points`
  [1, N, 4] in, detections out. The config goes with it as params.yaml.
  """
  checkpoint = checkpoint_path_or_dir
  if tf.io.gfile.isdir(checkpoint):
    checkpoint = tf.train.latest_checkpoint(checkpoint)
  if not checkpoint or not tf.io.gfile.exists(checkpoint + '.index'):
    raise FileNotFoundError(f'no checkpoint at {checkpoint_path_or_dir}')
  export_params = _serving_params(params)
  trial_policy = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy('float32')
  # Without Keras's traces of every layer's call (kept only so that Keras can
  # rebuild the layers, which nothing here does): the serving signature is
  # the same, and on the tiny MnasNet export took 4.5 s, not 12.5 s, and
  # loading and timing it 0.9 s, not 4.4 s.
  try:
    with keras_saved_model.keras_option_scope(save_traces=False):
      if isinstance(export_params.task,
                    pointpillars_task.PointPillarsTaskConfig):
        pointpillars_task.export_serving_model(export_params, checkpoint,
                                               export_dir)
      else:
        _export_model_garden(export_params, checkpoint, export_dir)
  finally:
    tf_keras.mixed_precision.set_global_policy(trial_policy)
  return export_dir


def _export_model_garden(export_params: cfg.ExperimentConfig,
                         checkpoint: str, export_dir: str) -> None:
  """Model Garden's export of an image or volume model."""
  model = export_params.task.model
  size, export_module = list(model.input_size[:2]), None
  if isinstance(export_params.task,
                semantic_segmentation_3d.SemanticSegmentation3DTask):
    # Model Garden's export picks no module for 3D tasks: volumetric_models'
    # own, for a [1, D, H, W, C] volume.
    size = list(model.input_size)
    export_module = serving_3d.SegmentationModule(
        params=export_params, batch_size=1, input_image_size=size,
        input_type='image_tensor', num_channels=model.num_channels)
  export_saved_model_lib.export_inference_graph(
      input_type='image_tensor', batch_size=1, input_image_size=size,
      params=export_params, checkpoint_path=checkpoint,
      export_dir=export_dir, export_module=export_module)


def _serving_params(params: cfg.ExperimentConfig) -> cfg.ExperimentConfig:
  """An unlocked copy set up for float32 single-device serving: whatever the
  trial trained with (mixed precision, synchronized batch norm across
  replicas), the measured model is the one Vertex AI NAS measures."""
  task_override = {'model': {'norm_activation': {'use_sync_bn': False}}}
  if isinstance(params.task, retinanet.RetinaNetTask):
    task_override['model']['detection_generator'] = {'nms_version': 'batched'}
  return params.replace(
      runtime={'mixed_precision_dtype': 'float32', 'loss_scale': None},
      task=task_override)


def measure(saved_model_dir: str, warmup_runs: int = 20, timed_runs: int = 50,
            seed: int = 0) -> Dict[str, Any]:
  """Loads the SavedModel in this process and times batch-1 inferences.

  Each run calls the serving signature on the same seeded random image (a
  PointPillars detector: a random frame of LIDAR_POINTS points) and
  copies every output to the host, so the time is end to end. Memory is what
  loading and running the model added to the device's peak: GPU allocator
  bytes on a GPU, resident memory of the process on a CPU (`_CpuMemory`).
  `threads` is the intra-op pool size in effect (0: TensorFlow's default).
  Measure in a fresh process (`measure_in_subprocess`) for figures free of
  the caller's memory and thread settings.
  """
  if timed_runs < 1 or warmup_runs < 0:
    raise ValueError(f'need timed_runs >= 1 and warmup_runs >= 0, got '
                     f'{timed_runs} and {warmup_runs}')
  if not tf.saved_model.contains_saved_model(saved_model_dir):
    raise FileNotFoundError(f'no SavedModel in {saved_model_dir}')
  tf.config.list_logical_devices()  # Starts the runtime before the baseline.
  device, memory = _device_and_memory()
  serve = tf.saved_model.load(saved_model_dir).signatures[SERVING_SIGNATURE]
  input_name, image = _random_input(serve, saved_model_dir, seed)
  for _ in range(warmup_runs):
    _infer(serve, input_name, image)
  times_ms = []
  for _ in range(timed_runs):
    started = time.perf_counter()
    _infer(serve, input_name, image)
    times_ms.append((time.perf_counter() - started) * 1e3)
  times_ms = np.array(times_ms)
  return {
      objective.LATENCY: float(np.median(times_ms)),
      'latency_p90_ms': float(np.percentile(times_ms, 90)),
      'latency_mean_ms': float(times_ms.mean()),
      'latency_cv': float(times_ms.std() / times_ms.mean()),
      'timed_runs': timed_runs,
      objective.MEMORY: memory.used_bytes() / 2**20,
      'latency_device': device,
      'threads': tf.config.threading.get_intra_op_parallelism_threads(),
  }


def _infer(serve, input_name: str, image: tf.Tensor) -> None:
  """One inference, finished: outputs on the host (GPU runs are async)."""
  for output in serve(**{input_name: image}).values():
    output.numpy()


def _random_input(serve, saved_model_dir: str,
                  seed: int) -> Tuple[str, tf.Tensor]:
  """The signature's single input as a seeded random image or volume;
  unknown spatial dimensions (Model Garden's image_tensor signatures leave
  them open) take the model's input size from the exported params.yaml."""
  (input_name, spec), = serve.structured_input_signature[1].items()
  rng = np.random.default_rng(seed)
  if input_name == 'points':  # A PointPillars detector takes a lidar frame.
    params = hyperparams.read_yaml_to_params_dict(
        os.path.join(saved_model_dir, 'params.yaml'))
    return input_name, tf.constant(pointpillars_task.random_points(
        params, LIDAR_POINTS, rng))
  shape = spec.shape.as_list()
  shape[0] = shape[0] or 1
  if None in shape:
    spatial = _exported_input_size(saved_model_dir)[:len(shape) - 2]
    shape = [shape[0], *spatial, shape[-1]]
  if spec.dtype.is_integer:
    image = rng.integers(0, 256, shape)
  else:
    image = rng.uniform(0, 255, shape)
  return input_name, tf.constant(image, dtype=spec.dtype)


def _exported_input_size(saved_model_dir: str) -> List[int]:
  """The model's `input_size` from the export's params.yaml: [H, W, C] of
  an image model, [D, H, W] of a volume model."""
  path = os.path.join(saved_model_dir, 'params.yaml')
  if not tf.io.gfile.exists(path):
    raise ValueError(f'the SavedModel in {saved_model_dir} takes images of any '
                     'size and has no params.yaml to read the model\'s input '
                     'size from')
  return list(hyperparams.read_yaml_to_params_dict(
      path).task.model.input_size)


def _device_and_memory() -> Tuple[str, Any]:
  """The device the model runs on (TensorFlow places it on the first GPU
  when there is one), labelled as trials label theirs, and its memory probe
  started now."""
  gpus = tf.config.list_physical_devices('GPU')[:1]
  return gpu_label(gpus), (_GpuMemory() if gpus else _CpuMemory())


def gpu_label(gpus: List[Any]) -> str:
  """devices.device_label of TensorFlow's physical GPU devices."""
  return devices.device_label([
      tf.config.experimental.get_device_details(gpu).get('device_name', 'GPU')
      for gpu in gpus])


class _GpuMemory:
  """Peak bytes TensorFlow's allocator on GPU:0 held above its current use."""

  def __init__(self):
    tf.config.experimental.reset_memory_stats('GPU:0')
    self._baseline = tf.config.experimental.get_memory_info('GPU:0')['current']

  def used_bytes(self) -> int:
    peak = tf.config.experimental.get_memory_info('GPU:0')['peak']
    return peak - self._baseline


class _CpuMemory:
  """Peak resident memory growth of this process.

  It counts TensorFlow's own cost of loading a SavedModel (about 130 MB even
  for a tiny model) besides weights and activations. On Linux it resets the
  process's high-water mark (writing 5 to /proc/self/clear_refs) and reports
  VmHWM at the end minus VmRSS now. Where the reset is not permitted it
  reports the growth of VmHWM, which misses the part of the model's peak below
  an earlier peak of the process. Without /proc it reports the growth of
  getrusage's peak, with the same caveat.
  """

  def __init__(self):
    self._proc = os.path.exists('/proc/self/status')
    _release_free_heap()
    if self._proc and _reset_peak_rss():
      self._baseline = _proc_status_bytes('VmRSS')
    else:
      self._baseline = self._peak_bytes()

  def _peak_bytes(self) -> int:
    if self._proc:
      return _proc_status_bytes('VmHWM')
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == 'darwin' else peak * 1024  # macOS: bytes.

  def used_bytes(self) -> int:
    return max(0, self._peak_bytes() - self._baseline)


def _release_free_heap() -> None:
  """Returns freed heap pages to the OS (glibc), so that a model loaded into
  memory the process freed earlier still counts as growth."""
  try:
    ctypes.CDLL('libc.so.6').malloc_trim(0)
  except (OSError, AttributeError):
    pass  # Not glibc: the baseline keeps those pages.


def _reset_peak_rss() -> bool:
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def _proc_status_bytes(field: str) -> int:
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1]) * 1024  # Reported in kB.
  raise ValueError(f'/proc/self/status has no {field}')


def measure_in_subprocess(saved_model_dir: str, warmup_runs: int = 20,
                          timed_runs: int = 50, seed: int = 0,
                          threads: int = MEASURE_THREADS,
                          timeout_s: float = 600) -> Dict[str, Any]:
  """`measure` in a fresh `python -m trainer.training.latency` process, so training's
  memory and threads stay out of the figures.

  The worker sees the GPUs this process sees (its environment, with
  CUDA_VISIBLE_DEVICES, is passed on) and allocates memory as it needs it;
  the caller must not hold the whole GPU (TensorFlow's default) or the
  worker cannot run.
  The worker's stderr (TensorFlow's logs) goes on to this process's stderr:
  a trial's trial.log. Raises RuntimeError with its last line when it fails.
  """
  command = [sys.executable, '-m', 'trainer.training.latency',
             f'--saved_model_dir={fileio.absolute(saved_model_dir)}',
             f'--warmup_runs={warmup_runs}', f'--timed_runs={timed_runs}',
             f'--seed={seed}', f'--threads={threads}']
  env = dict(os.environ)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Keeps stderr's last line ours.
  try:
    result = subprocess.run(command, cwd=artifacts.SOURCE_ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout_s)
  except subprocess.TimeoutExpired as e:
    raise RuntimeError(f'latency measurement of {saved_model_dir} took over '
                       f'{timeout_s:g} s') from e
  sys.stderr.write(result.stderr)
  if result.returncode != 0:
    stderr_lines = result.stderr.strip().splitlines()
    raise RuntimeError(stderr_lines[-1] if stderr_lines else
                       f'latency measurement exited with {result.returncode}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def measure_trial(trial_dir: str, warmup_runs: int = 20,
                  timed_runs: int = 50) -> Dict[str, Any]:
  """Measures the model a trial exported to <trial_dir>/saved_model in a
  fresh process; the figures plus `latency_measure_s`, the time it took."""
  started = time.perf_counter()
  metrics = measure_in_subprocess(os.path.join(trial_dir, SAVED_MODEL_SUBDIR),
                                  warmup_runs, timed_runs)
  metrics['latency_measure_s'] = time.perf_counter() - started
  return metrics


def _pin_runtime(threads: int) -> None:
  """Before TensorFlow starts: fixed thread pools, and GPU memory taken as
  needed, not all of it up front."""
  if threads > 0:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  for gpu in tf.config.list_physical_devices('GPU'):
    tf.config.experimental.set_memory_growth(gpu, True)


def main(argv: Optional[list] = None) -> None:
  parser = argparse.ArgumentParser(
      prog='python -m trainer.training.latency',
      description='Measures a SavedModel\'s batch-1 serving latency and '
                  'memory; prints them as one JSON line.')
  parser.add_argument('--saved_model_dir', required=True)
  parser.add_argument('--warmup_runs', type=int, default=20)
  parser.add_argument('--timed_runs', type=int, default=50)
  parser.add_argument('--seed', type=int, default=0,
                      help='Seed of the random input image.')
  parser.add_argument('--threads', type=int, default=MEASURE_THREADS,
                      help='Intra- and inter-op threads; 0: TensorFlow\'s '
                           'defaults.')
  args = parser.parse_args(argv)
  _pin_runtime(args.threads)
  try:
    metrics = measure(args.saved_model_dir, args.warmup_runs, args.timed_runs,
                      args.seed)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f'latency measurement failed: {e}')
  print(json.dumps(metrics))


if __name__ == '__main__':
  main()
