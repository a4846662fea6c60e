"""Tunable NASNet backbone, registered in Model Garden's backbone factory.

The architecture is a materialised `search_spaces.NasNetSpec`: a normal and a
reduction cell. The network is the paper's (Zoph et al. 2018, Fig. 2): a
3x3 stride-2 stem conv, `num_stem_cells` reduction cells (ImageNet's stem),
then three stacks of `num_cells` normal cells with a reduction cell between
stacks, the filter count doubling at each reduction. Cells are built as the
authors' release builds them (ReLU-conv-BN, separable convolutions applied
twice, factorised reduction of a higher-resolution input), so NASNet-A
Mobile has tf_keras.applications.NASNetMobile's parameter count
(tests/unit/test_nasnet.py). One endpoint per level, after a ReLU: the stem
conv is level 1 and each reduction cell adds one.
"""

import dataclasses
from typing import Any, Dict, List, Optional

import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.modeling import hyperparams
from official.modeling import tf_utils
from official.vision.modeling.backbones import factory
import search_spaces
from trainer.training.architectures import blocks
from trainer.training.architectures import registry

NUM_STACKS = 3  # of normal cells, with a reduction cell between two
FILTER_MULTIPLIER = 2  # at each reduction


@dataclasses.dataclass
class TunableNasNet(hyperparams.Config):
  """A searched NASNet, "N @ P" in the paper's notation: `num_cells` (N)
  normal cells per stack; `num_filters` of the first stack is P / 24 for
  NASNet-A (Mobile, 4 @ 1056: 44). `drop_path_rate` is ScheduledDropPath's
  final drop probability (of the last cell; earlier cells' scale with their
  depth), reached after `drop_path_steps` training steps (0: the trainer's
  train_steps)."""
  block_specs_json: str = ''
  num_cells: int = 4
  num_filters: int = 44
  stem_filters: int = 32
  num_stem_cells: int = 2
  drop_path_rate: float = 0.0
  drop_path_steps: int = 0


def parse_spec(block_specs_json: str) -> search_spaces.NasNetSpec:
  """The NasNetSpec a config carries; a clear error when it carries none."""
  return blocks.load_spec(block_specs_json, search_spaces.NasNetSpec,
                          'tunable_nasnet')


def scheduled_drop_rate(final_rate: Any, step: Any, total_steps: int) -> Any:
  """ScheduledDropPath's probability after `step` training steps: rising
  linearly from 0 to `final_rate` at `total_steps`, then held."""
  return final_rate * tf.minimum(1.0, tf.cast(step, tf.float32) / total_steps)


@tf_keras.utils.register_keras_serializable(package='nas_garden')
class ScheduledDropPath(tf_keras.layers.Layer):
  """Drops a path (zeroes it for a whole example, scaling the kept ones)
  while training, with the scheduled probability; an identity otherwise.

  The layer counts its own training calls (one per step; a checkpointed
  variable, so a resumed trial continues the schedule).
  """

  def __init__(self, drop_rate: float, total_steps: int, **kwargs):
    super().__init__(**kwargs)
    self._drop_rate, self._total_steps = drop_rate, max(1, total_steps)

  def build(self, input_shape):
    self.step = self.add_weight(
        'step', shape=[], dtype=tf.int64, initializer='zeros',
        trainable=False,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    super().build(input_shape)

  def drop_rate(self) -> tf.Tensor:
    """The probability the next training call drops a path with."""
    return scheduled_drop_rate(self._drop_rate, self.step, self._total_steps)

  def call(self, inputs, training=None):
    if not training:
      return inputs
    rate = tf.cast(self.drop_rate(), inputs.dtype)
    with tf.control_dependencies([self.step.assign_add(1)]):
      keep = 1.0 - rate
      batch = tf.shape(inputs)[0]
      mask = tf.floor(keep + tf.random.uniform([batch, 1, 1, 1],
                                               dtype=inputs.dtype))
      return inputs / keep * mask

  def get_config(self):
    return {**super().get_config(), 'drop_rate': self._drop_rate,
            'total_steps': self._total_steps}


class _CellBuilder:
  """Builds cells of one network: its norm, activation, regularizer and
  ScheduledDropPath setting."""

  def __init__(self, norm: Dict[str, Any], activation: str,
               kernel_regularizer: Any, drop_path_rate: float,
               drop_path_steps: int, num_cells_total: int):
    self._norm, self._activation = norm, activation
    self._regularizer = kernel_regularizer
    self._drop_path_rate, self._drop_path_steps = (drop_path_rate,
                                                   drop_path_steps)
    self._num_cells_total = num_cells_total

  def _act(self, x):
    return tf_keras.layers.Activation(
        tf_utils.get_activation(self._activation))(x)

  def _bn(self, x):
    return tf_keras.layers.BatchNormalization(
        momentum=self._norm['norm_momentum'],
        epsilon=self._norm['norm_epsilon'],
        synchronized=self._norm['use_sync_bn'])(x)

  def _conv(self, x, filters, kernel_size, strides=1, dilation_rate=1):
    return tf_keras.layers.Conv2D(
        filters, kernel_size, strides=strides, dilation_rate=dilation_rate,
        padding='same', use_bias=False, kernel_initializer='he_normal',
        kernel_regularizer=self._regularizer)(x)

  def _act_conv_bn(self, x, filters, kernel_size=1, strides=1):
    return self._bn(self._conv(self._act(x), filters, kernel_size, strides))

  def stem(self, images, filters):
    """The 3x3 stride-2 conv and BN before the first cell."""
    return self._bn(self._conv(images, filters, 3, 2))

  def _factorized_reduction(self, x, filters):
    """Halves the resolution without losing pixels: two 1x1 convs on the
    even and (shifted by one) odd pixels, concatenated."""
    x = self._act(x)
    even = tf_keras.layers.AveragePooling2D(1, 2, padding='valid')(x)
    odd = tf_keras.layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
    odd = tf_keras.layers.Cropping2D(((1, 0), (1, 0)))(odd)
    odd = tf_keras.layers.AveragePooling2D(1, 2, padding='valid')(odd)
    half = filters // 2
    x = tf_keras.layers.Concatenate()([self._conv(even, half, 1),
                                       self._conv(odd, filters - half, 1)])
    return self._bn(x)

  def _fit(self, x, filters):
    """`x` with `filters` channels (a ReLU-conv-BN projection if needed)."""
    return x if x.shape[-1] == filters else self._act_conv_bn(x, filters)

  def _separable(self, x, filters, kernel_size, strides):
    """The release's separable op: ReLU, separable conv, BN, twice; the
    first conv strides."""
    for step_strides in (strides, 1):
      x = self._act(x)
      x = tf_keras.layers.SeparableConv2D(
          filters, kernel_size, strides=step_strides, padding='same',
          use_bias=False, depthwise_regularizer=self._regularizer,
          pointwise_regularizer=self._regularizer)(x)
      x = self._bn(x)
    return x

  def _operation(self, x, op: str, filters: int, strides: int):
    """One of search_spaces.NASNET_OPS on hidden state `x`: `filters`
    channels out, at `strides`."""
    kind, _, size = op.rpartition('_')
    if op == 'identity':
      if strides > 1:
        return self._factorized_reduction(x, filters)
      return self._fit(x, filters)
    if kind.endswith('pool'):
      k = int(size.split('x')[0])
      pool = (tf_keras.layers.AveragePooling2D if kind == 'avg_pool' else
              tf_keras.layers.MaxPooling2D)
      return self._fit(pool(k, strides, padding='same')(x), filters)
    if kind == 'sep_conv':
      return self._separable(x, filters, int(size.split('x')[0]), strides)
    x = self._act(x)
    if op in ('conv_1x3_3x1', 'conv_1x7_7x1'):
      k = int(size.split('x')[1])
      x = self._conv(x, filters, (1, k), (1, strides))
      x = self._conv(x, filters, (k, 1), (strides, 1))
    elif op == 'dilated_conv_3x3':
      # Keras convolves no dilation and stride together: a stride-2 dilated
      # conv keeps every other pixel of the stride-1 one.
      x = self._conv(x, filters, 3, dilation_rate=2)
      if strides > 1:
        x = tf_keras.layers.AveragePooling2D(1, strides, padding='same')(x)
    else:  # conv_1x1, conv_3x3
      k = int(size.split('x')[0])
      x = self._conv(x, filters, k, strides)
    return self._bn(x)

  def _adjust(self, previous, previous_finer: bool, inputs, filters):
    """The cell before last, at the resolution (`previous_finer`: it has
    twice this cell's) and width of this cell's input; before the first
    cell, the input itself."""
    if previous is None:
      return inputs
    if previous_finer:
      return self._factorized_reduction(previous, filters)
    return self._fit(previous, filters)

  def cell(self, inputs, previous, previous_finer: bool,
           cell: search_spaces.NasNetCellSpec, filters: int, reduction: bool,
           index: int):
    """Cell number `index` (from 0) on the last two cells' outputs."""
    states: List[Any] = [self._act_conv_bn(inputs, filters),
                         self._adjust(previous, previous_finer, inputs,
                                      filters)]
    drop_rate = (self._drop_path_rate * (index + 1) / self._num_cells_total)

    def finer(state: int) -> bool:  # At twice the cell's output resolution?
      return reduction and state < search_spaces.NASNET_NUM_CELL_INPUTS

    for block in cell.blocks:
      outputs = []
      for state, op in ((block.left_input, block.left_op),
                        (block.right_input, block.right_op)):
        y = self._operation(states[state], op, filters, 2 if finer(state) else 1)
        if op != 'identity' and drop_rate > 0:
          y = ScheduledDropPath(drop_rate, self._drop_path_steps)(y)
        outputs.append(y)
      states.append(tf_keras.layers.Add()(outputs)
                    if block.combination == 'add' else
                    tf_keras.layers.Concatenate()(outputs))
    concatenated = []
    for state in cell.concatenated_states():
      x = states[state]
      if finer(state):
        x = self._factorized_reduction(x, filters)
      concatenated.append(x)
    if len(concatenated) == 1:
      return concatenated[0]
    return tf_keras.layers.Concatenate()(concatenated)


@tf_keras.utils.register_keras_serializable(package='nas_garden')
class NasNet(blocks.LevelBackbone):
  """NASNet from a spec (see the module docstring)."""

  def __init__(self,
               block_specs_json: str,
               input_specs: tf_keras.layers.InputSpec = tf_keras.layers.InputSpec(
                   shape=[None, None, None, 3]),
               num_cells: int = 4,
               num_filters: int = 44,
               stem_filters: int = 32,
               num_stem_cells: int = 2,
               drop_path_rate: float = 0.0,
               drop_path_steps: int = 1,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.9997,
               norm_epsilon: float = 0.001,
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    config = blocks.constructor_arguments(locals())
    spec = parse_spec(block_specs_json)
    norm = dict(use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
                norm_epsilon=norm_epsilon)
    # (reduction?, filters) of each cell in order.
    cells = [(True, num_filters // FILTER_MULTIPLIER ** (num_stem_cells - i))
             for i in range(num_stem_cells)]
    for stack in range(NUM_STACKS):
      filters = num_filters * FILTER_MULTIPLIER ** stack
      if stack:
        cells.append((True, filters))
      cells += [(False, filters)] * num_cells
    builder = _CellBuilder(norm, activation, kernel_regularizer,
                           drop_path_rate, drop_path_steps, len(cells))

    def endpoint(x):
      return tf_keras.layers.Activation(tf_utils.get_activation(activation))(x)

    inputs = tf_keras.Input(shape=input_specs.shape[1:])
    x = builder.stem(inputs, stem_filters)
    level, previous, endpoints = 1, None, {}
    previous_finer = False  # The cell before last, at twice the resolution?
    for index, (reduction, filters) in enumerate(cells):
      if reduction:
        endpoints[str(level)] = endpoint(x)
        level += 1
      cell = spec.reduction_cell if reduction else spec.normal_cell
      x, previous = builder.cell(x, previous, previous_finer, cell, filters,
                                 reduction, index), x
      previous_finer = reduction
    endpoints[str(level)] = endpoint(x)
    self._finish(config, inputs, endpoints, **kwargs)


@factory.register_backbone_builder('tunable_nasnet')
def build_tunable_nasnet(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> tf_keras.Model:
  """Model Garden backbone builder for `backbone.type: tunable_nasnet`."""
  backbone_cfg = backbone_config.get()
  return NasNet(
      block_specs_json=backbone_cfg.block_specs_json,
      input_specs=input_specs,
      num_cells=backbone_cfg.num_cells,
      num_filters=backbone_cfg.num_filters,
      stem_filters=backbone_cfg.stem_filters,
      num_stem_cells=backbone_cfg.num_stem_cells,
      drop_path_rate=backbone_cfg.drop_path_rate,
      drop_path_steps=backbone_cfg.drop_path_steps,
      **blocks.norm_activation_kwargs(norm_activation_config),
      kernel_regularizer=l2_regularizer)


@registry.register(search_spaces.NasNetSpec,
                   default_experiment='nas_image_classification',
                   config_space='nasnet')
def apply_nasnet(params: cfg.ExperimentConfig,
                 spec: search_spaces.NasNetSpec) -> None:
  """Writes a NASNet as the config's backbone; ScheduledDropPath's schedule
  spans the trainer's steps unless the config sets its own."""
  backbone = params.task.model.backbone
  blocks.write_spec(backbone, 'tunable_nasnet', spec)
  if not backbone.tunable_nasnet.drop_path_steps:
    backbone.tunable_nasnet.drop_path_steps = params.trainer.train_steps
