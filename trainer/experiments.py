"""Registered Model Garden experiments whose models take searched architectures.

Each experiment extends a stock Model Garden task config only by the tunable
component configs (a `OneOfConfig` subclass), so the stock task code, Orbit
trainer and evaluators run unchanged.
"""

import dataclasses
import os

import yaml

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.core import task_factory
from official.modeling import hyperparams
from official.vision.configs import backbones
from official.vision.configs import image_classification
from official.vision.tasks import image_classification as image_classification_task


class ConfigError(ValueError):
  """An experiment config file or override cannot be applied."""


@dataclasses.dataclass
class TunableMnasNet(hyperparams.Config):
  """A searched MnasNet; `filter_size_scale` narrows it for cheap proxies."""
  block_specs_json: str = ''
  endpoints_num_filters: int = 1280
  filter_size_scale: float = 1.0


@dataclasses.dataclass
class Backbone(backbones.Backbone):
  """Model Garden's backbones plus the tunable ones."""
  tunable_mnasnet: TunableMnasNet = dataclasses.field(
      default_factory=TunableMnasNet)


@dataclasses.dataclass
class NasImageClassificationModel(image_classification.ImageClassificationModel):
  backbone: Backbone = dataclasses.field(
      default_factory=lambda: Backbone(type='tunable_mnasnet'))


@dataclasses.dataclass
class NasImageClassificationTask(image_classification.ImageClassificationTask):
  model: NasImageClassificationModel = dataclasses.field(
      default_factory=NasImageClassificationModel)


@task_factory.register_task_cls(NasImageClassificationTask)
class NasImageClassification(image_classification_task.ImageClassificationTask):
  """Model Garden's classification task, bound to the NAS config."""


@exp_factory.register_config_factory('nas_image_classification')
def nas_image_classification() -> cfg.ExperimentConfig:
  """Image classification with a searched backbone."""
  return cfg.ExperimentConfig(
      task=NasImageClassificationTask(),
      trainer=cfg.TrainerConfig(),
      restrictions=[
          'task.train_data.is_training != None',
          'task.validation_data.is_training != None',
      ])


def load_experiment_config(experiment: str, config_file: str = '',
                           params_override: str = '') -> cfg.ExperimentConfig:
  """The registered experiment overridden by a YAML file, then by a string.

  Raises ConfigError with a one-line message for any unusable input.
  """
  try:
    params = exp_factory.get_exp_config(experiment)
  except KeyError as e:
    raise ConfigError(f'unknown experiment {experiment!r}') from e
  if config_file:
    if not os.path.isfile(config_file):
      raise ConfigError(f'config file not found: {config_file}')
    try:
      with open(config_file) as f:
        overrides = yaml.safe_load(f)
    except yaml.YAMLError as e:
      raise ConfigError(f'{config_file} is not valid YAML: '
                        f'{_one_line(e)}') from e
    if not isinstance(overrides, dict):
      raise ConfigError(f'{config_file} must hold a YAML mapping of config keys')
    _override(params, overrides, f'config file {config_file}')
  if params_override:
    try:
      text = hyperparams.nested_csv_str_to_json_str(params_override)
    except ValueError:
      text = params_override  # Not k=v pairs: a YAML or JSON mapping.
    try:
      overrides = yaml.safe_load(text)
    except yaml.YAMLError as e:
      raise ConfigError(
          f'cannot parse --params_override: {_one_line(e)}') from e
    if not isinstance(overrides, dict):
      raise ConfigError('--params_override must be key=value pairs or a '
                        'YAML/JSON mapping, e.g. trainer.train_steps=100')
    _override(params, overrides, '--params_override')
  try:
    params.validate()
  except (KeyError, ValueError, AssertionError) as e:
    raise ConfigError(f'invalid experiment config: {_one_line(e)}') from e
  _check_trainer(params.trainer)
  return params


def _check_trainer(trainer: cfg.TrainerConfig) -> None:
  """Orbit's interval rules, checked before any trial starts."""
  loop = trainer.steps_per_loop
  if loop <= 0 or trainer.train_steps <= 0:
    raise ConfigError('trainer.train_steps and trainer.steps_per_loop must be '
                      'positive')
  for name in ('summary_interval', 'validation_interval'):
    value = getattr(trainer, name)
    if value and value % loop:
      raise ConfigError(f'trainer.{name} ({value}) must be a multiple of '
                        f'trainer.steps_per_loop ({loop})')


def _override(params: cfg.ExperimentConfig, overrides: dict, source: str):
  try:
    params.override(overrides, is_strict=True)
  except (KeyError, ValueError, TypeError, AttributeError) as e:
    raise ConfigError(f'cannot apply {source}: {_one_line(e)}') from e


def _one_line(error: Exception) -> str:
  return ' '.join(str(error).split())
