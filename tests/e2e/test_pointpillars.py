"""PointPillars searches through the CLI on the built-in lidar scenes: a
two-trial search in the default suite (each trial's network built from its
architecture, trained and evaluated with BEV/3D AP per class)."""

import json

import pytest

import search_spaces
from tests.conftest import cli
from trainer.controller import store as store_lib

# Real but minimal: 4 train steps of batch 2, one evaluation of 4 scenes.
TINY_LIDAR = ('trainer.train_steps=4,trainer.steps_per_loop=2,'
              'trainer.summary_interval=2,trainer.validation_interval=4,'
              'trainer.checkpoint_interval=4,trainer.validation_steps=2,'
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
