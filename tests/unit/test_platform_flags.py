"""The Vertex AI NAS trainer's flags mean ours: the translation, through the
real absl flags into a trial spec, and what --evaluation does to a trial's
config."""

import copy
import json
import os

from absl import flags
import pytest

from tests.conftest import FIXTURES
from trainer import flags as nas_flags
from trainer import platform_flags
from trainer import spec as spec_lib


def translate(given, mode='trial'):
  """Our flags for `given` (flag -> value on the command line)."""
  return platform_flags.translate(given, mode)


@pytest.mark.parametrize('model, experiment', [
    ('classification', 'nas_image_classification'),
    ('retinanet', 'nas_retinanet'),
    ('segmentation', 'nas_semantic_segmentation'),
    ('pointpillars', 'nas_pointpillars'),
])
def test_model_picks_our_experiment(model, experiment):
  assert translate({'model': model}) == {'experiment': experiment}


def test_a_model_without_an_experiment_is_a_one_line_error():
  with pytest.raises(platform_flags.PlatformFlagError) as error:
    translate({'model': 'mask_rcnn'})
  assert str(error.value) == (
      '--model=mask_rcnn: nas-garden has no mask_rcnn experiment; '
      '--model takes classification, pointpillars, retinanet, segmentation')


@pytest.mark.parametrize('experiment',
                         sorted(platform_flags.PLATFORM_EXPERIMENTS))
def test_platform_experiment_names_become_ours(experiment):
  ours = platform_flags.PLATFORM_EXPERIMENTS[experiment]
  assert translate({'experiment': experiment}) == {'experiment': ours}
  model = next(m for m, e in platform_flags.MODEL_EXPERIMENTS.items()
               if e == ours)
  assert translate({'experiment': experiment, 'model': model}) == {
      'experiment': ours}


def test_paths_are_ours_renamed():
  assert translate({'job-dir': '/jobs/7', 'training_data_path': '/d/train*',
                   'validation_data_path': '/d/val*'}) == {
                       'job_dir': '/jobs/7', 'train_data': '/d/train*',
                       'eval_data': '/d/val*'}
  # Ours given too: the same value is no conflict.
  assert translate({'job-dir': '/jobs/7', 'job_dir': '/jobs/7'}) == {
      'job_dir': '/jobs/7'}


def test_use_tpu_is_the_tpu_strategy_on_the_tpu():
  tpu = {'distribution_strategy': 'tpu', 'accelerator': 'tpu'}
  assert translate({'use_tpu': True}) == tpu
  # Our flags' open values leave the choice to --use_tpu.
  assert translate({'use_tpu': True, 'accelerator': 'auto',
                    'distribution_strategy': ''}) == tpu
  assert translate({'use_tpu': True, 'num_cores': 8}) == tpu
  assert translate({'use_tpu': False}) == {}


@pytest.mark.parametrize('given, evaluation', [
    ({'job_mode': 'train'}, 'final'),
    ({'job_mode': 'train_and_eval'}, ''),
    ({'multiple_eval_during_search': True}, 'best'),
    ({'job_mode': 'train', 'multiple_eval_during_search': True}, 'best'),
    ({'skip_eval': True}, 'none'),
    ({'job_mode': 'train', 'skip_eval': True}, 'none'),
    ({'skip_eval': False, 'multiple_eval_during_search': False}, None),
])
def test_job_mode_skip_eval_and_multiple_eval_set_when_trials_evaluate(
    given, evaluation):
  assert translate(given).get('evaluation') == evaluation


@pytest.mark.parametrize('given, message', [
    ({'job-dir': '/a', 'job_dir': '/b'},
     '--job-dir=/a means --job_dir=/a, but --job_dir=/b was given'),
    ({'model': 'segmentation', 'experiment': 'nas_retinanet'},
     '--model=segmentation means --experiment=nas_semantic_segmentation, but '
     '--experiment=nas_retinanet was given'),
    ({'model': 'segmentation', 'experiment': 'retinanet_nas'},
     '--experiment=retinanet_nas and --model=segmentation name different '
     'experiments'),
    ({'use_tpu': True, 'distribution_strategy': 'mirrored'},
     '--use_tpu means --distribution_strategy=tpu, but '
     '--distribution_strategy=mirrored was given'),
    ({'use_tpu': False, 'distribution_strategy': 'tpu'},
     '--use_tpu=false contradicts --distribution_strategy=tpu'),
    ({'job_mode': 'train', 'evaluation': 'best'},
     '--job_mode=train means --evaluation=final, but --evaluation=best was '
     'given'),
    ({'skip_eval': True, 'multiple_eval_during_search': True},
     '--skip_eval contradicts --multiple_eval_during_search'),
    ({'skip_eval': True, 'job_mode': 'train_and_eval'},
     '--skip_eval contradicts --job_mode=train_and_eval'),
])
def test_conflicts_are_one_line_errors(given, message):
  with pytest.raises(platform_flags.PlatformFlagError) as error:
    translate(given)
  assert str(error.value) == message


def test_evaluation_flags_belong_to_trial_processes():
  with pytest.raises(platform_flags.PlatformFlagError,
                     match='--multiple_eval_during_search is a --mode=trial '
                     'flag'):
    translate({'multiple_eval_during_search': True}, mode='search')
  # The others work in every mode.
  assert translate({'model': 'segmentation'}, mode='search') == {
      'experiment': 'nas_semantic_segmentation'}


def test_the_platform_command_line_becomes_our_trial_spec():
  values = copy.deepcopy(flags.FLAGS)
  values(['nas-garden', '--mode=trial', '--job-dir=/jobs/3',
          '--model=retinanet', '--search_space=spinenet',
          '--training_data_path=/d/train*', '--validation_data_path=/d/val*',
          '--use_tpu=true', '--num_cores=8', '--job_mode=train',
          '--nas_params_str={"a": "0/2 (1)"}'])
  platform_flags.apply(values)
  args = nas_flags.Args.parsed(values)
  assert args.job_dir == '/jobs/3' and args.given('job_dir')
  spec = spec_lib.TrialSpec.from_flags(args)
  assert (spec.experiment, spec.search_space, spec.train_data,
          spec.eval_data) == ('nas_retinanet', 'spinenet', '/d/train*',
                              '/d/val*')
  assert spec.runtime == spec_lib.Runtime(
      distribution_strategy='tpu', accelerator='tpu', evaluation='final')
  # The controller hands the evaluation on to the trial process's argv.
  assert '--evaluation=final' in spec.to_argv('/jobs/3', 1)


def _prepare(tmp_path, evaluation, override):
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  with open(os.path.join(FIXTURES, 'mnasnet.json')) as f:
    nas_params_str = json.load(f)['nas_params_str_samples'][0]
  spec = spec_lib.TrialSpec(
      search_space='mnasnet', nas_params_str=nas_params_str,
      params_override=override,
      runtime=spec_lib.Runtime(evaluation=evaluation))
  return trial.prepare(spec, str(tmp_path)).params.trainer


def test_evaluation_sets_when_the_trial_evaluates(tmp_path):
  override = ('trainer.train_steps=300,trainer.validation_interval=100,'
              'trainer.steps_per_loop=50,trainer.checkpoint_interval=100')
  default = _prepare(tmp_path, '', override)
  assert (default.validation_interval, default.best_checkpoint_export_subdir
          ) == (100, '')
  # final: once, after the last step.
  assert _prepare(tmp_path, 'final', override).validation_interval == 300
  # best: every interval, the best kept and reported.
  best = _prepare(tmp_path, 'best', override)
  assert best.validation_interval == 100
  assert (best.best_checkpoint_export_subdir, best.best_checkpoint_eval_metric,
          best.best_checkpoint_metric_comp) == ('best_ckpt', 'accuracy',
                                                'higher')
