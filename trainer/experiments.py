"""Registered Model Garden experiments whose models take searched architectures.

Each experiment extends a stock Model Garden task config only by the tunable
component configs (`OneOfConfig` subclasses), so the stock task code, Orbit
trainer and evaluators (COCO AP, mIoU) run unchanged:
  nas_image_classification, nas_retinanet, nas_semantic_segmentation.
"""

import dataclasses
import os

import yaml

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.core import task_factory
from official.modeling import hyperparams
from official.vision.configs import backbones
from official.vision.configs import decoders
from official.vision.configs import image_classification
from official.vision.configs import retinanet
from official.vision.configs import semantic_segmentation
from official.vision.tasks import image_classification as image_classification_task
from official.vision.tasks import retinanet as retinanet_task
from official.vision.tasks import semantic_segmentation as segmentation_task
from trainer.architectures import efficientnet_v2
from trainer.architectures import mnasnet
from trainer.architectures import nasfpn
from trainer.architectures import spinenet


class ConfigError(ValueError):
  """An experiment config file or override cannot be applied."""


@dataclasses.dataclass
class Backbone(backbones.Backbone):
  """Model Garden's backbones plus the tunable ones."""
  tunable_mnasnet: mnasnet.TunableMnasNet = dataclasses.field(
      default_factory=mnasnet.TunableMnasNet)
  tunable_efficientnet_v2: efficientnet_v2.TunableEfficientNetV2 = (
      dataclasses.field(default_factory=efficientnet_v2.TunableEfficientNetV2))
  tunable_spinenet: spinenet.TunableSpineNet = dataclasses.field(
      default_factory=spinenet.TunableSpineNet)
  tunable_spinenet_mbconv: spinenet.TunableSpineNetMbconv = dataclasses.field(
      default_factory=spinenet.TunableSpineNetMbconv)


@dataclasses.dataclass
class Decoder(decoders.Decoder):
  """Model Garden's decoders plus the tunable NAS-FPN."""
  tunable_nasfpn: nasfpn.TunableNasFpn = dataclasses.field(
      default_factory=nasfpn.TunableNasFpn)


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


@dataclasses.dataclass
class NasRetinaNetModel(retinanet.RetinaNet):
  """RetinaNet with tunable parts.

  `scaling_image_size_scale` multiplies the image size a `spinenet_scaling`
  trial searches (512 or 640), so CPU proxies rank the same candidates at a
  lower resolution; 1.0 trains at the searched size.
  """
  backbone: Backbone = dataclasses.field(
      default_factory=lambda: Backbone(type='tunable_spinenet'))
  decoder: Decoder = dataclasses.field(
      default_factory=lambda: Decoder(type='identity'))
  scaling_image_size_scale: float = 1.0


@dataclasses.dataclass
class NasRetinaNetTask(retinanet.RetinaNetTask):
  model: NasRetinaNetModel = dataclasses.field(default_factory=NasRetinaNetModel)


@task_factory.register_task_cls(NasRetinaNetTask)
class NasRetinaNet(retinanet_task.RetinaNetTask):
  """Model Garden's RetinaNet task, bound to the NAS config."""


@dataclasses.dataclass
class NasSegmentationModel(semantic_segmentation.SemanticSegmentationModel):
  backbone: Backbone = dataclasses.field(
      default_factory=lambda: Backbone(type='tunable_spinenet'))
  decoder: Decoder = dataclasses.field(
      default_factory=lambda: Decoder(type='identity'))


@dataclasses.dataclass
class NasSegmentationTask(semantic_segmentation.SemanticSegmentationTask):
  model: NasSegmentationModel = dataclasses.field(
      default_factory=NasSegmentationModel)


@task_factory.register_task_cls(NasSegmentationTask)
class NasSegmentation(segmentation_task.SemanticSegmentationTask):
  """Model Garden's semantic segmentation task, bound to the NAS config."""


def _experiment(task: cfg.TaskConfig) -> cfg.ExperimentConfig:
  return cfg.ExperimentConfig(
      task=task, trainer=cfg.TrainerConfig(),
      restrictions=['task.train_data.is_training != None',
                    'task.validation_data.is_training != None'])


@exp_factory.register_config_factory('nas_image_classification')
def nas_image_classification() -> cfg.ExperimentConfig:
  """Image classification with a searched backbone."""
  return _experiment(NasImageClassificationTask())


@exp_factory.register_config_factory('nas_retinanet')
def nas_retinanet() -> cfg.ExperimentConfig:
  """RetinaNet detection with a searched backbone or decoder."""
  return _experiment(NasRetinaNetTask())


@exp_factory.register_config_factory('nas_semantic_segmentation')
def nas_semantic_segmentation() -> cfg.ExperimentConfig:
  """Semantic segmentation with a searched backbone or decoder."""
  return _experiment(NasSegmentationTask())


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
