"""Registered Model Garden experiments whose models take searched architectures.

Each experiment extends a stock Model Garden task config only by the tunable
component configs (`OneOfConfig` subclasses), so the stock task code, Orbit
trainer and evaluators (COCO AP, mIoU) run unchanged:
  nas_image_classification, nas_retinanet, nas_semantic_segmentation,
  nas_segmentation_3d (on Model Garden's volumetric_models project),
  nas_pointpillars (our task on Model Garden's Task API),
also registered under the platform's names (image_classification_nas,
retinanet_nas, semantic_segmentation_nas) with the platform's defaults.
"""

import dataclasses
import re
from typing import Optional

import tensorflow as tf
import yaml

from official.common import dataset_fn
from official.core import config_definitions as cfg
from official.core import exp_factory
from official.core import task_factory
from official.modeling import hyperparams
from official.modeling import optimization
from official.vision.configs import backbones
from official.vision.configs import common
from official.vision.configs import decoders
from official.vision.configs import image_classification
from official.vision.configs import retinanet
from official.vision.configs import semantic_segmentation
from official.projects.volumetric_models.configs import backbones as backbones_3d
from official.projects.volumetric_models.configs import decoders as decoders_3d
from official.projects.volumetric_models.configs import semantic_segmentation_3d
from official.projects.volumetric_models.tasks import semantic_segmentation_3d as segmentation_3d_task
from official.vision.dataloaders import input_reader
from official.vision.dataloaders import input_reader_factory
from official.vision.dataloaders import segmentation_input
from official.vision.dataloaders import tf_example_decoder
from official.vision.dataloaders import tf_example_label_map_decoder
from official.vision.tasks import image_classification as image_classification_task
from official.vision.tasks import retinanet as retinanet_task
from official.vision.tasks import semantic_segmentation as segmentation_task
from augment import parsers
from trainer import fileio
from trainer import outcome
from trainer import platform_flags
from trainer.training import autograph_rules
from trainer.training import pointpillars_task
from trainer.training.architectures import efficientnet_v2
from trainer.training.architectures import mnasnet
from trainer.training.architectures import nasfpn
from trainer.training.architectures import nasnet
from trainer.training.architectures import regnet
from trainer.training.architectures import spinenet
from trainer.training.architectures import unet3d


autograph_rules.skip_model_garden_vision()  # Before anything traces.


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
  tunable_regnet: regnet.TunableRegNet = dataclasses.field(
      default_factory=regnet.TunableRegNet)
  tunable_nasnet: nasnet.TunableNasNet = dataclasses.field(
      default_factory=nasnet.TunableNasNet)


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
  """`builtin_data` names the built-in data trained on when the config and
  flags give none: `shapes` (generated shape x texture crops, which rank
  architectures) or `digits` (scikit-learn's, which do not)."""
  model: NasImageClassificationModel = dataclasses.field(
      default_factory=NasImageClassificationModel)
  builtin_data: str = 'shapes'


@task_factory.register_task_cls(NasImageClassificationTask)
class NasImageClassification(image_classification_task.ImageClassificationTask):
  """Model Garden's classification task, bound to the NAS config."""


@dataclasses.dataclass
class NasRetinaNetModel(retinanet.RetinaNet):
  """RetinaNet with tunable parts.

  `scaling_image_size_scale` multiplies the image size a `spinenet_scaling`
  trial searches (512 or 640), so CPU proxies rank the same candidates at a
  lower resolution; 1.0 trains at the searched size. `scaling_width_scale`
  multiplies its searched widths the same way (filter_size_scale, endpoint
  and head filters).
  """
  backbone: Backbone = dataclasses.field(
      default_factory=lambda: Backbone(type='tunable_spinenet'))
  decoder: Decoder = dataclasses.field(
      default_factory=lambda: Decoder(type='identity'))
  scaling_image_size_scale: float = 1.0
  scaling_width_scale: float = 1.0


@dataclasses.dataclass
class NasRetinaNetTask(retinanet.RetinaNetTask):
  """`train_data.parser.aug_policy` may hold a searched policy's spec JSON."""
  model: NasRetinaNetModel = dataclasses.field(default_factory=NasRetinaNetModel)
  augment_options: parsers.AugmentOptionsConfig = dataclasses.field(
      default_factory=parsers.AugmentOptionsConfig)


@task_factory.register_task_cls(NasRetinaNetTask)
class NasRetinaNet(retinanet_task.RetinaNetTask):
  """Model Garden's RetinaNet task, bound to the NAS config.

  Training data with an augmentation policy gets the same decoder and parser
  settings as Model Garden's `build_inputs`, in a parser that applies it.
  """

  def build_inputs(self, params: retinanet.DataConfig,
                   input_context: Optional[tf.distribute.InputContext] = None):
    policy = parsers.build_policy(params.parser.aug_policy, 'detection',
                                  self.task_config.augment_options)
    if policy is None or not params.is_training:
      return super().build_inputs(params, input_context)
    if params.tfds_name:
      raise ValueError('augmentation policies read TFRecords, not tfds_name')
    decoder_cfg = params.decoder.get()
    if params.decoder.type == 'label_map_decoder':
      decoder = tf_example_label_map_decoder.TfExampleDecoderLabelMap(
          label_map=decoder_cfg.label_map,
          regenerate_source_id=decoder_cfg.regenerate_source_id)
    else:
      decoder = tf_example_decoder.TfExampleDecoder(
          regenerate_source_id=decoder_cfg.regenerate_source_id,
          attribute_names=decoder_cfg.attribute_names)
    model, parser_cfg = self.task_config.model, params.parser
    parser = parsers.DetectionParser(
        policy,
        output_size=model.input_size[:2], min_level=model.min_level,
        max_level=model.max_level, num_scales=model.anchor.num_scales,
        aspect_ratios=model.anchor.aspect_ratios,
        anchor_size=model.anchor.anchor_size, dtype=params.dtype,
        match_threshold=parser_cfg.match_threshold,
        unmatched_threshold=parser_cfg.unmatched_threshold,
        box_coder_weights=model.detection_generator.box_coder_weights,
        aug_rand_hflip=parser_cfg.aug_rand_hflip,
        aug_rand_jpeg=parser_cfg.aug_rand_jpeg,
        aug_scale_min=parser_cfg.aug_scale_min,
        aug_scale_max=parser_cfg.aug_scale_max,
        skip_crowd_during_training=parser_cfg.skip_crowd_during_training,
        max_num_instances=parser_cfg.max_num_instances,
        pad=parser_cfg.pad, keep_aspect_ratio=parser_cfg.keep_aspect_ratio)
    return _read(params, decoder, parser, input_context)


@dataclasses.dataclass
class NasSegmentationModel(semantic_segmentation.SemanticSegmentationModel):
  backbone: Backbone = dataclasses.field(
      default_factory=lambda: Backbone(type='tunable_spinenet'))
  decoder: Decoder = dataclasses.field(
      default_factory=lambda: Decoder(type='identity'))


@dataclasses.dataclass
class NasSegmentationTask(semantic_segmentation.SemanticSegmentationTask):
  """`train_data.aug_policy` may hold a searched policy's spec JSON."""
  model: NasSegmentationModel = dataclasses.field(
      default_factory=NasSegmentationModel)
  augment_options: parsers.AugmentOptionsConfig = dataclasses.field(
      default_factory=parsers.AugmentOptionsConfig)


@task_factory.register_task_cls(NasSegmentationTask)
class NasSegmentation(segmentation_task.SemanticSegmentationTask):
  """Model Garden's semantic segmentation task, bound to the NAS config.

  Training data with an augmentation policy gets Model Garden's parser
  settings in a parser that applies it.
  """

  def build_inputs(self, params: semantic_segmentation.DataConfig,
                   input_context: Optional[tf.distribute.InputContext] = None):
    policy = parsers.build_policy(params.aug_policy, 'segmentation',
                                  self.task_config.augment_options)
    if policy is None or not params.is_training:
      return super().build_inputs(params, input_context)
    if params.tfds_name:
      raise ValueError('augmentation policies read TFRecords, not tfds_name')
    decoder = segmentation_input.Decoder(
        image_feature=params.image_feature,
        additional_dense_features=params.additional_dense_features)
    parser = parsers.SegmentationParser(
        policy,
        output_size=params.output_size, crop_size=params.crop_size,
        ignore_label=self.task_config.losses.ignore_label,
        resize_eval_groundtruth=params.resize_eval_groundtruth,
        gt_is_matting_map=self.task_config.losses.gt_is_matting_map,
        groundtruth_padded_size=params.groundtruth_padded_size,
        aug_scale_min=params.aug_scale_min, aug_scale_max=params.aug_scale_max,
        aug_rand_hflip=params.aug_rand_hflip,
        preserve_aspect_ratio=params.preserve_aspect_ratio, dtype=params.dtype,
        image_feature=params.image_feature,
        additional_dense_features=params.additional_dense_features,
        centered_crop=params.centered_crop)
    return _read(params, decoder, parser, input_context)


@dataclasses.dataclass
class Backbone3D(backbones_3d.Backbone):
  """Model Garden's 3D backbones plus the searched UNet encoder."""
  tunable_unet_encoder: unet3d.TunableUNetEncoder = dataclasses.field(
      default_factory=unet3d.TunableUNetEncoder)


@dataclasses.dataclass
class Decoder3D(decoders_3d.Decoder):
  """Model Garden's 3D decoders plus the searched NAS-FPN cell."""
  tunable_unet_nasfpn: unet3d.TunableUNetNasFpn = dataclasses.field(
      default_factory=unet3d.TunableUNetNasFpn)


@dataclasses.dataclass
class NasSegmentation3DModel(
    semantic_segmentation_3d.SemanticSegmentationModel3D):
  backbone: Backbone3D = dataclasses.field(
      default_factory=lambda: Backbone3D(type='unet_3d'))
  decoder: Decoder3D = dataclasses.field(
      default_factory=lambda: Decoder3D(type='unet_3d_decoder'))


@dataclasses.dataclass
class NasSegmentation3DTask(semantic_segmentation_3d.SemanticSegmentation3DTask):
  model: NasSegmentation3DModel = dataclasses.field(
      default_factory=NasSegmentation3DModel)


@task_factory.register_task_cls(NasSegmentation3DTask)
class NasSegmentation3D(segmentation_3d_task.SemanticSegmentation3DTask):
  """Model Garden's 3D segmentation task (Dice loss, generalised Dice),
  bound to the NAS config."""


def _read(params: cfg.DataConfig, decoder, parser,
          input_context: Optional[tf.distribute.InputContext]):
  """The dataset Model Garden's tasks read: decode, then parse for training."""
  reader = input_reader_factory.input_reader_generator(
      params, dataset_fn=dataset_fn.pick_dataset_fn(params.file_type),
      decoder_fn=decoder.decode,
      combine_fn=input_reader.create_combine_fn(params),
      parser_fn=parser.parse_fn(params.is_training))
  return reader.read(input_context=input_context)


def _experiment(task: cfg.TaskConfig,
                trainer: cfg.TrainerConfig) -> cfg.ExperimentConfig:
  return cfg.ExperimentConfig(
      task=task, trainer=trainer,
      restrictions=['task.train_data.is_training != None',
                    'task.validation_data.is_training != None'])


def _sgd_trainer(*, train_steps: int, steps_per_loop: int, interval: int,
                 validation_steps: int, learning_rate: dict,
                 warmup_steps: int) -> cfg.TrainerConfig:
  """The platform's trainer defaults: SGD with momentum 0.9, a linear warmup
  into `learning_rate` (a Model Garden learning-rate config), and summaries,
  checkpoints and evaluations every `interval` steps."""
  return cfg.TrainerConfig(
      train_steps=train_steps, steps_per_loop=steps_per_loop,
      summary_interval=interval, checkpoint_interval=interval,
      validation_interval=interval, validation_steps=validation_steps,
      optimizer_config=optimization.OptimizationConfig({
          'optimizer': {'type': 'sgd', 'sgd': {'momentum': 0.9}},
          'learning_rate': learning_rate,
          'warmup': {'type': 'linear',
                     'linear': {'warmup_steps': warmup_steps}},
      }))


# Each experiment's defaults are those of the platform experiment of the same
# task (PLATFORM_EXPERIMENTS), so a Vertex AI NAS YAML that overrides a few
# keys trains as it does there. Without input paths a trial trains on
# built-in data, whose class count replaces num_classes.


@exp_factory.register_config_factory('nas_image_classification')
def nas_image_classification() -> cfg.ExperimentConfig:
  """Image classification with a searched backbone: ImageNet sizes, 10
  epochs of batch 1024."""
  return _experiment(
      NasImageClassificationTask(
          model=NasImageClassificationModel(
              num_classes=1001, input_size=[224, 224, 3], dropout_rate=0.2,
              backbone=Backbone(type='tunable_mnasnet',
                                tunable_mnasnet=mnasnet.TunableMnasNet(
                                    endpoints_num_filters=256)),
              norm_activation=common.NormActivation(
                  norm_momentum=0.99, norm_epsilon=0.001, use_sync_bn=True)),
          losses=image_classification.Losses(label_smoothing=0.1),
          train_data=image_classification.DataConfig(
              is_training=True, global_batch_size=1024),
          validation_data=image_classification.DataConfig(
              is_training=False, global_batch_size=1024)),
      _sgd_trainer(
          train_steps=12218, steps_per_loop=1222, interval=1222,
          validation_steps=30, warmup_steps=611,
          learning_rate={'type': 'stepwise', 'stepwise': {
              'boundaries': [3666, 6721, 9776],
              'values': [0.064, 0.06208, 0.0602, 0.0584]}}))


@exp_factory.register_config_factory('nas_retinanet')
def nas_retinanet() -> cfg.ExperimentConfig:
  """RetinaNet detection with a searched backbone or decoder: COCO sizes at
  512 px, a half-width SpineNet, 10 epochs of batch 64.

  Images are float32, not Model Garden's bfloat16 (NaN losses on CPUs): the
  platform's trainer sets the data type per device, as the hardware config
  layers and --mixed_precision do here.
  """
  return _experiment(
      NasRetinaNetTask(
          model=NasRetinaNetModel(
              num_classes=91, input_size=[512, 512, 3], min_level=3,
              max_level=7,
              backbone=Backbone(
                  type='tunable_spinenet',
                  tunable_spinenet=spinenet.TunableSpineNet(
                      filter_size_scale=0.5, resample_alpha=0.25,
                      endpoints_num_filters=64,
                      init_stochastic_depth_rate=0.2)),
              head=retinanet.RetinaNetHead(num_filters=64),
              anchor=retinanet.Anchor(anchor_size=3.0),
              norm_activation=common.NormActivation(
                  activation='relu', norm_momentum=0.997, norm_epsilon=1e-4,
                  use_sync_bn=True)),
          losses=retinanet.Losses(l2_weight_decay=4e-5),
          train_data=retinanet.DataConfig(
              is_training=True, global_batch_size=64, dtype='float32',
              parser=retinanet.Parser(aug_rand_hflip=True, aug_scale_min=0.5,
                                      aug_scale_max=2.0)),
          validation_data=retinanet.DataConfig(
              is_training=False, global_batch_size=64, dtype='float32')),
      _sgd_trainer(
          train_steps=17330, steps_per_loop=1733, interval=1733,
          validation_steps=116, warmup_steps=500,
          learning_rate={'type': 'stepwise', 'stepwise': {
              'boundaries': [13864], 'values': [0.08, 0.008]}}))


@exp_factory.register_config_factory('nas_semantic_segmentation')
def nas_semantic_segmentation() -> cfg.ExperimentConfig:
  """Semantic segmentation with a searched backbone or decoder: PASCAL VOC
  sizes at 640 px, 20k steps of batch 32.

  The platform leaves the model's input size open ([None, None, 3]); here it
  is the data's 640 px, which sizes the built-in data.
  """
  return _experiment(
      NasSegmentationTask(
          model=NasSegmentationModel(
              num_classes=21, input_size=[640, 640, 3],
              backbone=Backbone(
                  type='tunable_spinenet',
                  tunable_spinenet=spinenet.TunableSpineNet(
                      init_stochastic_depth_rate=0.2)),
              decoder=Decoder(type='aspp', aspp=decoders.ASPP(
                  level=3, dilation_rates=[12, 24, 36])),
              head=semantic_segmentation.SegmentationHead(
                  level=3, num_convs=0, prediction_kernel_size=3),
              norm_activation=common.NormActivation(
                  activation='swish', norm_momentum=0.9997, norm_epsilon=1e-3,
                  use_sync_bn=True)),
          losses=semantic_segmentation.Losses(l2_weight_decay=1e-4,
                                              top_k_percent_pixels=1.0),
          train_data=semantic_segmentation.DataConfig(
              output_size=[640, 640], is_training=True, global_batch_size=32,
              aug_rand_hflip=True, aug_scale_min=0.5, aug_scale_max=2.0),
          validation_data=semantic_segmentation.DataConfig(
              output_size=[640, 640], is_training=False, global_batch_size=16,
              resize_eval_groundtruth=False,
              groundtruth_padded_size=[512, 512], drop_remainder=False)),
      _sgd_trainer(
          train_steps=20000, steps_per_loop=100, interval=500,
          validation_steps=90, warmup_steps=500,
          learning_rate={'type': 'cosine', 'cosine': {
              'initial_learning_rate': 0.01, 'decay_steps': 20000}}))


@exp_factory.register_config_factory('nas_segmentation_3d')
def nas_segmentation_3d() -> cfg.ExperimentConfig:
  """3D volume segmentation with a searched UNet: BraTS-like sizes (128^3
  crops of 4 MRI channels, 4 classes), batch 2, 10k steps. (The platform
  runs its UNet spaces in MONAI; these defaults are ours.)"""
  size, channels, classes = [128, 128, 128], 4, 4

  def data(is_training):
    return semantic_segmentation_3d.DataConfig(
        input_size=size, num_classes=classes, num_channels=channels,
        is_training=is_training, global_batch_size=2, label_dtype='uint8')

  return _experiment(
      NasSegmentation3DTask(
          model=NasSegmentation3DModel(
              num_classes=classes, num_channels=channels, input_size=size,
              min_level=1, max_level=4,
              head=semantic_segmentation_3d.SegmentationHead3D(
                  num_classes=classes, level=1, num_convs=0),
              norm_activation=common.NormActivation(
                  activation='relu', norm_momentum=0.99, norm_epsilon=1e-3,
                  use_sync_bn=True)),
          evaluation=semantic_segmentation_3d.Evaluation(
              report_per_class_metric=True),
          train_data=data(True), validation_data=data(False)),
      _sgd_trainer(
          train_steps=10000, steps_per_loop=100, interval=1000,
          validation_steps=-1, warmup_steps=500,
          learning_rate={'type': 'cosine', 'cosine': {
              'initial_learning_rate': 0.01, 'decay_steps': 10000}}))


@exp_factory.register_config_factory('nas_pointpillars')
def nas_pointpillars() -> cfg.ExperimentConfig:
  """Lidar 3D detection with a searched PointPillars: KITTI's range in
  0.16 m pillars, batch 8 for 19,760 steps (the platform's GPU proxy), Adam
  on a cosine decay. (The platform runs it on Waymo in Model Garden's
  pointpillars project; these defaults are ours.)"""
  trainer = _sgd_trainer(
      train_steps=19760, steps_per_loop=104, interval=1976,
      validation_steps=-1, warmup_steps=500,
      learning_rate={'type': 'cosine', 'cosine': {
          'initial_learning_rate': 2e-3, 'decay_steps': 19760}})
  trainer.optimizer_config.optimizer.type = 'adam'
  return _experiment(pointpillars_task.PointPillarsTaskConfig(), trainer)


# The platform's experiment names, as aliases of ours.
for _platform_name, _ours in platform_flags.PLATFORM_EXPERIMENTS.items():
  exp_factory.register_config_factory(_platform_name)(
      lambda ours=_ours: exp_factory.get_exp_config(ours))


def load_experiment_config(experiment: str, config_file: str = '',
                           params_override: str = '') -> cfg.ExperimentConfig:
  """The registered experiment overridden by YAML files, then by a string.

  `config_file` is one path or several comma-separated ones (as
  configs.resolve() returns them), applied in order, later wins, as Model
  Garden applies several `--config_file`s.

  Raises ConfigError with a one-line message for any unusable input.
  """
  try:
    params = exp_factory.get_exp_config(experiment)
  except KeyError as e:
    raise ConfigError(f'unknown experiment {experiment!r}') from e
  if config_file:
    files = _config_files(config_file)
    if not files:
      raise ConfigError(f'config file not found: {config_file!r}')
    for path in files:
      _apply_config_file(params, path)
  if params_override:
    _override(params, parse_override(params_override), '--params_override')
  try:
    params.validate()
  except (KeyError, ValueError, AssertionError) as e:
    raise ConfigError(f'invalid experiment config: {outcome.one_line(e)}') from e
  _check_trainer(params.trainer)
  return params


def _config_files(config_file: str) -> list:
  """The files of a --config_file value in order: one path, or several
  comma-separated (a single file whose name holds a comma stays one)."""
  if fileio.isfile(config_file):
    return [config_file]
  return [path.strip() for path in config_file.split(',') if path.strip()]


def _apply_config_file(params: cfg.ExperimentConfig, config_file: str) -> None:
  if not fileio.isfile(config_file):
    raise ConfigError(f'config file not found: {config_file}')
  try:
    overrides = yaml.load(fileio.read_text(config_file), Loader=ConfigLoader)
  except yaml.YAMLError as e:
    raise ConfigError(f'{config_file} is not valid YAML: '
                      f'{outcome.one_line(e)}') from e
  if not isinstance(overrides, dict):
    raise ConfigError(f'{config_file} must hold a YAML mapping of config keys')
  _override(params, overrides, f'config file {config_file}')


class ConfigLoader(yaml.SafeLoader):
  """Safe YAML that also reads exponent floats without a dot (1e-3) as
  floats, as Model Garden reads its own configs and overrides."""


ConfigLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$'),
    list('-+0123456789'))


def parse_override(params_override: str) -> dict:
  """A --params_override value (k=v pairs, or a YAML/JSON mapping) as a nested
  mapping; ConfigError with a one-line message if it is neither."""
  try:
    text = hyperparams.nested_csv_str_to_json_str(params_override)
  except ValueError:
    text = params_override  # Not k=v pairs: a YAML or JSON mapping.
  try:
    overrides = yaml.load(text, Loader=ConfigLoader)
  except yaml.YAMLError as e:
    raise ConfigError(
        f'cannot parse --params_override: {outcome.one_line(e)}') from e
  if not isinstance(overrides, dict):
    raise ConfigError('--params_override must be key=value pairs or a '
                      'YAML/JSON mapping, e.g. trainer.train_steps=100')
  return overrides


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
    raise ConfigError(f'cannot apply {source}: {outcome.one_line(e)}') from e
