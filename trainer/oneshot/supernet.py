"""A weight-sharing supernet of the `mnasnet` and `efficientnet_v2` spaces.

One network holds every architecture of the space (TuNAS, Bender et al.
2020): each block position keeps its widest weights, and a path (the DNA's
numbers, a tensor, so one traced graph serves every path) selects

  kernel sizes   by zeroing the largest kernel outside the centred k x k;
  widths         (output filters, expansion ratios, squeeze-excite's reduced
                 width) by zeroing the channels past the chosen width after
                 each batch norm and activation;
  repeats        by skipping the blocks past the chosen count;
  SE on/off      by skipping the squeeze-excite;
  block types    (conv | MBConv | fused MBConv) as parallel branches with
                 weights of their own: they share no shapes.

Zeroed channels are exact zeros, so a path computes what the stand-alone
Model Garden model of that architecture computes with the shared weights
sliced into it (`copy_into`), in training (batch statistics are per channel)
and in inference.
"""

from typing import Any, Dict, List, NamedTuple, Sequence

import numpy as np
import pyglove as pg
import tensorflow as tf
import tf_keras

from official.vision.modeling.backbones import mobilenet
from official.vision.modeling.layers import nn_layers
import search_spaces
from trainer import compound_scaling

# The spaces a supernet covers, and the field naming each's block type.
BRANCH_FIELDS = {'mnasnet': 'block_fn', 'efficientnet_v2': 'block_type'}


class Group(NamedTuple):
  """One block group of the space: where its decisions sit in the DNA's
  numbers, their candidates, its stride and repeats at most."""
  index: Dict[str, int]
  values: Dict[str, List[Any]]
  strides: int


def space_groups(space_name: str) -> List[Group]:
  """The block groups of `space_name`, read from its DNA spec."""
  if space_name not in BRANCH_FIELDS:
    raise ValueError(f'one-shot search covers {", ".join(BRANCH_FIELDS)}, '
                     f'not {space_name}')
  space = search_spaces.get_search_space(space_name)
  positions = {str(p.location): i
               for i, p in enumerate(pg.dna_spec(space).decision_points)}
  groups = []
  for g, block in enumerate(space.blocks):
    index, values = {}, {}
    for field in block.sym_init_args.keys():
      hyper = block.sym_getattr(field)
      if isinstance(hyper, pg.hyper.OneOf):
        index[field] = positions[f'blocks[{g}].{field}']
        values[field] = list(hyper.candidates)
    groups.append(Group(index, values, block.strides))
  return groups


def mask(width: tf.Tensor, channels: int, dtype: tf.DType) -> tf.Tensor:
  """1 for the first `width` of `channels` channels, 0 past them."""
  return tf.cast(tf.range(channels) < width, dtype)


def kernel_masks(sizes: Sequence[int], largest: int) -> tf.Tensor:
  """[len(sizes), largest, largest]: ones on each size's centred window."""
  masks = np.zeros([len(sizes), largest, largest], np.float32)
  for i, k in enumerate(sizes):
    start = (largest - k) // 2
    masks[i, start:start + k, start:start + k] = 1
  return tf.constant(masks)


def se_width(in_width: Any, se_ratio: float) -> Any:
  """Squeeze-excite's reduced width in Model Garden's blocks (divisor 1)."""
  return tf.maximum(1, tf.cast(tf.cast(in_width, tf.float32) * se_ratio,
                               tf.int32)) if tf.is_tensor(in_width) else (
                                   max(1, int(in_width * se_ratio)))


class Path(NamedTuple):
  """What one block position computes on a path (scalar tensors)."""
  active: tf.Tensor      # bool: the group repeats this block
  branch: tf.Tensor      # index into the block's branches
  in_width: tf.Tensor
  out_width: tf.Tensor
  expand_width: tf.Tensor
  expands: tf.Tensor     # bool: an MBConv has its 1x1 expansion conv
  kernel_mask: tf.Tensor  # [k_max, k_max]
  se: tf.Tensor          # bool
  activation: tf.Tensor  # index into the block's activations


class SuperBlock(tf_keras.layers.Layer):
  """One block position at its widest, every branch's weights."""

  def __init__(self, branches: Sequence[str], activations: Sequence[str],
               in_max: int, out_max: int, expand_max: int, se_max: int,
               se_ratio: float, kernel_max: int, strides: int,
               norm_momentum: float, norm_epsilon: float, **kwargs):
    super().__init__(**kwargs)
    self.branches, self.activations = list(branches), list(activations)
    self.se_ratio = se_ratio
    self.in_max, self.out_max, self.expand_max = in_max, out_max, expand_max
    self.se_max, self.kernel_max, self.strides = se_max, kernel_max, strides
    self._norm = dict(momentum=norm_momentum, epsilon=norm_epsilon)

  def _kernel(self, name, shape):
    return self.add_weight(name, shape, initializer='VarianceScaling')

  def _bn(self, name, width):
    bn = tf_keras.layers.BatchNormalization(name=name, **self._norm)
    bn.build([None, None, None, width])
    return bn

  def build(self, input_shape):
    k, e = self.kernel_max, self.expand_max
    if 'conv' in self.branches:
      self.conv_kernel = self._kernel('conv', [k, k, self.in_max, self.out_max])
      self.conv_bn = self._bn('conv_bn', self.out_max)
    self.ibn = {}
    for branch in self.branches:
      if branch == 'conv':
        continue
      weights = {}
      if branch == 'mbconv':
        weights['expand'] = self._kernel(f'{branch}_expand',
                                         [1, 1, self.in_max, e])
        weights['depthwise'] = self._kernel(f'{branch}_depthwise', [k, k, e, 1])
        weights['depthwise_bn'] = self._bn(f'{branch}_depthwise_bn', e)
      else:  # fused_mbconv: the k x k conv expands.
        weights['expand'] = self._kernel(f'{branch}_expand',
                                         [k, k, self.in_max, e])
      weights['expand_bn'] = self._bn(f'{branch}_expand_bn', e)
      if self.se_max:
        weights['se_reduce'] = self._kernel(f'{branch}_se_reduce',
                                            [1, 1, e, self.se_max])
        weights['se_reduce_bias'] = self.add_weight(
            f'{branch}_se_reduce_bias', [self.se_max], initializer='zeros')
        weights['se_expand'] = self._kernel(f'{branch}_se_expand',
                                            [1, 1, self.se_max, e])
        weights['se_expand_bias'] = self.add_weight(
            f'{branch}_se_expand_bias', [e], initializer='zeros')
      weights['project'] = self._kernel(f'{branch}_project',
                                        [1, 1, e, self.out_max])
      weights['project_bn'] = self._bn(f'{branch}_project_bn', self.out_max)
      self.ibn[branch] = weights
    super().build(input_shape)

  def _activate(self, x, path: Path):
    if len(self.activations) == 1:
      return tf_keras.activations.get(self.activations[0])(x)
    # Every candidate, then the chosen one: a switch_case here would nest in
    # call()'s, whose gradient TensorFlow 2.20 cannot build (cond_v2's
    # _resolve_grad_inputs assertion).
    return tf.gather(tf.stack([tf_keras.activations.get(a)(x)
                               for a in self.activations]), path.activation)

  def _conv(self, x, path: Path, training):
    kernel = self.conv_kernel * path.kernel_mask[:, :, None, None]
    y = tf.nn.conv2d(x, kernel, self.strides, 'SAME')
    y = self._activate(self.conv_bn(y, training=training), path)
    return y * mask(path.out_width, self.out_max, self.compute_dtype)

  def _inverted_bottleneck(self, branch, x, path: Path, training):
    weights = self.ibn[branch]
    expand_mask = mask(path.expand_width, self.expand_max,
                       self.compute_dtype)

    def expand(kernel, strides):
      h = tf.nn.conv2d(x, kernel, strides, 'SAME')
      return self._activate(weights['expand_bn'](h, training=training),
                            path) * expand_mask

    if branch == 'mbconv':
      h = tf.cond(path.expands, lambda: expand(weights['expand'], 1),
                  lambda: tf.pad(x, [[0, 0]] * 3 +
                                 [[0, self.expand_max - self.in_max]]))
      depthwise = weights['depthwise'] * path.kernel_mask[:, :, None, None]
      h = tf.nn.depthwise_conv2d(h, depthwise, [1, self.strides,
                                                self.strides, 1], 'SAME')
      h = self._activate(weights['depthwise_bn'](h, training=training),
                         path) * expand_mask
    else:
      h = expand(weights['expand'] * path.kernel_mask[:, :, None, None],
                 self.strides)
    if self.se_max:
      h = tf.cond(path.se, lambda: self._squeeze_excite(weights, h, path),
                  lambda: h)
    y = tf.nn.conv2d(h, weights['project'], 1, 'SAME')
    y = weights['project_bn'](y, training=training)
    y *= mask(path.out_width, self.out_max, self.compute_dtype)
    if self.strides == 1:  # Model Garden's residual: equal widths, stride 1.
      shortcut = x[..., :self.out_max] if self.in_max >= self.out_max else (
          tf.pad(x, [[0, 0]] * 3 + [[0, self.out_max - self.in_max]]))
      y += shortcut * tf.cast(path.in_width == path.out_width, y.dtype)
    return y

  def _squeeze_excite(self, weights, h, path: Path):
    s = tf.reduce_mean(h, [1, 2], keepdims=True)
    s = tf.nn.relu(tf.nn.conv2d(s, weights['se_reduce'], 1, 'SAME') +
                   weights['se_reduce_bias'])
    s *= mask(se_width(path.in_width, self.se_ratio), self.se_max,
              self.compute_dtype)
    s = tf.sigmoid(tf.nn.conv2d(s, weights['se_expand'], 1, 'SAME') +
                   weights['se_expand_bias'])
    return h * s

  def call(self, x, path: Path, training=None):
    def run():
      branches = [
          (lambda b=b: self._conv(x, path, training)) if b == 'conv' else
          (lambda b=b: self._inverted_bottleneck(b, x, path, training))
          for b in self.branches]
      return tf.switch_case(path.branch, branches)

    if self.strides > 1 or self.in_max != self.out_max:
      return run()  # The first block of a group always runs.
    return tf.cond(path.active, run, lambda: x)


class Supernet(tf_keras.Model):
  """Stem, super blocks, head conv, pooling and classifier, at the widest
  widths of the space; `call(images, dna_numbers)` runs one path.

  The sizes are those of the stand-alone backbone (`filter_size_scale`,
  `depth_multiplier`, `endpoints_num_filters`, the stem's width) and of
  Model Garden's classification model.
  """

  def __init__(self, space_name: str, num_classes: int,
               filter_size_scale: float, depth_multiplier: float,
               endpoints_num_filters: int, stem_filters: int,
               activation: str, norm_momentum: float, norm_epsilon: float,
               dropout_rate: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.space_name = space_name
    self.groups = space_groups(space_name)
    self.branch_field = BRANCH_FIELDS[space_name]
    self.filter_size_scale = filter_size_scale
    self.stem_width = self.scaled(stem_filters)
    self.stem = mobilenet.Conv2DBNBlock(
        filters=self.stem_width, kernel_size=3, strides=2,
        activation=activation, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon)
    self.blocks: List[List[SuperBlock]] = []
    in_max = self.stem_width
    for g, group in enumerate(self.groups):
      out_max = max(self.widths(g))
      repeats = max(compound_scaling.round_repeats(r, depth_multiplier)
                    for r in group.values['num_repeats'])
      se_ratio = max(group.values['se_ratio'])
      activations = group.values.get('act_fn', [activation])
      row = []
      for r in range(repeats):
        block_in = in_max if r == 0 else out_max
        block = SuperBlock(
            group.values[self.branch_field], activations, block_in, out_max,
            block_in * max(group.values['expand_ratio']),
            se_width(block_in, se_ratio) if se_ratio else 0, se_ratio,
            max(group.values['kernel_size']),
            group.strides if r == 0 else 1, norm_momentum, norm_epsilon,
            name=f'group{g}_block{r}')
        row.append(block)
      self.blocks.append(row)
      in_max = out_max
    self.depth_multiplier = depth_multiplier
    self.head = tf_keras.layers.Conv2D(endpoints_num_filters, 1,
                                       use_bias=False, name='head')
    self.head_bn = tf_keras.layers.BatchNormalization(
        momentum=norm_momentum, epsilon=norm_epsilon, name='head_bn')
    self.head_activation = tf_keras.activations.get(activation)
    self.dropout = tf_keras.layers.Dropout(dropout_rate)
    self.classifier = tf_keras.layers.Dense(num_classes, name='classifier')
    self._kernel_masks = [tf.cast(kernel_masks(g.values['kernel_size'],
                                               max(g.values['kernel_size'])),
                                  self.compute_dtype)
                          for g in self.groups]

  def scaled(self, filters: int) -> int:
    return nn_layers.round_filters(filters, self.filter_size_scale)

  def widths(self, g: int) -> List[int]:
    """Group g's output widths, in the order of its candidates."""
    return [self.scaled(f) for f in self.groups[g].values['output_filters']]

  def paths(self, numbers: tf.Tensor) -> List[List[Path]]:
    """Each block position's Path for the DNA's `numbers` ([decisions])."""
    numbers = tf.convert_to_tensor(numbers, tf.int32)
    rows, in_width = [], tf.constant(self.stem_width)

    def pick(group, field, values=None):
      values = group.values[field] if values is None else values
      return tf.gather(tf.constant(values), numbers[group.index[field]])

    for g, group in enumerate(self.groups):
      out_width = pick(group, 'output_filters', self.widths(g))
      repeats = pick(group, 'num_repeats', [
          compound_scaling.round_repeats(r, self.depth_multiplier)
          for r in group.values['num_repeats']])
      ratio = pick(group, 'expand_ratio')
      common = dict(
          branch=numbers[group.index[self.branch_field]],
          out_width=out_width,
          expands=ratio > 1,
          kernel_mask=tf.gather(self._kernel_masks[g],
                                numbers[group.index['kernel_size']]),
          se=pick(group, 'se_ratio') > 0,
          activation=(numbers[group.index['act_fn']] if 'act_fn' in group.index
                      else tf.constant(0)))
      row = []
      for r in range(len(self.blocks[g])):
        block_in = in_width if r == 0 else out_width
        row.append(Path(active=r < repeats, in_width=block_in,
                        expand_width=block_in * ratio, **common))
      rows.append(row)
      in_width = out_width
    return rows

  def call(self, images, numbers, training=None):
    x = self.stem(images, training=training)
    for row, paths in zip(self.blocks, self.paths(numbers)):
      for block, path in zip(row, paths):
        x = block(x, path, training=training)
    x = self.head_activation(self.head_bn(self.head(x), training=training))
    x = tf.reduce_mean(x, [1, 2])
    return self.classifier(self.dropout(x, training=training))

  def build_all(self, input_size: Sequence[int]) -> None:
    """Creates every variable (one call of the first path)."""
    self(tf.zeros([1, *input_size]), tf.zeros(
        [len(pg.dna_spec(search_spaces.get_search_space(
            self.space_name)).decision_points)], tf.int32), training=False)


def multiply_adds(net: Supernet, numbers: Sequence[int],
                  input_size: Sequence[int]) -> float:
  """Multiply-adds (billions) of the convolutions and the classifier of the
  architecture with DNA `numbers` at `net`'s sizes, one `input_size` image:
  the cost a one-shot reward needs at every step, counted from the
  decisions alone (materialising the architecture costs more than a step).
  """
  side = lambda s, strides: -(-s // strides)  # 'SAME' padding.
  h, w = side(input_size[0], 2), side(input_size[1], 2)
  total = h * w * 9 * input_size[2] * net.stem_width
  in_width = net.stem_width
  for g, group in enumerate(net.groups):
    chosen = {field: group.values[field][numbers[i]]
              for field, i in group.index.items()}
    out_width = net.widths(g)[numbers[group.index['output_filters']]]
    k, ratio, se_ratio = (chosen['kernel_size'], chosen['expand_ratio'],
                          chosen['se_ratio'])
    branch = chosen[net.branch_field]
    for r in range(compound_scaling.round_repeats(chosen['num_repeats'],
                                                  net.depth_multiplier)):
      width = in_width if r == 0 else out_width
      strides = group.strides if r == 0 else 1
      out_h, out_w = side(h, strides), side(w, strides)
      expanded = width * ratio
      if branch == 'conv':
        total += out_h * out_w * k * k * width * out_width
      else:
        if branch == 'fused_mbconv':
          total += out_h * out_w * k * k * width * expanded
        else:
          if ratio > 1:
            total += h * w * width * expanded
          total += out_h * out_w * k * k * expanded
        if se_ratio:
          total += 2 * expanded * se_width(width, se_ratio)
        total += out_h * out_w * expanded * out_width
      h, w = out_h, out_w
    in_width = out_width
  total += h * w * in_width * net.head.filters
  total += net.head.filters * net.classifier.units
  return total / 1e9


def from_config(space_name: str, model_config: Any) -> Supernet:
  """The supernet of the space at the sizes of a classification config's
  model (`task.model`, its tunable backbone and norm_activation)."""
  backbone = model_config.backbone.get()
  norm = model_config.norm_activation
  net = Supernet(
      space_name, model_config.num_classes, backbone.filter_size_scale,
      backbone.depth_multiplier, backbone.endpoints_num_filters,
      getattr(backbone, 'stem_filters', 32), norm.activation,
      norm.norm_momentum, norm.norm_epsilon, model_config.dropout_rate)
  net.build_all(model_config.input_size)
  return net


def _bn_weights(bn, width: int) -> List[np.ndarray]:
  return [w.numpy()[:width] for w in (bn.gamma, bn.beta, bn.moving_mean,
                                      bn.moving_variance)]


def _crop(kernel: np.ndarray, k: int) -> np.ndarray:
  start = (kernel.shape[0] - k) // 2
  return kernel[start:start + k, start:start + k]


def copy_into(model: tf_keras.Model, supernet: Supernet, spec: Any) -> None:
  """Copies the shared weights of architecture `spec`'s path into `model`,
  Model Garden's classification model of `spec` at the supernet's sizes.

  Model Garden's blocks keep their convolutions and norms as private
  attributes (`_conv0`, `_norm0`, ...): those are what is set.
  """
  backbone = model.backbone
  layers = [l for l in backbone.layers
            if not isinstance(l, tf_keras.layers.InputLayer)]
  stem, *blocks, head = layers
  stem.set_weights(supernet.stem.get_weights())
  in_width = supernet.stem_width
  position = iter(blocks)
  for g, block_spec in enumerate(spec.blocks):
    out_width = supernet.scaled(block_spec.output_filters)
    repeats = compound_scaling.round_repeats(block_spec.num_repeats,
                                             supernet.depth_multiplier)
    for r in range(repeats):
      width_in = in_width if r == 0 else out_width
      _copy_block(next(position), supernet.blocks[g][r], block_spec,
                  getattr(block_spec, supernet.branch_field), width_in,
                  out_width)
    in_width = out_width
  head._conv0.set_weights([supernet.head.kernel.numpy()[:, :, :in_width]])  # pylint: disable=protected-access
  head._norm0.set_weights(_bn_weights(supernet.head_bn, supernet.head.filters))  # pylint: disable=protected-access
  dense = [l for l in model.layers if isinstance(l, tf_keras.layers.Dense)][-1]
  dense.set_weights(supernet.classifier.get_weights())


def _copy_block(layer, block: SuperBlock, block_spec: Any, branch: str,
                in_width: int, out_width: int) -> None:
  # pylint: disable=protected-access  (Model Garden's blocks' sublayers)
  k = block_spec.kernel_size
  if branch == 'conv':
    layer._conv0.set_weights([_crop(block.conv_kernel.numpy(), k)[
        :, :, :in_width, :out_width]])
    layer._norm0.set_weights(_bn_weights(block.conv_bn, out_width))
    return
  weights = block.ibn[branch]
  expand_width = in_width * block_spec.expand_ratio
  if branch == 'mbconv':
    if block_spec.expand_ratio > 1:
      layer._conv0.set_weights([weights['expand'].numpy()[
          :, :, :in_width, :expand_width]])
      layer._norm0.set_weights(_bn_weights(weights['expand_bn'], expand_width))
    layer._conv1.set_weights([_crop(weights['depthwise'].numpy(), k)[
        :, :, :expand_width]])
    layer._norm1.set_weights(_bn_weights(weights['depthwise_bn'],
                                         expand_width))
  else:
    layer._conv0.set_weights([_crop(weights['expand'].numpy(), k)[
        :, :, :in_width, :expand_width]])
    layer._norm0.set_weights(_bn_weights(weights['expand_bn'], expand_width))
  if block_spec.se_ratio:
    se_reduced = se_width(in_width, block_spec.se_ratio)
    se = layer._squeeze_excitation
    se._se_reduce.set_weights([
        weights['se_reduce'].numpy()[:, :, :expand_width, :se_reduced],
        weights['se_reduce_bias'].numpy()[:se_reduced]])
    se._se_expand.set_weights([
        weights['se_expand'].numpy()[:, :, :se_reduced, :expand_width],
        weights['se_expand_bias'].numpy()[:expand_width]])
  layer._conv2.set_weights([weights['project'].numpy()[
      :, :, :expand_width, :out_width]])
  layer._norm2.set_weights(_bn_weights(weights['project_bn'], out_width))
