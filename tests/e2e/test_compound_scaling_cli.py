"""--mode=compound_scaling through the CLI: a fixed MnasNet, an (α, β, γ)
grid at φ=1 on the proxy, then the best point's φ=1..2 models: a one-point
grid at 10 steps with a rerun, and the 3-point grid on the shipped configs,
both in `make test-all`; `make test` runs the CLI's one-line refusals."""

import json
import os

import pytest

from tests.conftest import cli, fixture_sample
from tests.e2e.test_every_space import PAPER_OVERRIDE
from trainer import compound_scaling as scaling
from trainer.controller import store as store_lib
from trainer.report import page


def _flags(job_dir, *extra, grid_points=3):
  return ('--mode=compound_scaling', f'--job_dir={job_dir}',
          '--base_search_space=mnasnet',
          f'--base_nas_params_str={fixture_sample("mnasnet")}',
          f'--compound_scaling_grid_points={grid_points}',
          '--compound_scaling_max_phi=2', '--max_parallel_trials=2', *extra)


def _check_result(job_dir, grid_points=3):
  with open(os.path.join(job_dir, scaling.RESULT_FILE)) as f:
    result = json.load(f)
  assert os.path.getsize(os.path.join(job_dir, scaling.PLOT_FILE)) > 1000
  grid = result['grid']
  assert [g['status'] for g in grid] == ['completed'] * grid_points
  for g in grid:
    assert scaling.satisfies_constraint(scaling.ScalingPoint(
        g['alpha_depth'], g['beta_width'], g['gamma_resolution']))
  best = max(grid, key=lambda g: g['reward'])
  assert result['best_grid_trial_id'] == best['trial_id']
  models = result['models']
  assert [m['phi'] for m in models] == [1, 2]
  assert [m['status'] for m in models] == ['completed'] * 2
  assert all(m['accuracy'] is not None for m in models)
  # Bigger φ, bigger model: each size and the FLOPs grow with φ.
  one, two = (m['sizes'] for m in models)
  assert two['depth_multiplier'] > one['depth_multiplier'] >= 1
  assert two['filter_size_scale'] > one['filter_size_scale']
  assert two['input_size'][0] >= one['input_size'][0]
  assert models[1]['flops'] > models[0]['flops'] > (
      result['base_flops_multi_adds_billion'])
  return result


def _metrics_mtimes(job_dir):
  return {stage: [os.path.getmtime(os.path.join(
      job_dir, f'{stage}_trials', str(i), 'metrics.json')) for i in ids]
          for stage, ids in ((scaling.GRID_STAGE, (1,)),
                             (scaling.MODELS_STAGE, (1, 2)))}


@pytest.mark.slow  # 60 s: make test keeps the CLI's refusals.
def test_grid_then_phi_models_and_a_rerun_resumes(tmp_path):
  job_dir = str(tmp_path / 'job')
  flags = _flags(job_dir, f'--params_override={PAPER_OVERRIDE}',
                 f'--train_params_override={PAPER_OVERRIDE}', grid_points=1)
  first = cli(*flags, check=True)
  assert '== 1/2 compound scaling grid: 1 point ' in first.stdout
  assert '== 2/2 compound scaling: the φ = 1..2 models' in first.stdout
  assert 'φ=2:' in first.stdout
  _check_result(job_dir, grid_points=1)
  trained = _metrics_mtimes(job_dir)
  report = open(page.write_report(job_dir)).read()
  for section in ('id="compound-scaling"', 'id="compound-scaling-chart"',
                  f'id="{scaling.GRID_STAGE}"', f'id="{scaling.MODELS_STAGE}"'):
    assert section in report

  again = cli(*flags, check=True)
  assert again.stdout.count('resuming:') == 2
  assert ' running ' not in again.stdout  # No trial trained again.
  assert _metrics_mtimes(job_dir) == trained
  store = store_lib.Store.open(job_dir, read_only=True)
  assert len(store.trials(scaling.GRID_STAGE)) == 1
  assert len(store.trials(scaling.MODELS_STAGE)) == 2


@pytest.mark.parametrize('flags, message', [
    (('--base_search_space=regnet_x',), 'regnet_x has none'),
    (('--compound_scaling_grid_points=0',), 'compound_scaling_grid_points=0'),
    (('--compound_scaling_max_phi=0',), 'compound_scaling_max_phi=0'),
])
def test_bad_input_is_one_line_and_stores_nothing(tmp_path, flags, message):
  job_dir = tmp_path / 'job'
  if flags[0].startswith('--base_search_space'):
    from tests.unit.test_compound_scaling import fixture_regnet  # pylint: disable=g-import-not-at-top
    flags = (*flags, f'--base_nas_params_str={fixture_regnet()}')
  result = cli(*_flags(str(job_dir)), *flags)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], result.stderr
  assert not job_dir.exists()


@pytest.mark.slow
def test_real_size_compound_scaling_of_mnasnet(tmp_path):
  """The shipped tiny CPU configs as they are (search_cpu for the grid,
  train_cpu for the φ models: 64 px shapes, 400 and 500 steps)."""
  job_dir = str(tmp_path / 'job')
  run = cli(*_flags(job_dir), check=True, timeout=3600)
  result = _check_result(job_dir)
  print(run.stdout[-3000:])
  print(json.dumps({'grid': [{k: g[k] for k in (
      'alpha_depth', 'beta_width', 'gamma_resolution', 'accuracy', 'flops',
      'sizes')} for g in result['grid']],
                    'base_flops': result['base_flops_multi_adds_billion'],
                    'models': result['models']}, indent=1))
