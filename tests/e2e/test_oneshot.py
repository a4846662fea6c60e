"""--mode=oneshot_search through the CLI: killed and resumed, its result
retrained by --mode=train, both spaces, and its one-line errors."""

import json
import os
import re

import pytest

import search_spaces
from tests.conftest import (DIGITS, TINY_OVERRIDE, cli, exported_and_timed,
                            kill_cli_when)
from tests.e2e.test_pipeline import TINY_TRAIN
from trainer import artifacts
from trainer import objective
from trainer.controller import store as store_lib
from trainer.modes import oneshot as oneshot_mode

STEPS, WARMUP = 40, 10  # TINY_OVERRIDE's steps; the default 0.25 warm-up.
# Half the repeats (ceil(r / 2), so groups still differ in depth): half the
# supernet's blocks, which halves its graph traces (40 s to 21 s on two cores).
HALF_DEPTH = 'task.model.backbone.tunable_{space}.depth_multiplier=0.5'
MNASNET_OVERRIDE = f"{TINY_OVERRIDE},{HALF_DEPTH.format(space='mnasnet')}"


def _flags(job_dir, *extra, space='mnasnet', override=MNASNET_OVERRIDE):
  return ('--mode=oneshot_search', f'--job_dir={job_dir}',
          f'--search_space={space}', '--target_flops_multi_adds_billion=0.001',
          f'--params_override={override}', '--oneshot_checkpoint_steps=10',
          '--seed=3', *extra)


def _result(job_dir):
  with open(os.path.join(job_dir, oneshot_mode.ONESHOT_DIR,
                         oneshot_mode.RESULT_FILE)) as f:
    return json.load(f)


def test_oneshot_search_resumes_after_sigkill_and_its_result_retrains(
    tmp_path):
  job_dir = tmp_path / 'job'
  flags = _flags(job_dir, '--oneshot_rank_samples=2')
  log = tmp_path / 'controller.log'
  kill_cli_when(flags, log, f'one-shot step 20/{STEPS}', tmp_path)
  store = store_lib.Store.open(str(job_dir), read_only=True)
  assert not any(t.status == 'completed' for t in store.trials('search'))

  result = cli(*flags, check=True)
  resumed = re.search(r'one-shot search resumed from step (\d+)',
                      result.stdout)
  assert resumed, result.stdout[-3000:]
  start = int(resumed.group(1))
  assert start >= 20
  trials = store_lib.Store.open(str(job_dir), read_only=True).trials('search')
  assert [t.status for t in trials] == ['completed']
  trial = trials[0]
  figures = trial.metrics['oneshot']
  assert figures['steps_this_run'] == STEPS - start
  assert figures['compute_dtype'] == 'float32'  # The CPU config's.
  # 40 steps leave the supernet at chance, and the search says so.
  assert figures['final_train_loss'] > 0.95 * figures['chance_loss']
  assert "warning: the supernet's training loss" in result.stdout
  # The policy came back with the supernet: one update per step after the
  # warm-up, across both runs.
  assert figures['policy_updates'] == STEPS - WARMUP
  space = search_spaces.get_search_space('mnasnet')
  search_spaces.dna_from_nas_params(space, trial.nas_params_str)
  assert 0 <= trial.metrics['top_1_accuracy'] <= 1
  assert trial.metrics[objective.FLOPS] > 0
  assert trial.reward is not None

  written = _result(job_dir)
  assert written['trial_id'] == trial.id
  assert written['nas_params_str'] == trial.nas_params_str
  assert len(written['ranked_samples']) == 2
  for decision in written['policy']:
    assert sum(decision['probabilities']) == pytest.approx(1, abs=1e-3)
  trial_dir = artifacts.trial_dir(str(job_dir), 'search', trial.id)
  with open(os.path.join(trial_dir, artifacts.NAS_PARAMS_FILE)) as f:
    assert f.read() == trial.nas_params_str

  # Its trial dir is a trial's: config and a checkpoint of the path with the
  # supernet's weights, which export turns into a serving model.
  assert os.path.exists(os.path.join(trial_dir, 'params.yaml'))
  exported_and_timed(job_dir)
  listed = cli('--mode=list', f'--job_dir={job_dir}', check=True).stdout
  assert 'trials: 1 completed' in listed
  cli('--mode=report', f'--job_dir={job_dir}', check=True)
  assert (job_dir / 'report.html').exists()

  again = cli(*flags, check=True)
  assert 'one-shot step' not in again.stdout
  assert f'best trial: {trial.id}' in again.stdout

  train_dir = tmp_path / 'train'
  cli('--mode=train', f'--job_dir={train_dir}',
      f'--retrain_search_job_dir={job_dir}', '--top_k=1',
      f'--train_params_override={TINY_TRAIN}', check=True)
  trained = store_lib.Store.open(str(train_dir), read_only=True).trials('train')
  assert [t.status for t in trained] == ['completed']
  assert trained[0].nas_params_str == trial.nas_params_str
  assert trained[0].metrics['search_trial_id'] == trial.id


def test_oneshot_search_of_efficientnet_v2_in_mixed_float16(tmp_path):
  """On a classification config, in the GPU configs' precision: float16
  layers and a dynamic loss scale. Float16 runs on CPU too, at 3 s a step
  here: 8 steps (2 of warm-up)."""
  steps = 8
  backbone = 'task.model.backbone.tunable_efficientnet_v2'
  override = (f'{DIGITS},trainer.train_steps={steps},'
              'task.train_data.global_batch_size=32,'
              f'{backbone}.filter_size_scale=0.35,'
              f'{backbone}.endpoints_num_filters=128,'
              f"{HALF_DEPTH.format(space='efficientnet_v2')},"
              'runtime.mixed_precision_dtype=float16,runtime.loss_scale=dynamic')
  result = cli(*_flags(tmp_path, '--experiment=nas_image_classification',
                       '--config_file=mnasnet_classification_search_cpu',
                       space='efficientnet_v2', override=override),
               check=True)
  assert f'one-shot step {steps}/{steps}' in result.stdout
  trials = store_lib.Store.open(str(tmp_path), read_only=True).trials('search')
  assert [t.status for t in trials] == ['completed']
  figures = trials[0].metrics['oneshot']
  assert figures['compute_dtype'] == 'float16'
  assert 0 < figures['final_train_loss'] < 2 * figures['chance_loss']
  search_spaces.dna_from_nas_params(
      search_spaces.get_search_space('efficientnet_v2'),
      trials[0].nas_params_str)


@pytest.mark.parametrize('extra, message', [
    (('--search_space=nasfpn',), 'has supernets of mnasnet, efficientnet_v2'),
    (('--target_device_latency_ms=5',), 'rewards FLOPs'),
    (('--oneshot_warmup_fraction=1.5',), 'a fraction in [0, 1)'),
    (('--oneshot_checkpoint_steps=0',), 'must be positive'),
    # Its default config is a detection one.
    (('--search_space=efficientnet_v2', '--params_override='),
     'trains classification supernets'),
])
def test_oneshot_search_bad_input_is_one_line_and_stores_nothing(
    tmp_path, extra, message):
  result = cli(*_flags(tmp_path / 'job'), *extra)
  assert result.returncode != 0
  assert message in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert not (tmp_path / 'job' / oneshot_mode.ONESHOT_DIR).exists()
