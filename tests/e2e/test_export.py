"""Exports of real trained trials: files, served outputs, TFLite, re-export.

The trials are the shared `search_job` fixture's (3 trained mnasnet
classifiers); stores for trial selection and errors are built by hand.
"""

import json
import os
import shutil

import numpy as np
import pyglove as pg
import pytest
import tensorflow as tf

from ai_edge_litert import interpreter as litert
from official.core import task_factory
from official.modeling import hyperparams
from official.vision.ops import preprocess_ops
import search_spaces
from trainer import artifacts
from trainer import spec as spec_lib
from trainer.training import experiments
from trainer.training import export
from trainer.controller import store as store_lib
from trainer.training import trial as trial_lib

EXPORT_FILES = {'saved_model', 'model.tflite', 'nas_params_str.json',
                'dna.json', 'architecture.json', 'params.yaml', 'export.json'}
# Image sizes fed to the served model: the model's own, and one it resizes.
IMAGE_SIZES = ((32, 32), (40, 48))


def _images():
  rng = np.random.default_rng(7)
  return [rng.integers(0, 256, (1, *size, 3), np.uint8) for size in IMAGE_SIZES]


def _serve(saved_model_dir, image):
  serve = tf.saved_model.load(saved_model_dir).signatures['serving_default']
  return {k: v.numpy() for k, v in serve(inputs=tf.constant(image)).items()}


def _completed(job_dir, stage):
  store = store_lib.Store.open(job_dir, read_only=True)
  try:
    return [t for t in store.trials(stage) if t.status == store_lib.COMPLETED]
  finally:
    store.close()


@pytest.fixture(scope='module')
def exported(search_job, tmp_path_factory):
  """The search job's default export: its best trial, and the export record."""
  job_dir, _ = search_job
  stage, trial_id = export.best_trial(job_dir)
  export_dir = str(tmp_path_factory.mktemp('export'))
  record = export.export_trial(job_dir, stage, trial_id, export_dir)
  return job_dir, export_dir, record


def test_export_holds_the_model_its_decisions_and_how_to_retrain(exported):
  job_dir, export_dir, record = exported
  assert set(os.listdir(export_dir)) == EXPORT_FILES
  assert tf.saved_model.contains_saved_model(
      os.path.join(export_dir, 'saved_model'))
  trial = next(t for t in _completed(job_dir, 'search')
               if t.id == record['trial_id'])
  assert record['stage'] == 'search'
  assert record['metrics'] == trial.metrics
  assert record['tflite'] == 'model.tflite'
  assert record['tflite_select_tf_ops'] == []  # Runs on stock TFLite.
  trial_dir = artifacts.trial_dir(job_dir, 'search', trial.id)
  assert record['checkpoint'] == tf.train.latest_checkpoint(trial_dir)
  trial_config = hyperparams.read_yaml_to_params_dict(
      os.path.join(trial_dir, 'params.yaml'))
  seed = trial_config.task.train_data.seed  # The seed the trial trained with.
  assert record['seed'] == seed == 1 * 100003 + trial.id
  with open(os.path.join(export_dir, 'dna.json')) as f:
    dna = pg.from_json_str(f.read())
  space = search_spaces.get_search_space('mnasnet')
  assert dna == search_spaces.dna_from_nas_params(space, trial.nas_params_str)

  retrain = export.retrain_spec(export_dir)
  assert retrain == spec_lib.TrialSpec(
      search_space='mnasnet', experiment='nas_image_classification',
      nas_params_str=trial.nas_params_str,
      config_file=os.path.join(export_dir, 'params.yaml'),
      stage='search', seed=record['seed'])
  prepared = trial_lib.prepare(retrain)
  assert prepared.params.as_dict() == experiments.load_experiment_config(
      retrain.experiment, retrain.config_file).as_dict()


def test_served_and_tflite_outputs_equal_the_trained_model(exported):
  """The SavedModel against the trained Keras model restored from the same
  checkpoint, fed the way Model Garden's classification export module feeds
  it (center crop where configured, bilinear resize, mean/std
  normalisation); the TFLite model against the SavedModel."""
  _, export_dir, record = exported
  params = experiments.load_experiment_config(
      record['experiment'], os.path.join(export_dir, 'params.yaml'))
  model = task_factory.get_task(params.task).build_model()
  tf.train.Checkpoint(model=model).read(
      record['checkpoint']).assert_existing_objects_matched().expect_partial()
  tflite = litert.Interpreter(
      os.path.join(export_dir, 'model.tflite')).get_signature_runner(
          'serving_default')
  input_size = params.task.model.input_size[:2]
  for image in _images():
    pixels = tf.cast(image, tf.float32)
    if params.task.train_data.aug_crop:
      pixels = preprocess_ops.center_crop_image(pixels[0])[tf.newaxis]
    pixels = tf.image.resize(pixels, input_size, method='bilinear')
    pixels = preprocess_ops.normalize_image(
        pixels[0], preprocess_ops.MEAN_RGB, preprocess_ops.STDDEV_RGB)
    expected = model(pixels[tf.newaxis], training=False).numpy()
    served = _serve(os.path.join(export_dir, 'saved_model'), image)
    np.testing.assert_allclose(served['logits'], expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(served['probs'], tf.nn.softmax(expected),
                               atol=1e-5)
    assert np.abs(expected).max() > 0.1  # Trained weights, not fresh ones.
    lite = tflite(inputs=image)
    for name in ('logits', 'probs'):
      np.testing.assert_allclose(lite[name], served[name], atol=1e-4,
                                 rtol=1e-4)


def test_re_export_replaces_every_file(exported, tmp_path):
  """Another trial exported over a finished export, and over what an
  interrupted export leaves, gives that trial's export and nothing else."""
  job_dir, first_dir, first = exported
  export_dir = str(tmp_path / 'export')
  shutil.copytree(first_dir, export_dir)
  os.makedirs(os.path.join(export_dir, 'saved_model.partial'))
  with open(os.path.join(export_dir, 'augmentation_policy.json'), 'w') as f:
    f.write('{}')
  other = next(t for t in _completed(job_dir, 'search')
               if t.id != first['trial_id'])
  record = export.export_trial(job_dir, 'search', other.id, export_dir)
  assert set(os.listdir(export_dir)) == EXPORT_FILES
  with open(os.path.join(export_dir, 'export.json')) as f:
    assert json.load(f) == record
  assert record['trial_id'] == other.id
  assert export.retrain_spec(export_dir).nas_params_str == (
      other.nas_params_str)
  image = _images()[0]
  assert not np.allclose(
      _serve(os.path.join(export_dir, 'saved_model'), image)['logits'],
      _serve(os.path.join(first_dir, 'saved_model'), image)['logits'])


def _store(job_dir, stage_trials):
  """A job whose stages hold trials of (status, reward); returns its store."""
  store = store_lib.Store.open(job_dir, create=True)
  for stage, trials in stage_trials.items():
    store.claim_identity(stage, {'search_space': 'mnasnet', 'seed': 1,
                                 'experiment': 'nas_image_classification'})
    for status, reward in trials:
      trial = store.add_trial(stage, '{}')
      if status != store_lib.RUNNING:
        store.finish_trial(stage, trial.id, status, {}, reward)
  return store


def test_best_trial_is_the_best_completed_of_the_latest_stage(tmp_path):
  job_dir = str(tmp_path)
  _store(job_dir, {}).close()
  with pytest.raises(ValueError, match='no completed trial'):
    export.best_trial(job_dir)
  store = _store(job_dir, {
      'search': [(store_lib.COMPLETED, 0.9)],
      'augment_search': [(store_lib.COMPLETED, 0.3), (store_lib.COMPLETED, 0.6),
                         (store_lib.STOPPED, 0.99), (store_lib.RUNNING, None)],
      'train': [(store_lib.FAILED, None), (store_lib.RUNNING, None)]})
  assert export.best_trial(job_dir) == ('augment_search', 2)
  store.finish_trial('train', 2, store_lib.COMPLETED, {}, 0.1)
  assert export.best_trial(job_dir) == ('train', 2)
  store.close()


def test_the_best_checkpoint_is_preferred_to_the_latest(tmp_path):
  """Model Garden's best-checkpoint exporter saves to the trainer config's
  subdir (best_ckpt/ by default) as the trainer saves its own."""
  # pylint: disable=protected-access
  trial_dir = str(tmp_path)
  checkpoint = tf.train.Checkpoint(step=tf.Variable(1))

  def save_best(subdir):
    return tf.train.CheckpointManager(
        checkpoint, os.path.join(trial_dir, subdir), max_to_keep=1,
        checkpoint_name='best_ckpt').save()

  def exported_checkpoint(trainer_config):
    return export._trained_checkpoint(trial_dir, trainer_config)

  latest = checkpoint.save(os.path.join(trial_dir, 'ckpt'))
  assert exported_checkpoint({}) == latest
  default_best = save_best('best_ckpt')
  assert exported_checkpoint({}) == default_best
  configured_best = save_best('best')
  assert exported_checkpoint(
      {'best_checkpoint_export_subdir': 'best'}) == configured_best


def test_unexportable_trials_fail_in_one_line(search_job, tmp_path):
  """A missing or running trial, or a completed one without a checkpoint,
  fails before the export dir is touched."""
  job_dir = str(tmp_path / 'job')
  _store(job_dir, {'search': [(store_lib.RUNNING, None),
                              (store_lib.COMPLETED, 0.5)]}).close()
  trial_dir = artifacts.trial_dir(job_dir, 'search', 2)
  os.makedirs(trial_dir)
  real_trial_dir = artifacts.trial_dir(search_job[0], 'search', 1)
  shutil.copy(os.path.join(real_trial_dir, 'params.yaml'), trial_dir)
  export_dir = str(tmp_path / 'export')
  for stage, trial_id, error, message in (
      ('search', 9, ValueError, 'no search trial 9 in '),
      ('search', 1, ValueError, 'search trial 1 of .* is running, not '
                                'completed'),
      ('search', 2, FileNotFoundError, 'trial dir .* has no checkpoint'),
      ('nope', 1, ValueError, "unknown stage 'nope'")):
    with pytest.raises(error, match=message) as raised:
      export.export_trial(job_dir, stage, trial_id, export_dir)
    assert '\n' not in str(raised.value)
  assert not os.path.exists(export_dir)
  with pytest.raises(FileNotFoundError, match='no complete nas-garden export'):
    export.retrain_spec(str(tmp_path))


def test_failed_tflite_conversion_is_recorded_not_raised(tmp_path):
  """What a model TFLite cannot convert leaves: no file (an earlier export's
  is removed) and the converter's reason on one line."""
  # pylint: disable=protected-access
  path = tmp_path / 'model.tflite'
  path.write_bytes(b'an earlier export')
  result = export._convert_to_tflite(str(tmp_path / 'no_saved_model'),
                                     str(path))
  assert result['tflite'].startswith('not converted: ')
  assert '\n' not in result['tflite']
  assert not path.exists()
