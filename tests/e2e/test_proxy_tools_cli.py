"""Proxy-task tools end to end through the CLI on tiny digits trials, killed
mid-trial and resumed."""

import json
import os
import random

import numpy as np
import pyglove as pg
import pytest
from scipy import stats

import search_spaces
from proxy_tasks import variance
from tests.conftest import DIGITS, TINY_OVERRIDE, cli, kill_cli_when
from tests.conftest import fixture_sample
from tests.e2e.test_pointpillars import TINY_LIDAR
from tests.e2e.test_segmentation_3d import TINY_3D
from trainer import artifacts
from trainer.controller import store as store_lib

# Full training, tiny: 40 steps with an evaluation every 20, on digits.
TINY_TRAIN = ('trainer.train_steps=40,trainer.steps_per_loop=20,'
              'trainer.summary_interval=20,trainer.validation_interval=20,'
              'trainer.checkpoint_interval=20,'
              f'task.train_data.global_batch_size=32,{DIGITS}')


def _architectures(count, seed=0):
  spec = pg.dna_spec(search_spaces.get_search_space('mnasnet'))
  rng = random.Random(seed)
  return [search_spaces.nas_params_from_dna(pg.random_dna(spec, rng))
          for _ in range(count)]


# Kendall tau


def _trial_log(job_dir, stage, trial_id):
  return os.path.join(artifacts.trial_dir(job_dir, stage, trial_id),
                      artifacts.LOG_FILE)


@pytest.mark.slow  # About 2 CPU-minutes: make test-all.
def test_model_selection_runs_in_rounds_and_resumes(tmp_path):
  job_dir = str(tmp_path / 'job')
  flags = ('--mode=proxy_model_selection', f'--job_dir={job_dir}',
           '--proxy_start_models=4', '--proxy_final_models=2', '--seed=3',
           f'--train_params_override={TINY_TRAIN}')
  # Killed while round 2's first survivor trains on.
  kill_cli_when(flags, _trial_log(job_dir, 'proxy_model_selection', 5),
             'train | step', tmp_path)
  result = cli(*flags, check=True)
  assert 'model selection round 2/2: 2 models to step 40' in result.stdout

  trials = store_lib.Store.open(job_dir, read_only=True).trials(
      'proxy_model_selection')
  assert [t.status for t in trials] == ['completed'] * 6
  assert [t.attempts for t in trials] == [1, 1, 1, 1, 2, 1]
  # Round 1 trained 10 of the 40 steps; survivors went on from there.
  assert all(t.metrics['train_steps'] == 10 and
             [e['step'] for e in t.metrics['evaluations']] == [10]
             for t in trials[:4])
  assert [e['step'] for e in trials[5].metrics['evaluations']] == [30, 40]
  with open(_trial_log(job_dir, 'proxy_model_selection', 6)) as f:
    assert 'restored from checkpoint' in f.read()

  with open(os.path.join(job_dir, 'proxy_model_selection.json')) as f:
    written = json.load(f)
  first, second = written['rounds']
  kept = [m['trial_id'] for m in first['models'] if m['kept']]
  assert len(kept) == 2 and [t.nas_params_str for t in trials[4:]] == [
      trials[i - 1].nas_params_str for i in kept]
  assert [m['trial_id'] for m in second['models']] == [5, 6]
  # The reference set: the last round's full-training accuracies.
  assert [(m['nas_params_str'], m['accuracy']) for m in written['models']] == [
      (t.nas_params_str, t.metrics['top_1_accuracy']) for t in trials[4:]]
  assert os.path.getsize(os.path.join(job_dir, 'proxy_model_selection.png'))


def test_variance_repeats_one_model_and_resumes(tmp_path):
  job_dir = str(tmp_path / 'job')
  [params] = _architectures(1, seed=5)
  flags = ('--mode=proxy_variance', f'--job_dir={job_dir}',
           f'--nas_params_str={params}', '--proxy_variance_runs=2',
           f'--params_override={TINY_OVERRIDE}')
  kill_cli_when(flags, _trial_log(job_dir, 'proxy_variance', 1), 'train | step',
             tmp_path)
  result = cli(*flags, check=True)
  assert 'coefficient of variation' in result.stdout
  trials = store_lib.Store.open(job_dir, read_only=True).trials(
      'proxy_variance')
  assert [(t.status, t.attempts) for t in trials] == [('completed', 2),
                                                      ('completed', 1)]
  with open(os.path.join(job_dir, 'variance_and_smoothness.json')) as f:
    written = json.load(f)
  accuracies = [t.metrics['top_1_accuracy'] for t in trials]
  assert written['coefficient_of_variation'] == pytest.approx(
      np.std(accuracies) / np.mean(accuracies))
  assert [r['seed'] for r in written['runs']] == [1, 2]
  # The proxy evaluates only at its end; the tool adds one per train loop.
  curves = [r['learning_curve'] for r in written['runs']]
  assert [[s for s, _ in c] for c in curves] == [[20, 40], [20, 40]]
  assert written['smoothness'] == pytest.approx(
      np.mean([variance.smoothness(c) for c in curves]))


@pytest.mark.slow  # About 2 CPU-minutes: make test-all.
def test_proxy_search_ranks_candidates_stops_and_resumes(tmp_path):
  """Each candidate's third trial stops at step 20 of 40, where τ over all
  three models is known and reaches the threshold; killed in the second
  candidate's first trial, the search resumes with the stopped trial kept."""
  job_dir = str(tmp_path / 'job')
  reference_path = tmp_path / 'reference.json'
  reference_path.write_text(json.dumps([
      {'nas_params_str': p, 'accuracy': a}
      for p, a in zip(_architectures(3, seed=7), (0.95, 0.6, 0.8))]))
  flags = ('--mode=proxy_search', f'--job_dir={job_dir}',
           f'--proxy_reference={reference_path}',
           f'--params_override={TINY_OVERRIDE}',
           '--proxy_candidates=[{name: as_configured},'
           ' {name: half_data, train_data_fraction: 0.5}]',
           '--proxy_correlation_threshold=-1')
  kill_cli_when(flags, _trial_log(job_dir, 'proxy_search', 4), 'train | step',
             tmp_path)
  result = cli(*flags, check=True)
  assert 'proxy candidate 2/2 half_data' in result.stdout

  trials = store_lib.Store.open(job_dir, read_only=True).trials('proxy_search')
  assert [(t.status, t.attempts) for t in trials] == [
      ('completed', 1), ('completed', 1), ('stopped', 1), ('completed', 2),
      ('completed', 1), ('stopped', 1)]
  steps = [[e['step'] for e in t.metrics['evaluations']] for t in trials]
  assert steps == [[20, 40], [20, 40], [20]] * 2
  with open(os.path.join(artifacts.trial_dir(job_dir, 'proxy_search', 5),
                         'params.yaml')) as f:
    assert 'train-00000-of-00002' in f.read()  # Half of the two shards.
  with open(os.path.join(job_dir, 'proxy_search.json')) as f:
    written = json.load(f)
  full = [0.95, 0.6, 0.8]
  for name, ids in (('as_configured', [1, 2, 3]), ('half_data', [4, 5, 6])):
    result_ = written['candidates'][name]
    assert result_['trial_ids'] == ids
    assert result_['stopped_trial_ids'] == [ids[2]]
    at_20, at_40 = result_['kendall_tau_by_step']
    proxy = [trials[i - 1].metrics['evaluations'][0]['top_1_accuracy']
             for i in ids]
    assert at_20['kendall_tau'] == pytest.approx(
        stats.kendalltau(proxy, full).statistic)
    assert (at_40['step'], at_40['num_models'], at_40['kendall_tau']) == (
        40, 2, None)
    assert result_['passed'] and result_['pass_step'] == 20
    # Compute: steps x batch (32) x multiply-adds per image; the stopped
    # trial's model counted untrained, as compute_full tells.
    assert (result_['budget_steps'], result_['trained_steps']) == (
        40, [40, 40, 20])
    flops = [trials[i - 1].metrics['multi_add_flops_billion']
             for i in ids[:2]]
    flops.append(result_['compute_full'] / (32 * 40) - sum(flops))
    assert flops[2] > 0
    assert result_['compute_spent'] == pytest.approx(
        32 * (40 * flops[0] + 40 * flops[1] + 20 * flops[2]))
    assert result_['pass_train_compute'] == pytest.approx(
        np.median([20 * 32 * f for f in flops]))
  candidates_ = written['candidates']
  for key in ('compute_spent', 'compute_full'):
    assert written[key] == pytest.approx(
        sum(c[key] for c in candidates_.values()))
  assert written['compute_spent'] < written['compute_full']
  assert 'all candidates: trained' in result.stdout
  # The least compute; training time breaks the tie of equal compute.
  assert written['best'] == min(
      candidates_, key=lambda n: (candidates_[n]['pass_train_compute'],
                                  candidates_[n]['pass_train_seconds']))
  assert os.path.getsize(os.path.join(job_dir, 'proxy_search.png'))



@pytest.mark.parametrize('space, metric, override, steps', [
    ('pointpillars', 'AP', TINY_LIDAR, [2]),
    ('tunable_unet_encoder', 'dice', TINY_3D, [2, 4])])
def test_variance_tool_runs_on_the_3d_tasks(tmp_path, space, metric,
                                            override, steps):
  """The proxy tools read each task's own metric: one PointPillars and one
  3D UNet architecture (real Vertex samples) trained twice on the built-in
  lidar scenes and volumes, with an evaluation per train loop."""
  job_dir = str(tmp_path / 'job')
  result = cli('--mode=proxy_variance', f'--job_dir={job_dir}',
               f'--search_space={space}',
               f'--nas_params_str={fixture_sample(space)}',
               '--proxy_variance_runs=2', f'--params_override={override}',
               check=True)
  assert 'coefficient of variation' in result.stdout
  store = store_lib.Store.open(job_dir, read_only=True)
  trials = store.trials('proxy_variance')
  assert [t.status for t in trials] == ['completed'] * 2
  assert store.job_identity('proxy_variance')['quality_metric'] == metric
  with open(os.path.join(job_dir, 'variance_and_smoothness.json')) as f:
    written = json.load(f)
  assert [r['accuracy'] for r in written['runs']] == [
      t.metrics[metric] for t in trials]
  assert [[step for step, _ in r['learning_curve']]
          for r in written['runs']] == [steps] * 2
