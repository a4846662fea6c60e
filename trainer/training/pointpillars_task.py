"""The PointPillars task on Model Garden's Task API (experiment
`nas_pointpillars`): lidar scene records (trainer/datasets/lidar.py) become
pillars and anchor targets in the input pipeline, the searched network
(architectures/pointpillars.py) trains on the head's loss, and evaluation
decodes detections and reports BEV and 3D AP and APH per class
(lidar_eval.py). `AP` and `APH` are the means over the classes present of
AP_BEV and APH_BEV at each class's first (KITTI moderate) IoU threshold.
"""

import dataclasses
from typing import Any, List, Optional

import numpy as np
import tensorflow as tf
import tf_keras

from official.core import base_task
from official.core import config_definitions as cfg
from official.core import task_factory
from official.core import train_utils
from official.modeling import hyperparams
from official.vision.configs import common
from trainer.datasets import lidar
from trainer.datasets import pillars
from trainer.training import anchors3d
from trainer.training import lidar_eval
from trainer.training import pointpillars_head
from trainer.training.architectures import pointpillars


@dataclasses.dataclass
class PillarsConfig(hyperparams.Config):
  """The BEV grid: [x_min, y_min, z_min, x_max, y_max, z_max] in metres,
  the pillar size (x, y), and the pillars and points per pillar kept."""
  point_range: List[float] = dataclasses.field(default_factory=lambda: [
      *lidar.POINT_RANGE[0], *lidar.POINT_RANGE[1]])
  pillar_size: List[float] = dataclasses.field(
      default_factory=lambda: [0.16, 0.16])
  max_pillars: int = 12000
  max_points: int = 32


@dataclasses.dataclass
class PointPillarsModel(hyperparams.Config):
  num_classes: int = len(lidar.CLASS_NAMES)
  block_specs_json: str = ''  # The materialised PointPillarsSpec.
  filter_size_scale: float = 1.0
  # Batch norm's momentum and epsilon (synchronised batch norm: the
  # distribution strategy's; the activations are the searched ones).
  norm_activation: common.NormActivation = dataclasses.field(
      default_factory=lambda: common.NormActivation(norm_momentum=0.99,
                                                    norm_epsilon=1e-3))
  pillars: PillarsConfig = dataclasses.field(default_factory=PillarsConfig)


@dataclasses.dataclass
class PointPillarsData(cfg.DataConfig):
  input_path: str = ''
  global_batch_size: int = 8
  is_training: bool = True
  shuffle_buffer_size: int = 200
  cycle_length: int = 2
  drop_remainder: bool = True
  max_boxes: int = 64  # Ground-truth boxes per frame kept for evaluation.
  dtype: str = 'float32'  # Of the pillar features (mixed precision).


@dataclasses.dataclass
class PointPillarsEvaluation(hyperparams.Config):
  score_threshold: float = 0.1
  nms_iou: float = 0.5
  max_detections: int = 100


@dataclasses.dataclass
class PointPillarsTaskConfig(cfg.TaskConfig):
  model: PointPillarsModel = dataclasses.field(
      default_factory=PointPillarsModel)
  train_data: PointPillarsData = dataclasses.field(
      default_factory=PointPillarsData)
  validation_data: PointPillarsData = dataclasses.field(
      default_factory=lambda: PointPillarsData(is_training=False,
                                               drop_remainder=False))
  evaluation: PointPillarsEvaluation = dataclasses.field(
      default_factory=PointPillarsEvaluation)


def grid_of(model: PointPillarsModel) -> pillars.PillarGrid:
  r = list(model.pillars.point_range)
  return pillars.PillarGrid((tuple(r[:3]), tuple(r[3:])),
                            tuple(model.pillars.pillar_size),
                            model.pillars.max_pillars,
                            model.pillars.max_points)


@task_factory.register_task_cls(PointPillarsTaskConfig)
class PointPillarsTask(base_task.Task):
  """Trains and evaluates a searched PointPillars detector."""

  def __init__(self, params: PointPillarsTaskConfig, logging_dir=None,
               name=None):
    super().__init__(params, logging_dir=logging_dir, name=name)
    if params.model.num_classes != len(lidar.CLASS_NAMES):
      raise ValueError(f'task.model.num_classes must be '
                       f'{len(lidar.CLASS_NAMES)} ({", ".join(lidar.CLASS_NAMES)}'
                       '): the lidar records\' classes')
    self._grid = grid_of(params.model)
    self._anchors, self._anchor_classes = anchors3d.make_anchors(self._grid)

  @property
  def grid(self) -> pillars.PillarGrid:
    return self._grid

  @property
  def anchors(self) -> np.ndarray:
    """(rows, cols, A, 7): the anchors the head's outputs are coded on."""
    return self._anchors

  def build_model(self) -> tf_keras.Model:
    model = self.task_config.model
    return pointpillars.build_network(
        pointpillars.parse_spec(model.block_specs_json), self._grid.rows,
        self._grid.cols, self._grid.max_pillars, self._grid.max_points,
        model.num_classes, anchors3d.anchors_per_cell(),
        model.filter_size_scale, model.norm_activation.norm_momentum,
        model.norm_activation.norm_epsilon)

  def _example(self, serialized, max_boxes: int, dtype: str):
    scene = lidar.decode(serialized)
    features = pillars.pillarize(scene['points'], self._grid)
    features['features'] = tf.cast(features['features'], dtype)
    labels = anchors3d.assign(self._anchors, self._anchor_classes,
                              scene['boxes'], scene['classes'])
    boxes = scene['boxes'][:max_boxes]
    count = tf.shape(boxes)[0]
    labels.update(
        boxes=tf.pad(boxes, [[0, max_boxes - count], [0, 0]]),
        classes=tf.pad(tf.cast(scene['classes'][:max_boxes], tf.int32),
                       [[0, max_boxes - count]]),
        num_boxes=count)
    return features, labels

  def build_inputs(self, params: PointPillarsData,
                   input_context: Optional[tf.distribute.InputContext] = None):
    files = sorted(f for pattern in params.input_path.split(',')
                   for f in tf.io.gfile.glob(pattern))
    if not files:
      raise ValueError(f'no lidar records match {params.input_path!r}')
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if input_context:
      dataset = dataset.shard(input_context.num_input_pipelines,
                              input_context.input_pipeline_id)
    if params.is_training:
      dataset = dataset.repeat()
    dataset = dataset.interleave(tf.data.TFRecordDataset,
                                 cycle_length=params.cycle_length)
    if params.is_training:
      dataset = dataset.shuffle(params.shuffle_buffer_size, seed=params.seed)
    dataset = dataset.map(
        lambda s: self._example(s, params.max_boxes, params.dtype),
        num_parallel_calls=tf.data.AUTOTUNE)
    batch = (input_context.get_per_replica_batch_size(params.global_batch_size)
             if input_context else params.global_batch_size)
    return dataset.batch(batch, drop_remainder=params.drop_remainder).prefetch(
        tf.data.AUTOTUNE)

  def build_losses(self, labels, model_outputs, aux_losses=None):
    total = pointpillars_head.loss(model_outputs, labels)['total_loss']
    return total + tf.add_n(aux_losses) if aux_losses else total

  def train_step(self, inputs, model, optimizer, metrics=None):
    features, labels = inputs
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tf.GradientTape() as tape:
      outputs = model(features, training=True)
      losses = pointpillars_head.loss(outputs, labels)
      total = losses['total_loss'] + (tf.add_n(model.losses)
                                      if model.losses else 0.0)
      scaled = total / replicas
    variables = model.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
    return {self.loss: total, **{k: v for k, v in losses.items()
                                 if k != 'total_loss'}}

  def validation_step(self, inputs, model, metrics=None):
    features, labels = inputs
    outputs = model(features, training=False)
    evaluation = self.task_config.evaluation
    signature = {
        'boxes': tf.TensorSpec([evaluation.max_detections, 7], tf.float32),
        'scores': tf.TensorSpec([evaluation.max_detections], tf.float32),
        'classes': tf.TensorSpec([evaluation.max_detections], tf.int32),
        'num_detections': tf.TensorSpec([], tf.int32)}
    detections = tf.map_fn(
        lambda o: pointpillars_head.detect(
            o, self._anchors, evaluation.score_threshold,
            nms_iou=evaluation.nms_iou,
            max_detections=evaluation.max_detections),
        outputs, fn_output_signature=signature)
    truths = {k: labels[k] for k in ('boxes', 'classes', 'num_boxes')}
    return {self.loss: pointpillars_head.loss(outputs, labels)['total_loss'],
            'detections': detections, 'truths': truths}

  def aggregate_logs(self, state=None, step_outputs=None):
    state = state or lidar_eval.LidarEvaluator()
    found = {k: _numpy(v) for k, v in step_outputs['detections'].items()}
    truths = {k: _numpy(v) for k, v in step_outputs['truths'].items()}
    for i, n in enumerate(found['num_detections']):
      m = truths['num_boxes'][i]
      state.update(truths['boxes'][i, :m], truths['classes'][i, :m],
                   found['boxes'][i, :n], found['scores'][i, :n],
                   found['classes'][i, :n])
    return state

  def reduce_aggregated_logs(self, aggregated_logs, global_step=None):
    metrics = aggregated_logs.result()
    for name in ('AP', 'APH'):
      values = [metrics[f'{name}_BEV/{c}@{t[0]:g}']
                for c, t in lidar_eval.IOU_THRESHOLDS.items()
                if f'{name}_BEV/{c}@{t[0]:g}' in metrics]
      metrics[name] = sum(values) / len(values) if values else 0.0
    return metrics


class PointPillarsServing(tf.Module):
  """The served detector: one frame's raw points (x, y, z, reflectance) in,
  pillarised in the graph, its detections out (batch 1, as Vertex AI NAS
  measures a model)."""

  def __init__(self, task: PointPillarsTask, model: tf_keras.Model):
    super().__init__()
    self._task, self.model = task, model

  @tf.function(input_signature=[tf.TensorSpec([1, None, 4], tf.float32)])
  def serve(self, points):
    frame = pillars.pillarize(points[0], self._task.grid)
    outputs = self.model({k: v[None] for k, v in frame.items()},
                         training=False)
    evaluation = self._task.task_config.evaluation
    found = pointpillars_head.detect(
        {k: v[0] for k, v in outputs.items()}, self._task.anchors,
        evaluation.score_threshold, nms_iou=evaluation.nms_iou,
        max_detections=evaluation.max_detections)
    return {k: v[None] for k, v in found.items()}


def export_serving_model(params: cfg.ExperimentConfig, checkpoint: str,
                         export_dir: str) -> None:
  """Writes the checkpoint's detector as a SavedModel whose
  `serving_default` takes `points` [1, N, 4], with params.yaml beside it."""
  task = PointPillarsTask(params.task)
  model = task.build_model()
  tf.train.Checkpoint(model=model).read(checkpoint).expect_partial(
  ).assert_existing_objects_matched()
  module = PointPillarsServing(task, model)
  tf.saved_model.save(module, export_dir,
                      signatures={'serving_default': module.serve})
  train_utils.serialize_config(params, export_dir)


def random_points(params: Any, count: int,
                  rng: np.random.Generator) -> np.ndarray:
  """A [1, count, 4] frame of points spread over the grid's range: what
  latency is measured on."""
  r = np.array(params.task.model.pillars.point_range, np.float32)
  xyz = rng.uniform(r[:3], r[3:], (count, 3))
  return np.concatenate([xyz, rng.uniform(0, 1, (count, 1))],
                        axis=1)[None].astype(np.float32)


def _numpy(value: Any) -> np.ndarray:
  """An output as one array: Orbit hands aggregate_logs a tuple of each
  replica's tensor."""
  if isinstance(value, (tuple, list)):
    return np.concatenate([np.asarray(v) for v in value])
  return np.asarray(value)
