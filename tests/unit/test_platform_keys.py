"""The Vertex AI NAS platform's experiment names and config keys work here
with their meaning, and every experiment's defaults are complete."""

import functools
import json
import os

import pyglove as pg
import pytest
import tf_keras

from official.core import exp_factory
from official.modeling import optimization
from official.vision.modeling.backbones import factory as backbone_factory
import search_spaces
from tests.conftest import (FIXTURES, PLATFORM_CLASSIFICATION_YAML,
                            PLATFORM_SPINENET_YAML)
from trainer import platform_flags
from trainer.training import experiments
from trainer.training.architectures import spinenet

@pytest.mark.parametrize('platform_name',
                         sorted(platform_flags.PLATFORM_EXPERIMENTS))
def test_platform_experiment_names_are_registered_as_ours(platform_name):
  ours = platform_flags.PLATFORM_EXPERIMENTS[platform_name]
  assert (exp_factory.get_exp_config(platform_name).as_dict() ==
          exp_factory.get_exp_config(ours).as_dict())


# The platform's image experiments (their small test YAML is one of them).
IMAGE_EXPERIMENTS = sorted(set(platform_flags.PLATFORM_EXPERIMENTS) -
                           {'pointpillars_nas'})


@pytest.mark.parametrize('experiment', IMAGE_EXPERIMENTS)
def test_defaults_are_complete_so_a_few_overrides_train(experiment, tmp_path):
  config_file = tmp_path / 'platform.yaml'
  config_file.write_text(PLATFORM_CLASSIFICATION_YAML)
  params = experiments.load_experiment_config(experiment, str(config_file))
  task = params.task
  assert task.model.num_classes > 0 and task.model.input_size == [32, 32, 3]
  assert (task.train_data.is_training, task.validation_data.is_training) == (
      True, False)
  assert task.train_data.global_batch_size == 4
  # What used to fail with 'Optimizer type must be specified'.
  factory = optimization.OptimizerFactory(params.trainer.optimizer_config)
  learning_rate = factory.build_learning_rate()
  factory.build_optimizer(learning_rate)
  assert params.trainer.optimizer_config.optimizer.type == 'sgd'
  assert float(learning_rate(params.trainer.train_steps)) > 0


def test_pointpillars_defaults_are_complete():
  params = exp_factory.get_exp_config('pointpillars_nas')
  factory = optimization.OptimizerFactory(params.trainer.optimizer_config)
  learning_rate = factory.build_learning_rate()
  factory.build_optimizer(learning_rate)
  assert params.trainer.optimizer_config.optimizer.type == 'adam'
  assert float(learning_rate(params.trainer.train_steps // 2)) > 0
  assert params.task.train_data.is_training
  assert not params.task.validation_data.is_training


def _platform_spinenet_config(tmp_path, **backbone_overrides):
  """The platform's SpineNet test config (then `backbone_overrides`) with the
  SpineNet-49 topology."""
  config_file = tmp_path / 'spinenet.yaml'
  config_file.write_text(PLATFORM_SPINENET_YAML)
  params = experiments.load_experiment_config('retinanet_nas', str(config_file))
  params.task.model.backbone.tunable_spinenet.override(backbone_overrides)
  spinenet.apply_spinenet(params, search_spaces.spinenet49_reference_spec())
  return params.task.model


def _build(model, size=32):
  try:
    return backbone_factory.build_backbone(
        input_specs=tf_keras.layers.InputSpec(shape=[None, size, size, 3]),
        backbone_config=model.backbone,
        norm_activation_config=model.norm_activation)
  finally:
    tf_keras.backend.clear_session()


@functools.lru_cache(maxsize=None)
def _spinenet_params(tmp_path, **backbone_overrides):
  """Parameters of the platform config's SpineNet (built once per value)."""
  return _build(_platform_spinenet_config(
      tmp_path, **backbone_overrides)).count_params()


def test_platform_spinenet_keys_load_with_their_values(tmp_path):
  backbone = _platform_spinenet_config(tmp_path).backbone.tunable_spinenet
  assert (backbone.model_id, backbone.filter_size_scale,
          backbone.resample_alpha, backbone.endpoints_num_filters,
          backbone.block_repeats) == ('49S', 0.2, 0.2, 4, 1)


@pytest.mark.parametrize('key, value', [
    ('filter_size_scale', 0.4),
    ('resample_alpha', 0.4),
    ('endpoints_num_filters', 8),
    ('block_repeats', 2),
])
def test_each_scaling_key_changes_the_network(tmp_path_factory, key, value):
  tmp_path = tmp_path_factory.getbasetemp()
  assert _spinenet_params(tmp_path, **{key: value}) > _spinenet_params(tmp_path)


def test_model_id_names_a_spinenet_and_the_keys_set_the_widths(
    tmp_path_factory):
  tmp_path = tmp_path_factory.getbasetemp()
  # As on the platform: model_id is checked; the explicit keys scale.
  assert _spinenet_params(tmp_path, model_id='190') == _spinenet_params(
      tmp_path)
  with pytest.raises(ValueError, match=r"tunable_spinenet.model_id '77' is "
                     r'not a SpineNet; valid: 49S, 49, 96, 143, 143L, 190'):
    _spinenet_params(tmp_path, model_id='77')


def test_mnasnet_features_only_drops_the_head_conv():
  with open(os.path.join(FIXTURES, 'mnasnet.json')) as f:
    nas_params_str = json.load(f)['nas_params_str_samples'][0]
  space = search_spaces.get_search_space('mnasnet')
  block_specs_json = pg.to_json_str(search_spaces.materialize(
      space, search_spaces.dna_from_nas_params(space, nas_params_str)))
  model = experiments.NasImageClassificationModel()
  model.backbone.tunable_mnasnet.override({
      'block_specs_json': block_specs_json, 'endpoints_num_filters': 64,
      'filter_size_scale': 0.35})
  with_head = _build(model)
  model.backbone.tunable_mnasnet.features_only = True
  features = _build(model)
  last = max(with_head.output_specs, key=int)
  assert with_head.output_specs[last][-1] == 64
  assert features.output_specs[last][-1] != 64
  assert features.count_params() < with_head.count_params()
