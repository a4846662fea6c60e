"""Every registered space searches in `make test`: a real one-trial search
through the CLI for each space no other default test searches."""

import pytest

import search_spaces
from tests.conftest import DIGITS, cli, fixture_sample
from tests.e2e.test_detection_segmentation import TINY
from tests.e2e.test_segmentation_3d import TINY_3D
from trainer.controller import store as store_lib

# Searched with real trials by other tests of the default suite.
SEARCHED_ELSEWHERE = {
    'mnasnet': 'test_search_cli.py (classification), '
               'test_detection_segmentation.py (detection)',
    'nasfpn': 'test_detection_segmentation.py (segmentation)',
    'randaugment_detection': 'test_augment_search.py',
    'nasnet': 'test_nasnet_searches_with_ppo_and_scheduled_drop_path below',
    # Sampled and trained by real trials of --mode=design_space.
    'anynet_x': 'test_design_space.py',
    'regnet_x': 'test_design_space.py',
    'tunable_unet_encoder': 'test_segmentation_3d.py',
    'pointpillars': 'test_pointpillars.py',
}
# The seed papers' classification spaces train 10 steps of batch 16 on 32 px
# digits (their random samples reach 10M parameters even at the tiny config's
# width).
PAPER_OVERRIDE = ('trainer.train_steps=10,trainer.steps_per_loop=5,'
                  'trainer.summary_interval=5,trainer.validation_interval=10,'
                  'trainer.checkpoint_interval=10,'
                  f'task.train_data.global_batch_size=16,{DIGITS}')
# Architecture spaces: (experiment, its metric, override) of their search.
ARCHITECTURES = {
    **{space: ('nas_retinanet', 'AP', TINY) for space in (
        'efficientnet_v2', 'spinenet', 'spinenet_v2', 'spinenet_mbconv',
        'spinenet_scaling')},
    'regnet_y': ('nas_image_classification', 'top_1_accuracy', PAPER_OVERRIDE),
    **{space: ('nas_segmentation_3d', 'dice', TINY_3D)
       for space in ('static_unet', 'tunable_unet_nasfpn')},
}
# Augmentation spaces: a policy search for a fixed base architecture of their
# task.
AUGMENTATIONS = {
    'randaugment_segmentation': ('nasfpn', 'nas_semantic_segmentation', 'miou'),
    'autoaugment_detection': ('mnasnet', 'nas_retinanet', 'AP'),
    'autoaugment_segmentation': ('nasfpn', 'nas_semantic_segmentation', 'miou'),
}


def test_every_registered_space_is_searched():
  searched = set(SEARCHED_ELSEWHERE) | set(ARCHITECTURES) | set(AUGMENTATIONS)
  assert set(search_spaces.list_search_spaces()) == searched


def _one_trial(job_dir, stage, *flags, override=TINY):
  result = cli(f'--job_dir={job_dir}', '--max_trials=1',
               '--max_failed_trials=1', f'--params_override={override}',
               '--seed=7', *flags, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  [trial] = store_lib.Store.open(str(job_dir), read_only=True).trials(stage)
  assert trial.status == 'completed', trial.error
  return trial


@pytest.mark.parametrize('space', sorted(ARCHITECTURES))
def test_architecture_space_searches(tmp_path, space):
  experiment, metric, override = ARCHITECTURES[space]
  trial = _one_trial(tmp_path, 'search', '--mode=search',
                     f'--search_space={space}', f'--experiment={experiment}',
                     override=override)
  assert trial.reward == pytest.approx(trial.metrics[metric])
  assert trial.metrics['multi_add_flops_billion'] > 0
  identity = store_lib.Store.open(str(tmp_path), read_only=True).job_identity(
      'search')
  assert identity['quality_metric'] == metric
  search_spaces.dna_from_nas_params(  # A point of the space, as stored.
      search_spaces.get_search_space(space), trial.nas_params_str)
  if metric == 'AP':  # The COCO evaluator's whole report is kept.
    assert {'AP50', 'AP75', 'ARmax100'} <= set(trial.metrics)
    assert 0 <= trial.metrics['AP'] <= 1
    assert (tmp_path / 'trials' / '1' / 'ckpt-4.index').exists()


@pytest.mark.parametrize('space', sorted(AUGMENTATIONS))
def test_augmentation_space_searches(tmp_path, space):
  base, experiment, metric = AUGMENTATIONS[space]
  trial = _one_trial(tmp_path, 'augment_search', '--mode=augment_search',
                     f'--search_space={space}', f'--experiment={experiment}',
                     f'--base_search_space={base}',
                     f'--base_nas_params_str={fixture_sample(base)}')
  assert trial.reward == pytest.approx(trial.metrics[metric])
  search_spaces.dna_from_nas_params(
      search_spaces.get_search_space(space), trial.nas_params_str)


def test_nasnet_searches_with_ppo_and_scheduled_drop_path(tmp_path):
  """A PPO trial of the NASNet space with ScheduledDropPath on: a cell pair
  trained, its checkpoint's drop-path layers stepped once per training step.
  (PPO's updates from results: tests/unit/test_search.py and
  test_algorithms.py.)"""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only here)
  result = cli(f'--job_dir={tmp_path}', '--mode=search',
               '--search_space=nasnet', '--algorithm=ppo', '--max_trials=1',
               '--max_failed_trials=1', '--seed=7',
               f'--params_override={PAPER_OVERRIDE},'
               'task.model.backbone.tunable_nasnet.drop_path_rate=0.3,'
               # No stem cells on 32 px digits: five cells, not seven.
               'task.model.backbone.tunable_nasnet.num_stem_cells=0',
               timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  trials = store_lib.Store.open(str(tmp_path), read_only=True).trials('search')
  assert [t.status for t in trials] == ['completed']
  space = search_spaces.get_search_space('nasnet')
  for trial in trials:
    assert trial.reward == pytest.approx(trial.metrics['top_1_accuracy'])
    search_spaces.dna_from_nas_params(space, trial.nas_params_str)
    checkpoint = tf.train.load_checkpoint(
        tf.train.latest_checkpoint(str(tmp_path / 'trials' / str(trial.id))))
    steps = [checkpoint.get_tensor(name) for name in
             checkpoint.get_variable_to_shape_map()
             if name.endswith('/step/.ATTRIBUTES/VARIABLE_VALUE')]
    assert steps and set(steps) == {10}  # trainer.train_steps
