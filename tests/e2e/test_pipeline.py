"""From search to a deployable model: --mode=train, --mode=pipeline (killed
and resumed in each stage), export and report through the CLI."""

import html
import json
import os

import pytest

from tests.conftest import DIGITS, TINY_OVERRIDE, cli, kill_cli_when
from tests.e2e.test_detection_segmentation import TINY
from tests.e2e.test_pointpillars import TINY_LIDAR
from tests.e2e.test_segmentation_3d import TINY_3D
from trainer import artifacts
from trainer.controller import store as store_lib

# Full training, tiny: 40 steps with an evaluation every 20, on digits.
TINY_TRAIN = ('trainer.train_steps=40,trainer.steps_per_loop=20,'
              'trainer.summary_interval=20,trainer.validation_interval=20,'
              'trainer.checkpoint_interval=20,task.train_data.global_batch_size=32,'
              f'{DIGITS}')


def test_train_mode_retrains_the_top_k_with_warm_start(search_job, tmp_path):
  job_dir, _ = search_job
  searched = store_lib.Store.open(job_dir, read_only=True).trials('search')
  top_2 = sorted(searched, key=lambda t: (-t.reward, t.id))[:2]
  flags = ('--mode=train', f'--job_dir={tmp_path}',
           f'--retrain_search_job_dir={job_dir}', '--top_k=2',
           '--retrain_use_search_job_checkpoint',
           f'--train_params_override={TINY_TRAIN}')
  result = cli(*flags, check=True)
  assert 'train mnasnet with fixed' in result.stdout
  trials = store_lib.Store.open(str(tmp_path), read_only=True).trials('train')
  assert [t.status for t in trials] == ['completed', 'completed']
  for t, source in zip(trials, top_2):
    assert t.metrics['search_trial_id'] == source.id
    assert t.nas_params_str == source.nas_params_str
    # Several evaluations; the best is reported and its checkpoint kept.
    evaluations = t.metrics['evaluations']
    assert [e['step'] for e in evaluations] == [20, 40]
    best = max(evaluations, key=lambda e: e['top_1_accuracy'])
    assert t.metrics['top_1_accuracy'] == best['top_1_accuracy']
    assert t.metrics['evaluated_step'] == best['step']
    trial_dir = artifacts.trial_dir(str(tmp_path), 'train', t.id)
    assert os.path.isdir(os.path.join(trial_dir, 'best_ckpt'))
    with open(os.path.join(trial_dir, artifacts.LOG_FILE)) as f:
      assert 'Finished loading pretrained checkpoint' in f.read()

  listed = cli('--mode=list', f'--job_dir={tmp_path}', '--stage=train',
               check=True).stdout
  assert 'trials: 2 completed' in listed
  other = cli('--mode=train', f'--job_dir={tmp_path}',
              f'--retrain_search_job_dir={job_dir}',
              '--retrain_search_job_trials=3',
              f'--train_params_override={TINY_TRAIN}')
  assert other.returncode != 0
  assert 'different search_trial_ids' in other.stderr


def _pipeline_flags(job_dir, *extra):
  return ('--mode=pipeline', f'--job_dir={job_dir}', '--search_space=mnasnet',
          '--max_trials=1', '--top_k=1', f'--params_override={TINY_OVERRIDE}',
          f'--train_params_override={TINY_TRAIN}', '--seed=5', *extra)


def test_pipeline_resumes_after_a_kill_in_each_stage(tmp_path):
  job_dir = str(tmp_path / 'job')
  flags = _pipeline_flags(job_dir)
  # Killed while search trial 1 trains, then while train trial 1 trains.
  kill_cli_when(flags, os.path.join(artifacts.trial_dir(job_dir, 'search', 1),
                                    artifacts.LOG_FILE), 'train | step', tmp_path)
  kill_cli_when(flags, os.path.join(artifacts.trial_dir(job_dir, 'train', 1),
                                    artifacts.LOG_FILE), 'train | step', tmp_path)
  store = store_lib.Store.open(job_dir, read_only=True)
  assert [(t.status, t.attempts) for t in store.trials('search')] == [
      ('completed', 2)]
  assert [t.status for t in store.trials('train')] == ['running']

  result = cli(*flags, timeout=900, check=True)
  assert 'resuming: 1 trials in the store' in result.stdout
  assert 'augmentation search: skipped' in result.stdout
  store = store_lib.Store.open(job_dir, read_only=True)
  [trained] = store.trials('train')
  assert trained.status == 'completed' and trained.attempts == 2
  best_search = max(store.trials('search'), key=lambda t: (t.reward, -t.id))
  assert trained.metrics['search_trial_id'] == best_search.id
  export_dir = os.path.join(job_dir, 'export')
  for name in ('saved_model', 'model.tflite', 'nas_params_str.json',
               'export.json', 'params.yaml'):
    assert os.path.exists(os.path.join(export_dir, name)), name
  report = os.path.join(job_dir, 'report.html')
  assert f'report: {report}' in result.stdout
  with open(report) as f:
    assert html.escape(trained.nas_params_str) in f.read()

  exported = _files_and_times(export_dir)
  again = cli(*flags, timeout=900, check=True)  # Finished: nothing re-runs.
  assert store_lib.Store.open(job_dir, read_only=True).trials('train') == [
      trained]
  assert 'running  |' not in again.stdout
  assert f'train trial 1 is exported in {export_dir}' in again.stdout
  assert _files_and_times(export_dir) == exported  # Not exported twice.


def _files_and_times(folder):
  return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
          for d, _, names in os.walk(folder) for f in names}


def test_export_dir_retrains_in_one_command(tmp_path, search_job):
  job_dir, _ = search_job
  export_dir = tmp_path / 'export'
  cli('--mode=export', f'--job_dir={job_dir}', f'--export_dir={export_dir}',
      check=True)
  result = cli('--mode=trial', f'--job_dir={tmp_path / "again"}',
               f'--export_dir={export_dir}', check=True)
  assert '"top_1_accuracy"' in result.stdout
  with open(export_dir / 'nas_params_str.json') as f:
    exported = f.read()
  with open(os.path.join(artifacts.trial_dir(str(tmp_path / 'again'), 'search', 1),
                         artifacts.NAS_PARAMS_FILE)) as f:
    assert f.read() == exported


STAGES = ('search', 'train', 'augment_search', 'final')


def _all_trials(job_dir):
  store = store_lib.Store.open(job_dir, read_only=True)
  try:
    return {(stage, t.id): t for stage in STAGES for t in store.trials(stage)}
  finally:
    store.close()


def _trial_log(job_dir, stage):
  return os.path.join(artifacts.trial_dir(job_dir, stage, 1), artifacts.LOG_FILE)


@pytest.mark.slow
def test_detection_pipeline_killed_in_each_stage(tmp_path):
  """SIGKILLed once inside each stage (a trial of search, train,
  augment_search and final in training; export; report), then resumed to
  the end: every finished trial is kept as it was."""
  job_dir = str(tmp_path / 'job')
  flags = ('--mode=pipeline', f'--job_dir={job_dir}', '--search_space=spinenet',
           '--max_trials=2', '--top_k=1', '--augment_max_trials=2',
           f'--params_override={TINY}', f'--train_params_override={TINY}',
           '--seed=6')
  output = str(tmp_path / 'controller.log')
  kill_points = [(_trial_log(job_dir, stage), 'train | step') for stage in STAGES]
  kill_points += [(output, '== 5/5 export and report'),  # Exporting.
                  (output, 'exported final trial 1')]  # Writing the report.
  finished = {}
  for log, marker in kill_points:
    kill_cli_when(flags, log, marker, tmp_path)
    now = _all_trials(job_dir)
    for key, trial in finished.items():
      assert now[key] == trial, f'finished {key} changed or lost'
    finished = {k: t for k, t in now.items() if t.status != 'running'}
  assert not os.path.exists(os.path.join(job_dir, 'report.html'))

  result = cli(*flags, timeout=3600)
  assert result.returncode == 0, result.stderr[-3000:]
  now = _all_trials(job_dir)
  for key, trial in finished.items():
    assert now[key] == trial, f'finished {key} changed or lost'
  assert all(t.status == 'completed' for t in now.values())
  assert [len([k for k in now if k[0] == s]) for s in STAGES] == [2, 1, 2, 1]
  with open(os.path.join(job_dir, 'export', 'export.json')) as f:
    assert '"final"' in f.read()
  assert os.path.exists(os.path.join(job_dir, 'report.html'))


@pytest.mark.slow  # Two SavedModel exports of 3D models: make test-all.
@pytest.mark.parametrize('space, override', [
    ('pointpillars', TINY_LIDAR), ('tunable_unet_encoder', TINY_3D)])
def test_3d_pipeline_runs_to_an_exported_model_and_report(tmp_path, space,
                                                         override):
  """Lidar detection and 3D segmentation through every stage of
  --mode=pipeline: search, train the best (no augmentation space for either
  task), export, report."""
  job_dir = str(tmp_path / 'job')
  result = cli('--mode=pipeline', f'--job_dir={job_dir}',
               f'--search_space={space}', '--max_trials=1', '--top_k=1',
               f'--params_override={override}',
               f'--train_params_override={override}', '--seed=2',
               timeout=1800)
  assert result.returncode == 0, result.stderr[-3000:]
  assert '== 3/5 augmentation search: skipped' in result.stdout
  now = _all_trials(job_dir)
  assert {k[0] for k in now} == {'search', 'train'}
  assert all(t.status == 'completed' for t in now.values())
  assert now[('train', 1)].nas_params_str == now[('search', 1)].nas_params_str
  with open(os.path.join(job_dir, 'export', 'export.json')) as f:
    exported = json.load(f)
  assert (exported['search_space'], exported['stage']) == (space, 'train')
  assert os.path.exists(
      os.path.join(job_dir, 'export', 'saved_model', 'saved_model.pb'))
  assert os.path.exists(os.path.join(job_dir, 'report.html'))
