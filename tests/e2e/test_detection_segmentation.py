"""Real searches for detection (RetinaNet) and segmentation on built-in scenes.

The default suite runs one search per task with the shipped config (and
test_every_space.py a one-trial detection search of each SpineNet-family
space); `make test-all` runs the whole matrix of two-trial searches of the
seven architecture spaces (marked slow: about 2 CPU-minutes each). Learning
floors: each shipped tiny config, trained as shipped, must reach AP50 >= 0.15
(detection) or mIoU >= 0.3 (segmentation) on the built-in scenes; the
default suite checks one per task (in its shipped-config searches), `make
test-all` all nine.
"""

import json
import os

import pytest

from tests.conftest import cli
from tests.conftest import fixture_sample
from tests.unit.test_coco import _dataset, _write
from trainer.controller import store as store_lib

# Real but minimal: 4 train steps, one batch of evaluation by the real
# evaluator (COCO AP or mIoU).
TINY = ('trainer.train_steps=4,trainer.steps_per_loop=2,trainer.summary_interval=2,'
        'trainer.validation_interval=4,trainer.checkpoint_interval=4,'
        'trainer.validation_steps=1')

MATRIX = [
    ('mnasnet', 'nas_retinanet', 'AP'),
    ('efficientnet_v2', 'nas_retinanet', 'AP'),
    ('nasfpn', 'nas_retinanet', 'AP'),
    ('spinenet', 'nas_retinanet', 'AP'),
    ('spinenet_v2', 'nas_retinanet', 'AP'),
    ('spinenet_mbconv', 'nas_retinanet', 'AP'),
    ('spinenet_scaling', 'nas_retinanet', 'AP'),
    ('nasfpn', 'nas_semantic_segmentation', 'miou'),
    ('spinenet', 'nas_semantic_segmentation', 'miou'),
]

# What a shipped tiny config must reach after its own steps (README, Configs):
# an untrained network scores about 0 on both, and the configs before these
# floors stayed at AP50 0.02-0.04.
LEARNING_FLOORS = {'nas_retinanet': ('AP50', 0.15),
                   'nas_semantic_segmentation': ('miou', 0.3)}
# The default suite checks the floors in its shipped-config searches below:
# detection's with mnasnet (the cheapest detection config), segmentation's
# with nasfpn.


def _two_trial_search(job_dir, space, experiment, *extra, override=TINY):
  result = cli('--mode=search', f'--job_dir={job_dir}', f'--search_space={space}',
               f'--experiment={experiment}', '--max_trials=2',
               '--max_parallel_trials=2', '--max_failed_trials=1',
               f'--params_override={override}', '--seed=2', *extra, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  return store_lib.Store.open(str(job_dir), read_only=True).trials('search')


@pytest.mark.slow
@pytest.mark.parametrize('space, experiment, metric', MATRIX)
def test_two_trial_search_reports_evaluator_metric(tmp_path, space, experiment, metric):
  trials = _two_trial_search(tmp_path, space, experiment)
  assert [(t.id, t.status) for t in trials] == [(1, 'completed'), (2, 'completed')]
  identity = store_lib.Store.open(str(tmp_path), read_only=True).job_identity(
      'search')
  assert identity['quality_metric'] == metric
  for t in trials:
    value = t.metrics[metric]
    assert isinstance(value, float) and 0.0 <= value <= 1.0
    assert t.reward == pytest.approx(value)
    assert t.metrics['multi_add_flops_billion'] > 0
    if metric == 'AP':  # The COCO evaluator's whole report is kept.
      assert {'AP50', 'AP75', 'ARmax100'} <= set(t.metrics)
    assert os.path.exists(tmp_path / 'trials' / str(t.id) / 'ckpt-4.index')


def test_reward_metric_selects_another_evaluator_metric(tmp_path):
  """Also detection's learning floor in the default suite: the trial trains
  mnasnet_detection_search_cpu as shipped (no step override)."""
  trials = _two_trial_search(tmp_path, 'mnasnet', 'nas_retinanet',
                             '--reward_metric=AP50', '--max_trials=1',
                             override='')
  assert trials[0].reward == pytest.approx(trials[0].metrics['AP50'])
  assert trials[0].metrics['evaluated_step'] == 200  # the config's steps
  assert trials[0].metrics['AP50'] >= LEARNING_FLOORS['nas_retinanet'][1]


def test_segmentation_search_reaches_the_floor_with_its_shipped_config(tmp_path):
  """Segmentation's search and its learning floor in the default suite: one
  trial of nasfpn_segmentation_search_cpu as shipped (no step override)."""
  [trial] = _two_trial_search(tmp_path, 'nasfpn', 'nas_semantic_segmentation',
                              '--max_trials=1', override='')
  assert trial.reward == pytest.approx(trial.metrics['miou'])
  assert trial.metrics['multi_add_flops_billion'] > 0
  assert trial.metrics['evaluated_step'] == 200  # the config's steps
  assert trial.metrics['miou'] >= LEARNING_FLOORS['nas_semantic_segmentation'][1]


@pytest.mark.slow
@pytest.mark.parametrize('space, backbone', [('anynet_x', 'tunable_regnet'),
                                             ('regnet_y', 'tunable_regnet'),
                                             ('nasnet', 'tunable_nasnet')])
def test_paper_spaces_search_as_detection_backbones(tmp_path, space,
                                                    backbone):
  """A seed paper's space as RetinaNet's backbone under an FPN, through the
  CLI with its shipped detection config (4 steps)."""
  [trial] = _two_trial_search(tmp_path, space, 'nas_retinanet', '--max_trials=1')
  assert trial.status == 'completed', trial.error
  assert trial.reward == pytest.approx(trial.metrics['AP'])
  assert trial.metrics['multi_add_flops_billion'] > 0
  params_yaml = (tmp_path / 'trials' / '1' / 'params.yaml').read_text()
  assert f'type: {backbone}' in params_yaml and 'type: fpn' in params_yaml


@pytest.mark.slow
@pytest.mark.parametrize('space, experiment', [case[:2] for case in MATRIX])
def test_tiny_config_reaches_its_learning_floor(tmp_path, space, experiment):
  """A Vertex fixture architecture, trained by the space's search_cpu config
  as shipped (`--mode=trial`, no override), reaches the task's floor."""
  result = cli('--mode=trial', f'--job_dir={tmp_path}', f'--search_space={space}',
               f'--experiment={experiment}',
               f'--nas_params_str={fixture_sample(space)}', timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / 'trials' / '1' / 'metrics.json') as f:
    metrics = json.load(f)
  metric, floor = LEARNING_FLOORS[experiment]
  print(f'{space} {experiment}: {metric} {metrics[metric]:.3f} after '
        f'{metrics["evaluated_step"]} steps, train+eval '
        f'{metrics["train_and_eval_s"]:.0f} s, trial {metrics["total_s"]:.0f} s')
  assert metrics[metric] >= floor


def test_make_data_converts_coco_through_the_cli(tmp_path):
  annotation_file, image_dir = _write(tmp_path, _dataset())
  prefix = tmp_path / 'out' / 'coco'
  result = cli('--mode=make_data', f'--coco_annotation_file={annotation_file}',
               f'--coco_image_dir={image_dir}', f'--output_prefix={prefix}',
               '--num_shards=2')
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'task.model.num_classes=3' in result.stdout
  assert sorted(os.listdir(tmp_path / 'out')) == [
      'coco-00000-of-00002', 'coco-00001-of-00002', 'coco_annotations.json',
      'coco_label_map.json']
  label_map = json.loads((tmp_path / 'out' / 'coco_label_map.json').read_text())
  assert label_map['num_classes'] == 3

  missing = cli('--mode=make_data', '--coco_annotation_file=/no/such.json',
                f'--coco_image_dir={image_dir}', f'--output_prefix={prefix}')
  assert missing.returncode != 0
  assert missing.stderr.strip().splitlines()[-1].startswith('nas-garden: error: ')


def test_make_data_converts_kitti_through_the_cli(tmp_path):
  """KITTI velodyne + label_2 + calib -> lidar scene TFRecords (the
  generated scenes written as KITTI files); a bad frame: one line, exit 1,
  naming the file."""
  import numpy as np  # pylint: disable=g-import-not-at-top  (TensorFlow: only here)
  from tests.unit import test_lidar  # pylint: disable=g-import-not-at-top
  from trainer.datasets import lidar  # pylint: disable=g-import-not-at-top
  scenes = [test_lidar._scene(i) for i in range(2)]  # pylint: disable=protected-access
  test_lidar.write_kitti(tmp_path / 'kitti', scenes)
  prefix = tmp_path / 'out' / 'lidar'
  result = cli('--mode=make_data', f'--kitti_dir={tmp_path / "kitti"}',
               f'--output_prefix={prefix}')
  assert result.returncode == 0, result.stderr[-2000:]
  cars = sum(int((s.classes == 1).sum()) for s in scenes)
  assert f'wrote 2 frames ({cars} car, ' in result.stdout
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  [record, _] = [lidar.decode(r) for r in tf.data.TFRecordDataset(
      f'{prefix}-00000-of-00001')]
  np.testing.assert_array_equal(record['points'].numpy(), scenes[0].points)

  (tmp_path / 'kitti' / 'velodyne' / '000001.bin').write_bytes(b'\0' * 20)
  result = cli('--mode=make_data', f'--kitti_dir={tmp_path / "kitti"}',
               f'--output_prefix={tmp_path}/again')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f'nas-garden: error: {tmp_path}/kitti/velodyne/000001.bin: 20 bytes is '
      'not a whole number of points (4 float32 each: x, y, z, reflectance)']
  result = cli('--mode=make_data', f'--output_prefix={tmp_path}/again')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      'nas-garden: error: --mode=make_data needs a dataset: ')
