"""A real tiny trial end to end, as a cloud training job runs it."""

import glob
import json
import os

import pytest
import yaml

from tests.conftest import SEARCH_SEED, TINY_OVERRIDE, cli, mnasnet_sample
from trainer import spec as spec_lib
from trainer.controller import store as store_lib


def test_trial_trains_reports_and_writes_artifacts(tmp_path):
  sample = mnasnet_sample(1)
  params_file = tmp_path / 'params.json'
  params_file.write_text(sample)
  # 80 steps: at 40 this sample's batch-norm statistics have not settled on
  # some CPUs (top-1 0.11 here, with AVX512 kernels).
  override = TINY_OVERRIDE.replace('train_steps=40', 'train_steps=80').replace(
      'validation_interval=40', 'validation_interval=80').replace(
          'checkpoint_interval=40', 'checkpoint_interval=80')
  result = cli('--mode=trial', f'--job_dir={tmp_path}', '--trial_id=7',
               f'--nas_params_str={params_file}', '--search_space=mnasnet',
               f'--params_override={override}', '--seed=3', check=True)
  trial_dir = tmp_path / 'trials' / '7'
  metrics = json.loads((trial_dir / 'metrics.json').read_text())
  printed = json.loads(result.stdout.strip().splitlines()[-1])
  assert printed['top_1_accuracy'] == metrics['top_1_accuracy']
  assert 0.0 <= metrics['top_1_accuracy'] <= 1.0
  # 80 steps on digits already beat chance (0.1) clearly.
  assert metrics['top_1_accuracy'] > 0.15
  assert metrics['multi_add_flops_billion'] > 0
  assert metrics['params'] > 10_000
  assert metrics['train_steps'] == 80
  assert json.loads((trial_dir / 'nas_params_str.json').read_text()) == json.loads(sample)
  assert (trial_dir / 'params.yaml').exists()
  assert (trial_dir / 'architecture.json').exists()
  assert glob.glob(str(trial_dir / 'ckpt-80.index'))
  assert glob.glob(str(trial_dir / 'train' / 'events.out.tfevents.*'))
  assert glob.glob(str(trial_dir / 'validation' / 'events.out.tfevents.*'))
  # The searched spec reached the Model Garden config.
  params_yaml = (trial_dir / 'params.yaml').read_text()
  assert 'tunable_mnasnet' in params_yaml and 'block_specs_json' in params_yaml
  # --accelerator=auto on this GPU-less machine: the CPU config, as recorded.
  runtime = yaml.full_load(params_yaml)['runtime']  # Model Garden writes tuples.
  assert (runtime['distribution_strategy'], runtime['num_gpus']) == (
      'one_device', 0)
  assert (metrics['device'], metrics['replicas']) == ('CPU', 1)


def test_asking_for_a_gpu_without_one_is_a_one_line_error(tmp_path):
  result = cli('--mode=trial', f'--job_dir={tmp_path}', '--accelerator=gpu',
               f'--nas_params_str={mnasnet_sample(0)}',
               f'--params_override={TINY_OVERRIDE}')
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      'nas-garden: error: --accelerator=gpu but this trial process sees no '
      'GPU (CUDA_VISIBLE_DEVICES, drivers, or a CPU-only TensorFlow)')
  assert not (tmp_path / 'trials' / '1' / 'metrics.json').exists()


def test_same_architecture_and_seed_reproduce_accuracy(search_job, tmp_path):
  """A search trial's architecture and seed, trained again alone, reach its
  accuracy."""
  job_dir, _ = search_job
  searched = store_lib.Store.open(job_dir, read_only=True).trials('search')[0]
  cli('--mode=trial', f'--job_dir={tmp_path}',
      f'--nas_params_str={searched.nas_params_str}',
      f'--params_override={TINY_OVERRIDE}',
      f'--seed={spec_lib.trial_seed(SEARCH_SEED, searched.id)}', check=True)
  metrics = json.loads((tmp_path / 'trials' / '1' / 'metrics.json').read_text())
  assert metrics['top_1_accuracy'] == pytest.approx(
      searched.metrics['top_1_accuracy'], abs=1e-6)


def test_patched_user_space_trains_as_mnasnet(tmp_path):
  import random
  import pyglove as pg
  import search_spaces
  name = 'tests.user_space_example:narrow_mnasnet'
  space = search_spaces.get_search_space(name)
  dna = pg.random_dna(pg.dna_spec(space), random.Random(0))
  cli('--mode=trial', f'--job_dir={tmp_path}', f'--search_space={name}',
      f'--nas_params_str={search_spaces.nas_params_from_dna(dna)}',
      f'--params_override={TINY_OVERRIDE}', check=True)
  spec = pg.from_json_str((tmp_path / 'trials' / '1' / 'architecture.json').read_text())
  assert isinstance(spec, search_spaces.MnasNetSpec)
  assert {b.kernel_size for b in spec.blocks} == {3}
  assert {b.se_ratio for b in spec.blocks} == {0.0}
  metrics = json.loads((tmp_path / 'trials' / '1' / 'metrics.json').read_text())
  assert 0.0 <= metrics['top_1_accuracy'] <= 1.0
  assert metrics['multi_add_flops_billion'] > 0
