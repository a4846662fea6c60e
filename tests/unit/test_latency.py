"""Serving export, latency and memory of real trial models (not trained).

One classification trial model is exported and measured as a trial is (its
serving export, then `measure_trial`); one RetinaNet model is exported with
its NMS.
"""

import json
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.modeling import hyperparams
from official.vision.ops import preprocess_ops
from tests.conftest import FIXTURES
from trainer import spec as spec_lib
from trainer.training import latency
from trainer.training import trial

METRIC_KEYS = {'latency_ms', 'latency_p90_ms', 'latency_mean_ms', 'latency_cv',
               'timed_runs', 'memory_mb', 'latency_device', 'threads'}
# Loose on purpose: the ~1 ms model's CV is ~0.1 on an idle host, but on a
# shared 2-core host with 2-3x more runnable threads than cores some runs lose
# a whole scheduler slice (3-8 ms), which lifts it to 0.7-1.1.
MAX_CV = 2.0


def _mnasnet_sample() -> str:
  with open(os.path.join(FIXTURES, 'mnasnet.json')) as f:
    return json.load(f)['nas_params_str_samples'][0]


def _checkpointed_model(inputs: spec_lib.TrialSpec, trial_dir: str):
  """A prepared trial's model checkpointed in its trial dir as training leaves
  it. Its weights are moved off their initial values (fresh logits are ~1e-9),
  so outputs tell restored weights from fresh ones."""
  prepared = trial.prepare(inputs.replace(nas_params_str=_mnasnet_sample()),
                           trial_dir)
  model = task_factory.get_task(prepared.params.task).build_model()
  rng = np.random.default_rng(0)
  for variable in model.trainable_variables:
    variable.assign_add(rng.normal(0, 0.1, variable.shape).astype(np.float32))
  checkpoint = tf.train.Checkpoint(model=model).save(
      os.path.join(trial_dir, 'ckpt'))
  return prepared, model, checkpoint


def _random_image(size, seed=1) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, [1, *size, 3], np.uint8)


@pytest.fixture(scope='module')
def classification(tmp_path_factory):
  """A mnasnet classifier exported, after training left a mixed precision
  policy behind, and measured by `measure_trial`."""
  trial_dir = str(tmp_path_factory.mktemp('classification_trial'))
  prepared, model, checkpoint = _checkpointed_model(
      spec_lib.TrialSpec(search_space='mnasnet'), trial_dir)
  policy_before = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy('mixed_float16')
  try:
    latency.export_serving_model(
        prepared.params, checkpoint,
        os.path.join(trial_dir, latency.SAVED_MODEL_SUBDIR))
    policy_after_export = tf_keras.mixed_precision.global_policy().name
  finally:
    tf_keras.mixed_precision.set_global_policy(policy_before)
  metrics = latency.measure_trial(trial_dir, warmup_runs=20, timed_runs=30)
  return {'prepared': prepared, 'model': model, 'metrics': metrics,
          'policy_after_export': policy_after_export,
          'saved_model_dir': os.path.join(trial_dir,
                                          latency.SAVED_MODEL_SUBDIR)}


def _serve(saved_model_dir: str, image: np.ndarray):
  serve = tf.saved_model.load(saved_model_dir).signatures[
      latency.SERVING_SIGNATURE]
  return serve, serve(inputs=tf.constant(image))


def test_classification_export_serves_the_checkpointed_model(classification):
  size = classification['prepared'].params.task.model.input_size[:2]
  image = _random_image(size)
  serve, served = _serve(classification['saved_model_dir'], image)
  (spec,) = serve.structured_input_signature[1].values()
  assert spec.shape.as_list() == [1, None, None, 3] and spec.dtype == tf.uint8
  assert served['logits'].dtype == tf.float32  # Not the trial's float16.
  assert classification['policy_after_export'] == 'mixed_float16'

  # Model Garden's serving preprocessing of an image already at input size.
  normalized = (image.astype(np.float32) - preprocess_ops.MEAN_RGB) / (
      preprocess_ops.STDDEV_RGB)
  expected = classification['model'](normalized, training=False).numpy()
  np.testing.assert_allclose(served['logits'].numpy(), expected, atol=1e-4)
  # The comparison tells models apart: fresh weights give other logits.
  fresh = task_factory.get_task(
      classification['prepared'].params.task).build_model()
  assert not np.allclose(fresh(normalized, training=False).numpy(), expected,
                         atol=1e-4)


def test_export_holds_the_serving_signature_without_keras_layer_traces(
    classification):
  """Keras's per-layer call traces (for a Keras reload nothing does) would
  triple the export's time; the serving function is still saved."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  saved = saved_model_pb2.SavedModel()
  with open(os.path.join(classification['saved_model_dir'],
                         'saved_model.pb'), 'rb') as f:
    saved.ParseFromString(f.read())
  functions = [f.signature.name for graph in saved.meta_graphs
               for f in graph.graph_def.library.function]
  assert any('inference_from_image_tensors' in name for name in functions)
  traced_layers = [name for name in functions if 'layer_call' in name]
  assert not traced_layers, f'{len(traced_layers)}: {traced_layers[:3]}'


def test_detection_export_returns_detections_after_batched_nms(tmp_path):
  trial_dir = str(tmp_path)
  # Every box passes the score threshold, so NMS alone caps the detections.
  inputs = spec_lib.TrialSpec(
      search_space='mnasnet', experiment='nas_retinanet',
      params_override=('task.model.detection_generator.'
                       'pre_nms_score_threshold=0'))
  prepared, _, checkpoint = _checkpointed_model(inputs, trial_dir)
  model_config = prepared.params.task.model
  saved_model_dir = latency.export_serving_model(
      prepared.params, checkpoint, os.path.join(trial_dir, 'export'))

  height, width = model_config.input_size[:2]
  _, served = _serve(saved_model_dir, _random_image([height, width]))
  max_detections = model_config.detection_generator.max_num_detections
  assert served['num_detections'].numpy().tolist() == [max_detections]
  assert served['detection_boxes'].shape == [1, max_detections, 4]
  boxes = served['detection_boxes'].numpy()
  assert (boxes >= 0).all() and (boxes[..., 2] <= height).all() and (
      boxes[..., 3] <= width).all()
  scores = served['detection_scores'].numpy()[0]
  assert (np.diff(scores) <= 1e-6).all()  # NMS output, best first.
  exported = hyperparams.read_yaml_to_params_dict(
      os.path.join(saved_model_dir, 'params.yaml'))
  assert exported.task.model.detection_generator.nms_version == 'batched'
  assert model_config.detection_generator.nms_version != 'batched'


def test_measure_reports_latency_spread_and_memory(classification):
  metrics = latency.measure(classification['saved_model_dir'], timed_runs=40)
  assert set(metrics) == METRIC_KEYS
  assert metrics['timed_runs'] == 40
  assert 0 < metrics['latency_ms'] <= metrics['latency_p90_ms']
  assert metrics['latency_mean_ms'] > 0
  assert 0 < metrics['latency_cv'] < MAX_CV
  assert metrics['memory_mb'] > 0
  gpus = tf.config.list_physical_devices('GPU')
  assert metrics['latency_device'].startswith('GPU:0 ' if gpus else 'CPU')


class _StandInGpuMemory:
  def used_bytes(self):
    return 0


@pytest.mark.parametrize('gpus, label', [
    ([], 'CPU'), (['gpu0', 'gpu1'], 'GPU:0 NVIDIA H200')])
def test_the_worker_measures_on_the_first_gpu_it_sees(monkeypatch, gpus,
                                                      label):
  """Stand-in device lists: with GPUs the label and memory probe are the
  first GPU's, without them the CPU's."""
  monkeypatch.setattr(latency.tf.config, 'list_physical_devices',
                      lambda kind: gpus if kind == 'GPU' else ['cpu'])
  monkeypatch.setattr(latency.tf.config.experimental, 'get_device_details',
                      lambda gpu: {'device_name': 'NVIDIA H200'})
  monkeypatch.setattr(latency, '_GpuMemory', _StandInGpuMemory)
  device, memory = latency._device_and_memory()
  assert device == label
  assert isinstance(memory, _StandInGpuMemory if gpus else latency._CpuMemory)


def test_the_worker_inherits_the_trials_gpus(monkeypatch, tmp_path):
  """The measuring process gets the trial process's CUDA_VISIBLE_DEVICES
  (the GPUs its executor gave it)."""
  started = {}

  def stand_in_run(command, env, **unused_kwargs):
    started.update(command=command, env=env)
    return subprocess.CompletedProcess(command, 0, '{"latency_ms": 1.0}\n', '')

  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '2,3')
  monkeypatch.setattr(latency.subprocess, 'run', stand_in_run)
  assert latency.measure_in_subprocess(str(tmp_path)) == {'latency_ms': 1.0}
  assert started['command'][1:3] == ['-m', 'trainer.training.latency']
  assert started['env']['CUDA_VISIBLE_DEVICES'] == '2,3'


def test_measure_trial_measures_in_a_fresh_pinned_process(classification):
  metrics = classification['metrics']
  assert set(metrics) == METRIC_KEYS | {'latency_measure_s'}
  assert metrics['threads'] == latency.MEASURE_THREADS
  assert metrics['timed_runs'] == 30
  assert 0 < metrics['latency_ms'] <= metrics['latency_p90_ms']
  assert 0 < metrics['latency_cv'] < MAX_CV
  assert metrics['memory_mb'] > 0
  assert metrics['latency_measure_s'] > 0
  # The fresh process sees this one's devices.
  assert metrics['latency_device'].startswith(
      'GPU:0 ' if tf.config.list_physical_devices('GPU') else 'CPU')


def test_missing_model_or_checkpoint_is_a_one_line_error(tmp_path,
                                                         classification):
  missing = str(tmp_path / 'no_model')
  with pytest.raises(FileNotFoundError, match='no SavedModel in .*no_model'):
    latency.measure(missing)
  with pytest.raises(RuntimeError) as failed:
    latency.measure_in_subprocess(missing, timed_runs=1)
  assert str(failed.value) == (
      f'latency measurement failed: no SavedModel in {missing}')
  with pytest.raises(FileNotFoundError, match='no checkpoint at'):
    latency.export_serving_model(classification['prepared'].params,
                                 str(tmp_path), str(tmp_path / 'export'))
