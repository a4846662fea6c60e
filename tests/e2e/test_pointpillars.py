"""PointPillars searches through the CLI on the built-in lidar scenes: a
two-trial search in the default suite (each trial's network built from its
architecture, trained and evaluated with BEV/3D AP per class); export and
latency in `make test-all`."""

import json

import pytest

import search_spaces
from tests.conftest import cli
from tests.conftest import exported_and_timed
from trainer.controller import store as store_lib

# Real but minimal: 2 train steps of batch 2 on a coarse grid (1.28 m
# pillars: 54 x 62 cells), one evaluation of 2 scenes.
TINY_LIDAR = ('task.model.pillars.pillar_size=[1.28,1.28],'
              'task.model.pillars.max_pillars=1000,'
              'trainer.train_steps=2,trainer.steps_per_loop=2,'
              'trainer.summary_interval=2,trainer.validation_interval=2,'
              'trainer.checkpoint_interval=2,trainer.validation_steps=1,'
              'task.train_data.global_batch_size=2,'
              'task.validation_data.global_batch_size=2')


def test_pointpillars_search_trains_two_architectures(tmp_path):
  result = cli(f'--job_dir={tmp_path}', '--mode=search',
               '--search_space=pointpillars', '--max_trials=2',
               '--max_failed_trials=1', '--seed=5',
               f'--params_override={TINY_LIDAR}', timeout=1800)
  assert result.returncode == 0, result.stderr[-3000:]
  store = store_lib.Store.open(str(tmp_path), read_only=True)
  trials = store.trials('search')
  assert [t.status for t in trials] == ['completed'] * 2, [
      t.error for t in trials]
  assert store.job_identity('search')['quality_metric'] == 'AP'
  assert len({t.nas_params_str for t in trials}) == 2
  space = search_spaces.get_search_space('pointpillars')
  for trial in trials:
    search_spaces.dna_from_nas_params(space, trial.nas_params_str)
    assert trial.reward == pytest.approx(trial.metrics['AP'])
    assert 0 <= trial.metrics['AP'] <= 1
    assert {'AP_BEV/car@0.5', 'APH_BEV/car@0.7', 'AP_3D/car@0.7'} <= set(
        trial.metrics)
    assert trial.metrics['multi_add_flops_billion'] > 0
  # Each trial trained the network of its own architecture.
  params = [json.loads((tmp_path / 'trials' / str(t.id) / 'metrics.json'
                        ).read_text())['params'] for t in trials]
  assert params[0] != params[1]


@pytest.mark.slow
def test_a_trained_detector_exports_and_is_timed(tmp_path):
  """The SavedModel serves a lidar frame's points and is timed on a random
  one; its TFLite conversion serves the same detections (in `make
  test-all`)."""
  result = cli(f'--job_dir={tmp_path}', '--mode=search',
               '--search_space=pointpillars', '--max_trials=1', '--seed=5',
               f'--params_override={TINY_LIDAR}', timeout=1800)
  assert result.returncode == 0, result.stderr[-3000:]
  serve = exported_and_timed(tmp_path)
  import numpy as np  # pylint: disable=g-import-not-at-top  (TensorFlow: only here)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer.datasets import lidar  # pylint: disable=g-import-not-at-top
  scene = lidar.render_scene(np.random.default_rng(3))
  found = serve(points=tf.constant(scene.points[None]))
  assert found['boxes'].shape == (1, 100, 7)
  assert 0 <= int(found['num_detections'][0]) <= 100
  # TFLite converts it with builtin ops only, and detects what it detects.
  exported = json.loads((tmp_path / 'export' / 'export.json').read_text())
  assert (exported['tflite'], exported['tflite_select_tf_ops']) == (
      'model.tflite', [])
  interpreter = tf.lite.Interpreter(str(tmp_path / 'export' / 'model.tflite'))
  lite = interpreter.get_signature_runner()(points=scene.points[None])
  assert int(lite['num_detections'][0]) == int(found['num_detections'][0])
  np.testing.assert_allclose(lite['scores'], found['scores'].numpy(),
                             atol=1e-4)
