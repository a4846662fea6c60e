"""3D segmentation searches through the CLI on the built-in volumes: the
searched UNet encoder (a two-trial search in the default suite; its shipped
tiny config's learning floor, export, latency and report in `make
test-all`), the baseline UNet and the searched decoder
(tests/e2e/test_every_space.py)."""

import pytest

import search_spaces
from tests.conftest import cli
from tests.conftest import exported_and_timed
from trainer.controller import store as store_lib

# Real but minimal: 4 train steps on 16^3 volumes, one evaluation of the 24
# built-in eval volumes by Model Garden's Dice metric.
TINY_3D = ('trainer.train_steps=4,trainer.steps_per_loop=2,'
           'trainer.summary_interval=2,trainer.validation_interval=4,'
           'trainer.checkpoint_interval=4,task.model.input_size=[16,16,16]')
TUMOUR_CLASSES = (1, 2, 3)  # Oedema, core, enhancing (0: background).


def _search(job_dir, max_trials, *flags, flops_target=None,
            latency_target=None):
  result = cli(f'--job_dir={job_dir}', '--mode=search',
               '--search_space=tunable_unet_encoder',
               f'--max_trials={max_trials}', '--max_failed_trials=1',
               '--seed=3', *flags, timeout=1800)
  assert result.returncode == 0, result.stderr[-3000:]
  store = store_lib.Store.open(str(job_dir), read_only=True)
  trials = store.trials('search')
  assert [t.status for t in trials] == ['completed'] * max_trials, [
      t.error for t in trials]
  assert store.job_identity('search')['quality_metric'] == 'dice'
  space = search_spaces.get_search_space('tunable_unet_encoder')
  for trial in trials:
    search_spaces.dna_from_nas_params(space, trial.nas_params_str)
    flops = trial.metrics['multi_add_flops_billion']
    assert flops > 0
    # Vertex's hard reward: the metric, scaled by T/m over each target.
    scale = min(1, flops_target / flops) if flops_target else 1
    if latency_target:
      scale *= min(1, latency_target / trial.metrics['latency_ms'])
    assert trial.reward == pytest.approx(trial.metrics['dice'] * scale)
  return trials


def test_encoder_search_trains_two_architectures(tmp_path):
  """PPO, with a FLOPs target under both models' FLOPs."""
  trials = _search(tmp_path, 2, f'--params_override={TINY_3D}',
                   '--algorithm=ppo', '--target_flops_multi_adds_billion=0.01',
                   flops_target=0.01)
  assert len({t.nas_params_str for t in trials}) == 2
  assert all(t.reward < t.metrics['dice'] for t in trials)
  for trial in trials:
    assert 0 <= trial.metrics['dice'] <= 1
    assert {f'val_generalized_dice/class_{k}' for k in range(4)} <= set(
        trial.metrics)


@pytest.mark.slow  # Exports and times each model: make test-all.
def test_latency_target_scales_the_dice_reward(tmp_path):
  """A searched 3D UNet's latency, measured on its exported SavedModel after
  training, over a target far under it scales the reward."""
  [trial] = _search(tmp_path, 1, f'--params_override={TINY_3D}',
                    '--target_device_latency_ms=0.001', latency_target=0.001)
  assert trial.metrics['latency_ms'] > 0.001
  assert 0 < trial.reward < trial.metrics['dice']


@pytest.mark.slow
def test_tiny_config_learns_the_volumes_and_its_model_exports(tmp_path):
  """The shipped tiny config as it is (200 steps at 32^3; about 10 minutes
  on 2 cores): generalised Dice >= 0.6 and every tumour class found; the
  model exports as a SavedModel serving whole volumes, is measured and
  drawn in the report."""
  [trial] = _search(tmp_path, 1)
  assert trial.metrics['dice'] >= 0.6, trial.metrics
  for k in TUMOUR_CLASSES:
    assert trial.metrics[f'val_generalized_dice/class_{k}'] > 0.3, trial.metrics
  serve = exported_and_timed(tmp_path)
  import numpy as np  # pylint: disable=g-import-not-at-top  (TensorFlow: only here)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  volume = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 32, 2))
  outputs = serve(inputs=tf.constant(volume, tf.uint8))
  assert outputs['logits'].shape == (1, 32, 32, 32, 4)
  result = cli(f'--job_dir={tmp_path}', '--mode=report')
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / 'report.html').read_text().count(
      '<rect class="block ') == 4  # The encoder's levels, drawn.


def test_own_volumes_whose_sizes_the_model_does_not_share_are_refused(
    tmp_path):
  """Your own 3D TFRecords: the data configs' sizes must be the model's."""
  from trainer.datasets import volumes  # pylint: disable=g-import-not-at-top  (TensorFlow: only here)
  data = volumes.make_volumes(str(tmp_path / 'data'), volume_size=16,
                              num_train=2, num_eval=1)
  sample = '{"dummy_param": "0/1 (1)"}'
  sizes = ('task.model.input_size=[16,16,16],task.model.num_channels=2,'
           'task.train_data.num_channels=2,task.validation_data.num_channels=2')
  result = cli('--mode=trial', f'--job_dir={tmp_path / "job"}',
               '--search_space=static_unet', f'--nas_params_str={sample}',
               f'--train_data={data.train_glob}', f'--eval_data={data.eval_glob}',
               f'--params_override={TINY_3D},{sizes}')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      'nas-garden: error: task.train_data.input_size is [32, 32, 32] but '
      'task.model.input_size is [16, 16, 16]: give your 3D data\'s sizes to '
      'both']
  # With the data configs' sizes too, the same data trains.
  both = (sizes + ',task.train_data.input_size=[16,16,16],'
          'task.validation_data.input_size=[16,16,16]')
  result = cli('--mode=trial', f'--job_dir={tmp_path / "job2"}',
               '--search_space=static_unet', f'--nas_params_str={sample}',
               f'--train_data={data.train_glob}', f'--eval_data={data.eval_glob}',
               f'--params_override={TINY_3D},{both}')
  assert result.returncode == 0, result.stderr[-3000:]


def _convert_nifti(tmp_path):
  """Three generated NIfTI cases converted through the CLI: the prefix and
  the printed --params_override."""
  from tests.unit import test_nifti  # pylint: disable=g-import-not-at-top  (TensorFlow: only here)
  test_nifti.write_cases(tmp_path / 'nifti', 3)
  prefix = tmp_path / 'out' / 'vol'
  result = cli('--mode=make_data', f'--nifti_image_dir={tmp_path}/nifti/images',
               f'--nifti_label_dir={tmp_path}/nifti/labels',
               f'--output_prefix={prefix}')
  assert result.returncode == 0, result.stderr[-3000:]
  use = result.stdout.strip().splitlines()[-1]
  assert use.startswith('use: --train_data=')
  override = use.split('--params_override=')[1]
  assert 'task.train_data.input_size=[16,16,16]' in override
  return prefix, override


def test_nifti_cases_convert_through_the_cli(tmp_path):
  """--mode=make_data on NIfTI folders; bad folders and mixed flags are
  one-line errors."""
  _convert_nifti(tmp_path)
  (tmp_path / 'nifti' / 'labels' / 'case02.nii.gz').unlink()
  result = cli('--mode=make_data', f'--nifti_image_dir={tmp_path}/nifti/images',
               f'--nifti_label_dir={tmp_path}/nifti/labels',
               f'--output_prefix={tmp_path}/again')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f'nas-garden: error: {tmp_path}/nifti/images/case02.nii.gz has no label '
      f'file {tmp_path}/nifti/labels/case02.nii.gz']
  result = cli('--mode=make_data', f'--nifti_image_dir={tmp_path}/nifti/images',
               '--coco_annotation_file=a.json', f'--output_prefix={tmp_path}/x')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      'nas-garden: error: --mode=make_data converts one dataset: give the '
      '--coco_* or the --nifti_* flags, not both']


@pytest.mark.slow
def test_converted_nifti_cases_train_with_the_printed_flags(tmp_path):
  """The `use:` line of the conversion trains a trial (in `make test-all`)."""
  prefix, override = _convert_nifti(tmp_path)
  result = cli('--mode=trial', f'--job_dir={tmp_path / "job"}',
               '--search_space=static_unet',
               '--nas_params_str={"dummy_param": "0/1 (1)"}',
               f'--train_data={prefix}-*', f'--eval_data={prefix}-*',
               f'--params_override={TINY_3D},{override}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'val_generalized_dice/class_3' in (
      tmp_path / 'job' / 'trials' / '1' / 'metrics.json').read_text()
