"""The augmentation stage end to end: policies in Model Garden's input
pipelines, `--mode=augment_search` over a fixed architecture (resumable, same
store and leaderboard as the architecture search) and `--mode=augment_preview`.
"""

import os

import numpy as np
import pyglove as pg
import pytest
import tensorflow as tf

import search_spaces
from official.core import task_factory
from tests.conftest import cli, fixture_sample
from tests.e2e.test_detection_segmentation import LEARNING_FLOORS
from tests.e2e.test_detection_segmentation import TINY
from trainer import artifacts
from trainer import spec as spec_lib
from trainer.controller import store as store_lib
from trainer.training import trial


def _randaugment(task: str, num_ops: int, magnitude: int) -> str:
  """The nas_params_str of RandAugment(num_ops, magnitude)."""
  space = search_spaces.get_search_space(f'randaugment_{task}')
  spec = pg.dna_spec(space)
  dna = pg.DNA([search_spaces.RANDAUGMENT_NUM_OPS.index(num_ops),
                search_spaces.RANDAUGMENT_MAGNITUDES.index(magnitude)])
  dna.use_spec(spec)
  return search_spaces.nas_params_from_dna(dna)


def _first_batch(prepared: trial.PreparedTrial):
  """One training batch of the prepared trial's input pipeline."""
  params = prepared.params
  task = task_factory.get_task(params.task)
  tf.random.set_seed(0)
  return next(iter(task.build_inputs(params.task.train_data)))


@pytest.mark.parametrize('task, base_space, base_index', [
    ('detection', 'mnasnet', 0), ('segmentation', 'nasfpn', 0)])
def test_policy_reaches_the_training_pipeline_only(tmp_path, task, base_space,
                                                   base_index):
  """A strong policy changes training images, keeps labels valid, and leaves
  validation data untouched."""
  inputs = spec_lib.TrialSpec(
      search_space=f'randaugment_{task}', base_search_space=base_space,
      base_nas_params_str=fixture_sample(base_space, base_index),
      params_override='task.train_data.aug_rand_hflip=false'
      if task == 'segmentation' else 'task.train_data.parser.aug_rand_hflip=false')
  strong = trial.prepare(
      inputs.replace(nas_params_str=_randaugment(task, 2, 10)), str(tmp_path))
  weak = trial.prepare(
      inputs.replace(nas_params_str=_randaugment(task, 1, 1)), str(tmp_path))
  train_data = strong.params.task.train_data
  carried = (train_data.parser.aug_policy if task == 'detection'
             else train_data.aug_policy)
  assert isinstance(pg.from_json_str(carried), search_spaces.RandAugmentSpec)
  validation = strong.params.task.validation_data
  assert not (validation.parser.aug_policy if task == 'detection'
              else validation.aug_policy)

  strong_images, strong_labels = _first_batch(strong)
  weak_images, _ = _first_batch(weak)
  assert strong_images.shape == weak_images.shape
  assert not np.allclose(strong_images.numpy(), weak_images.numpy())
  if task == 'segmentation':
    ids = set(np.unique(strong_labels['masks'].numpy()).tolist())
    assert ids <= {0.0, 1.0, 2.0, 3.0, 4.0, 255.0}
    assert 255.0 in ids  # Pixels the transforms uncovered are ignored.
  else:
    assert np.isfinite(strong_labels['box_targets']['3'].numpy()).all()


def test_augmentation_trial_needs_a_base_architecture(tmp_path):
  inputs = spec_lib.TrialSpec('randaugment_detection',
                              _randaugment('detection', 1, 1))
  with pytest.raises(ValueError, match='fixed architecture'):
    trial.prepare(inputs, str(tmp_path))


def test_augmentation_task_must_match_the_experiment(tmp_path):
  inputs = spec_lib.TrialSpec(
      search_space='randaugment_segmentation',
      nas_params_str=_randaugment('segmentation', 1, 1),
      experiment='nas_retinanet', base_search_space='nasfpn',
      base_nas_params_str=fixture_sample('nasfpn'))
  with pytest.raises(ValueError, match='augments segmentation data'):
    trial.prepare(inputs, str(tmp_path))


def _augment_search(job_dir, max_trials, *extra):
  return cli('--mode=augment_search', f'--job_dir={job_dir}',
             '--search_space=randaugment_detection',
             '--base_search_space=mnasnet',
             f'--base_nas_params_str={fixture_sample("mnasnet")}',
             f'--max_trials={max_trials}', '--max_failed_trials=1',
             f'--params_override={TINY}', '--seed=3', *extra, timeout=900)


def test_augment_search_grid_resumes_in_the_same_store(tmp_path):
  first = _augment_search(tmp_path, 1)
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'augment_search randaugment_detection with grid' in first.stdout
  resumed = _augment_search(tmp_path, 2)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'resuming: 1 trials in the store' in resumed.stdout

  store = store_lib.Store.open(str(tmp_path), read_only=True)
  trials = store.trials('augment_search')
  assert [(t.id, t.status) for t in trials] == [
      (1, 'completed'), (2, 'completed')]
  assert store.trials('search') == []
  space = search_spaces.get_search_space('randaugment_detection')
  policies = [search_spaces.materialize(
      space, search_spaces.dna_from_nas_params(space, t.nas_params_str))
              for t in trials]
  # The grid's first two points, each trained once.
  assert [(p.num_ops, p.magnitude) for p in policies] == [(1, 1), (1, 2)]
  for t, policy in zip(trials, policies):
    assert 0.0 <= t.metrics['AP'] <= 1.0 and t.reward == t.metrics['AP']
    trial_dir = artifacts.trial_dir(str(tmp_path), 'augment_search', t.id)
    with open(os.path.join(trial_dir, artifacts.POLICY_FILE)) as f:
      assert pg.from_json_str(f.read()) == policy
    assert os.path.exists(os.path.join(trial_dir, 'params.yaml'))

  listed = cli('--mode=list', f'--job_dir={tmp_path}', '--stage=augment_search',
               check=True).stdout
  assert 'trials: 2 completed' in listed
  assert 'randaugment[detection] num_ops=1 magnitude=2' in listed

  changed = _augment_search(tmp_path, 2, '--algorithm=random')
  assert changed.returncode != 0
  assert 'different algorithm' in changed.stderr


def test_augment_search_takes_the_best_trial_of_a_base_job(search_job, tmp_path):
  """--base_job_dir reads the search's best trial and its experiment; a
  classification architecture has no detection data to augment."""
  job_dir, _ = search_job
  result = cli('--mode=augment_search', f'--job_dir={tmp_path}',
               f'--base_job_dir={job_dir}', '--max_trials=1')
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
      'nas-garden: error: randaugment_detection augments detection data; '
      'experiment nas_image_classification trains classification')
  assert not os.path.exists(tmp_path / store_lib.STORE_FILE)

  missing = cli('--mode=augment_search', f'--job_dir={tmp_path}',
                f'--base_job_dir={job_dir}', '--base_trial_id=99')
  assert missing.returncode != 0
  assert 'no search trial 99' in missing.stderr


@pytest.mark.parametrize('space', ['randaugment_detection',
                                   'autoaugment_segmentation'])
def test_augment_preview_draws_the_policy(tmp_path, space):
  out = tmp_path / 'preview.png'
  nas_params_str = (_randaugment('detection', 2, 8) if space.startswith('rand')
                    else fixture_sample(space))
  result = cli('--mode=augment_preview', f'--job_dir={tmp_path}',
               f'--search_space={space}', f'--nas_params_str={nas_params_str}',
               f'--output_path={out}', '--preview_images=2',
               '--preview_variants=3')
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'wrote {out}' in result.stdout
  image = tf.io.decode_png(out.read_bytes()).numpy()
  assert image.shape[0] > 200 and image.shape[1] > 4 * 150

  again = tmp_path / 'again.png'
  cli('--mode=augment_preview', f'--job_dir={tmp_path}',
      f'--search_space={space}', f'--nas_params_str={nas_params_str}',
      f'--output_path={again}', '--preview_images=2', '--preview_variants=3',
      check=True)
  assert again.read_bytes() == out.read_bytes()  # Seeded: the same picture.


@pytest.mark.slow
def test_randaugment_grid_of_twenty_trials_on_scenes(tmp_path):
  """The acceptance run: a base architecture search, then the whole 20-point
  RandAugment grid for its best trial, with the tiny config as shipped (the
  grid inherits the base search's config and overrides). MnasNet, the
  cheapest detection config: 21 trials of 200 steps."""
  base = cli('--mode=search', f'--job_dir={tmp_path}', '--search_space=mnasnet',
             '--experiment=nas_retinanet', '--max_trials=1', '--seed=4',
             timeout=900)
  assert base.returncode == 0, base.stderr[-3000:]
  result = cli('--mode=augment_search', f'--job_dir={tmp_path}',
               '--max_parallel_trials=2', timeout=3600)
  assert result.returncode == 0, result.stderr[-3000:]
  trials = store_lib.Store.open(str(tmp_path), read_only=True).trials(
      'augment_search')
  assert len(trials) == 20 and all(t.status == 'completed' for t in trials)
  assert len({t.nas_params_str for t in trials}) == 20
  assert 'best trial:' in result.stdout
  # Trained policies score differently (with 4-step trials all 20 scored 0),
  # and the best reaches detection's learning floor.
  assert len({t.reward for t in trials}) > 1
  assert max(t.metrics['AP50'] for t in trials) >= LEARNING_FLOORS[
      'nas_retinanet'][1]
