"""Searched architectures built as Model Garden components, on tiny inputs.

Reference networks must equal Model Garden's stock ones; every Vertex sample
of each space must build and give one feature map per level at
input / 2**level.
"""

import dataclasses
import functools
import inspect
import json
import pathlib
import random
import re

import numpy as np
import pyglove as pg
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.vision.configs import backbones
from official.vision.configs import decoders
from official.vision.configs import retinanet  # pylint: disable=unused-import  (registers 'retinanet')
from official.vision.configs import semantic_segmentation  # pylint: disable=unused-import  (registers 'seg_deeplabv3_pascal')
from official.vision.modeling import factory as model_factory
from official.vision.modeling.backbones import factory as backbone_factory
from official.vision.modeling.backbones import spinenet as mg_spinenet
from official.vision.modeling.backbones import spinenet_mobile as mg_spinenet_mobile
from official.vision.modeling.decoders import factory as decoder_factory
from official.vision.modeling.decoders import nasfpn as mg_nasfpn
import search_spaces
from trainer.training import architectures
from trainer.training.architectures import mnasnet as mnasnet_arch
from trainer.training.architectures import efficientnet_v2
from trainer.training.architectures import nasfpn
from trainer.training.architectures import regnet
from trainer.training.architectures import registry
from trainer.training.architectures import spinenet

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'vertex_nas_params'
LITERAL = re.compile(r'\d+/\d+ \((.*)\)\Z')


@dataclasses.dataclass
class Backbone(backbones.Backbone):
  """Model Garden's backbones plus the tunable ones (as trainer.training.experiments)."""
  tunable_mnasnet: mnasnet_arch.TunableMnasNet = dataclasses.field(
      default_factory=mnasnet_arch.TunableMnasNet)
  tunable_spinenet: spinenet.TunableSpineNet = dataclasses.field(
      default_factory=spinenet.TunableSpineNet)
  tunable_spinenet_mbconv: spinenet.TunableSpineNetMbconv = dataclasses.field(
      default_factory=spinenet.TunableSpineNetMbconv)
  tunable_efficientnet_v2: efficientnet_v2.TunableEfficientNetV2 = (
      dataclasses.field(default_factory=efficientnet_v2.TunableEfficientNetV2))


@dataclasses.dataclass
class Decoder(decoders.Decoder):
  """Model Garden's decoders plus the tunable NAS-FPN."""
  tunable_nasfpn: nasfpn.TunableNasFpn = dataclasses.field(
      default_factory=nasfpn.TunableNasFpn)


def _experiment(name='retinanet'):
  """A stock Model Garden experiment whose OneOfs know the tunable types."""
  params = exp_factory.get_exp_config(name)
  model = params.task.model
  backbone, decoder = Backbone(), Decoder()
  backbone.override(model.backbone.as_dict())
  decoder.override(model.decoder.as_dict())
  model.backbone, model.decoder = backbone, decoder
  return params


def _samples(name):
  return json.loads(
      (FIXTURES / f'{name}.json').read_text())['nas_params_str_samples']


@functools.lru_cache(maxsize=None)
def _dna_spec(name):
  return search_spaces.dna_spec(search_spaces.get_search_space(name))


def _materialise(name, index):
  dna = search_spaces.dna_from_nas_params(_dna_spec(name),
                                          _samples(name)[index])
  return search_spaces.materialize(search_spaces.get_search_space(name), dna)


def _build_backbone(model, size):
  return backbone_factory.build_backbone(
      input_specs=tf_keras.layers.InputSpec(shape=[None, size, size, 3]),
      backbone_config=model.backbone,
      norm_activation_config=model.norm_activation)


def _images(size):
  return tf.random.stateless_uniform([1, size, size, 3], seed=[1, 2])


def _assert_pyramid(features, size, levels, channels=None):
  assert sorted(features, key=int) == [str(l) for l in levels]
  for level, feature in features.items():
    stride = 2**int(level)
    assert feature.shape[1:3] == (size // stride, size // stride), level
    if channels:
      assert feature.shape[-1] == channels, level


def _assert_same_network(ours, stock, inputs):
  """Same parameter count and, with stock's weights, the same outputs."""
  assert ours.count_params() == stock.count_params()
  ours.set_weights(stock.get_weights())
  ours_out, stock_out = ours(inputs), stock(inputs)
  assert sorted(ours_out) == sorted(stock_out)
  for level in stock_out:
    # float32 rounding relative to the activations' size: oneDNN may sum in
    # another order between two builds of one graph (seen: 4e-5 at |x| ~ 10).
    scale = float(np.max(np.abs(stock_out[level]))) or 1.0
    np.testing.assert_allclose(ours_out[level], stock_out[level],
                               atol=1e-5 * scale)


def _as_tuples(block_specs, field='block_fn'):
  return [(b.level, getattr(b, field), tuple(b.input_offsets), b.is_output)
          for b in block_specs]


def test_spinenet49_reference_spec_is_model_gardens_table():
  block_specs = spinenet.spec_to_block_specs(
      search_spaces.spinenet49_reference_spec())
  assert _as_tuples(block_specs) == mg_spinenet.SPINENET_BLOCK_SPECS


def test_spinenet49_through_tunable_builder_equals_model_garden():
  params = _experiment()
  params.task.model.backbone.type = 'tunable_spinenet'
  params.task.model.backbone.tunable_spinenet.block_specs_json = (
      pg.to_json_str(search_spaces.spinenet49_reference_spec()))
  ours = _build_backbone(params.task.model, 128)
  stock = mg_spinenet.SpineNet(
      input_specs=tf_keras.layers.InputSpec(shape=[None, 128, 128, 3]),
      **mg_spinenet.SCALING_MAP['49'])
  print(f'SpineNet-49 parameters: ours {ours.count_params()}, '
        f'Model Garden {stock.count_params()}')
  assert ours.count_params() == stock.count_params()
  # Same layers in the same order (a forward pass at this width is too slow).
  assert [w.shape for w in ours.weights] == [w.shape for w in stock.weights]


def test_mbconv_config_defaults_are_model_gardens_mobile_spinenet49():
  ours = spinenet.TunableSpineNetMbconv()
  stock = backbones.SpineNetMobile()
  scaling = mg_spinenet_mobile.SCALING_MAP['49']
  assert (ours.endpoints_num_filters, ours.filter_size_scale,
          ours.block_repeats) == (scaling['endpoints_num_filters'],
                                  scaling['filter_size_scale'],
                                  scaling['block_repeats'])
  assert (ours.se_ratio, ours.expand_ratio) == (stock.se_ratio,
                                                stock.expand_ratio)


def _tiny_nasfpn_model(spec):
  """A RetinaNet model config: a quarter-width ResNet-18 and a 16-filter cell."""
  params = _experiment()
  model = params.task.model
  model.backbone.resnet.model_id = 18
  model.backbone.resnet.depth_multiplier = 0.25
  nasfpn.apply_nasfpn(params, spec)
  model.decoder.tunable_nasfpn.num_filters = 16
  model.decoder.tunable_nasfpn.num_repeats = 1
  return model


@functools.lru_cache(maxsize=None)
def _stock_backbone_and_features():
  """The ResNet-18 of `_tiny_nasfpn_model` and its features of a 128 px image."""
  backbone = _build_backbone(_tiny_nasfpn_model(
      search_spaces.nasfpn_reference_spec()), 128)
  return backbone, backbone(_images(128))


def test_nasfpn_reference_spec_is_in_the_space_and_equals_model_garden():
  spec = search_spaces.nasfpn_reference_spec()
  pg.template(search_spaces.nasfpn_search_space()).encode(spec)
  assert _as_tuples(nasfpn.spec_to_block_specs(spec), 'combine_fn') == (
      mg_nasfpn.NASFPN_BLOCK_SPECS)
  model = _tiny_nasfpn_model(spec)
  backbone, features = _stock_backbone_and_features()
  ours = decoder_factory.build_decoder(backbone.output_specs, model)
  stock = mg_nasfpn.NASFPN(backbone.output_specs, num_filters=16,
                           num_repeats=1)
  _assert_same_network(ours, stock, features)


# Space -> (how its spec enters a config, tiny knobs, input size, levels).
# Knobs only narrow the networks (no SE in mobile SpineNet: it is the slowest
# to build); the topology is the sample's.
BACKBONE_CASES = {
    'spinenet': (spinenet.apply_spinenet,
                 dict(filter_size_scale=0.25, endpoints_num_filters=16),
                 128, range(3, 8)),
    'spinenet_v2': (spinenet.apply_spinenet,
                    dict(filter_size_scale=0.25, endpoints_num_filters=16),
                    128, range(3, 8)),
    'spinenet_mbconv': (spinenet.apply_spinenet_mbconv,
                        dict(filter_size_scale=0.25, endpoints_num_filters=16,
                             se_ratio=0.0),
                        128, range(3, 8)),
    'efficientnet_v2': (efficientnet_v2.apply_efficientnet_v2,
                        dict(filter_size_scale=0.25, endpoints_num_filters=0),
                        64, range(1, 6)),
    'mnasnet': (architectures.apply_architecture,
                dict(filter_size_scale=0.25, endpoints_num_filters=0),
                64, range(1, 6)),
}


@pytest.mark.parametrize('name,index', [
    (name, index) for name in BACKBONE_CASES for index in range(3)])
def test_vertex_sample_builds_backbone_with_one_feature_map_per_level(
    name, index):
  apply, knobs, size, levels = BACKBONE_CASES[name]
  spec = _materialise(name, index)
  params = _experiment()
  apply(params, spec)
  model = params.task.model
  assert pg.eq(pg.from_json_str(model.backbone.get().block_specs_json), spec)
  if name.startswith('spinenet'):
    assert model.decoder.type == 'identity'
  model.backbone.get().override(knobs)
  backbone = _build_backbone(model, size)
  _assert_pyramid(backbone(_images(size)), size, levels,
                  knobs['endpoints_num_filters'])


@pytest.mark.parametrize('index', range(3))
def test_vertex_sample_builds_nasfpn_on_a_stock_backbone(index):
  spec = _materialise('nasfpn', index)
  model = _tiny_nasfpn_model(spec)
  assert (model.backbone.type, model.decoder.type) == ('resnet',
                                                       'tunable_nasfpn')
  backbone, features = _stock_backbone_and_features()
  decoder = decoder_factory.build_decoder(backbone.output_specs, model)
  _assert_pyramid(decoder(features), 128, range(3, 8), 16)


def test_fused_mbconv_without_expansion_keeps_its_strided_conv():
  spec = search_spaces.EfficientNetV2Spec(blocks=[
      search_spaces.EfficientNetV2BlockSpec(
          num_repeats=1, block_type='fused_mbconv', expand_ratio=1,
          kernel_size=5, se_ratio=0.25, output_filters=16, act_fn='relu',
          strides=strides) for strides in search_spaces.EFFICIENTNET_V2_STRIDES
  ])
  backbone = efficientnet_v2.EfficientNetV2(pg.to_json_str(spec),
                                            endpoints_num_filters=0)
  _assert_pyramid(backbone(_images(64)), 64, range(1, 6), 16)
  kernels = [w.shape for w in backbone.trainable_weights if w.shape.rank == 4]
  assert (5, 5, 16, 16) in kernels
  rebuilt = efficientnet_v2.EfficientNetV2.from_config(backbone.get_config())
  assert rebuilt.count_params() == backbone.count_params()


@pytest.mark.parametrize('backbone_class, spec', [
    (mnasnet_arch.MnasNet, lambda: _materialise('mnasnet', 0)),
    (efficientnet_v2.EfficientNetV2, lambda: _materialise('efficientnet_v2', 0)),
    (regnet.RegNet, lambda: search_spaces.RegNetSpec(
        depth=13, w0=24, wa=36.44, wm=2.49, group_width=8))])
def test_level_backbone_config_is_its_constructor_arguments(backbone_class,
                                                            spec):
  """get_config holds every constructor argument as given, and from_config
  rebuilds the same network."""
  arguments = dict(block_specs_json=pg.to_json_str(spec()),
                   filter_size_scale=0.5, norm_momentum=0.95,
                   activation='swish')
  backbone = backbone_class(**arguments)
  config = backbone.get_config()
  parameters = set(inspect.signature(backbone_class.__init__).parameters)
  assert set(config) == parameters - {'self', 'kwargs'}
  assert {k: config[k] for k in arguments} == arguments
  rebuilt = backbone_class.from_config(config)
  assert rebuilt.count_params() == backbone.count_params()
  tf_keras.backend.clear_session()


def test_mnasnet_without_head_conv_serves_retinanet_levels_3_to_7():
  apply, knobs, _, _ = BACKBONE_CASES['mnasnet']
  params = _experiment()
  apply(params, _materialise('mnasnet', 0))
  model = params.task.model
  model.backbone.get().override(knobs)
  model.num_classes = 3
  model.decoder.fpn.num_filters = 16
  model.head.num_filters = 16
  model.head.num_convs = 1
  retinanet_model = model_factory.build_retinanet(
      tf_keras.layers.InputSpec(shape=[None, 128, 128, 3]), model)
  outputs = retinanet_model(_images(128), training=True)
  _assert_pyramid(outputs['box_outputs'], 128, range(3, 8))


def _literals(sample):
  """The literal values of a Vertex sample, read without the space."""
  return {path: json.loads(LITERAL.match(value)[1])
          for path, value in json.loads(sample).items()}


@pytest.mark.parametrize('index', range(3))
def test_spinenet_scaling_sample_scales_spinenet49_and_head(index):
  spec = _materialise('spinenet_scaling', index)
  expected = _literals(_samples('spinenet_scaling')[index])
  params = _experiment('retinanet')
  spinenet.apply_spinenet_scaling(params, spec)
  model = params.task.model
  backbone = model.backbone.tunable_spinenet
  assert model.backbone.type == 'tunable_spinenet'
  assert model.decoder.type == 'identity'
  assert pg.eq(pg.from_json_str(backbone.block_specs_json),
               search_spaces.spinenet49_reference_spec())
  assert backbone.endpoints_num_filters == expected['endpoints_num_filters']
  assert backbone.filter_size_scale == expected['filter_size_scale']
  assert backbone.resample_alpha == expected['resample_alpha']
  assert backbone.block_repeats == expected['block_repeats']
  assert model.head.num_convs == expected['head_num_convs']
  assert model.head.num_filters == expected['head_num_filters']
  assert model.input_size == [expected['image_size']] * 2 + [3]
  params.validate()


def test_spinenet_scaling_keeps_a_searched_spinenet():
  searched = _materialise('spinenet', 0)
  params = _experiment('retinanet')
  spinenet.apply_spinenet(params, searched)
  spinenet.apply_spinenet_scaling(params, _materialise('spinenet_scaling', 0))
  assert pg.eq(pg.from_json_str(
      params.task.model.backbone.tunable_spinenet.block_specs_json), searched)


@pytest.mark.parametrize('image_size,scale,expected', [
    (512, 1.0, 512), (640, 1.0, 640), (512, 0.5, 256), (640, 0.25, 128),
    (640, 0.6, 384), (512, 0.1, 128)])
def test_spinenet_scaling_image_size_scale_rounds_to_level_7_stride(
    image_size, scale, expected):
  spec = _materialise('spinenet_scaling', 0).clone(
      override={'image_size': image_size})
  params = _experiment('seg_deeplabv3_pascal')
  spinenet.apply_spinenet_scaling(params, spec, image_size_scale=scale)
  task = params.task
  assert task.model.input_size == [expected, expected, 3]
  assert task.train_data.output_size == [expected, expected]
  assert task.validation_data.output_size == [expected, expected]
  assert task.model.head.num_convs == spec.head_num_convs


def test_builders_reject_a_spec_of_another_family():
  params = _experiment()
  spinenet.apply_spinenet(params, _materialise('spinenet_mbconv', 0))
  with pytest.raises(ValueError, match='not mbconv'):
    _build_backbone(params.task.model, 128)
  model = _tiny_nasfpn_model(search_spaces.nasfpn_reference_spec())
  model.max_level = 6
  with pytest.raises(ValueError, match='outputs levels'):
    decoder_factory.build_decoder({'3': tf.TensorShape([1, 16, 16, 8])}, model)


# Space -> (default experiment, config space) of its materialised specs.
PREBUILT_BINDINGS = {
    'mnasnet': ('nas_image_classification', 'mnasnet'),
    'efficientnet_v2': ('nas_retinanet', 'efficientnet_v2'),
    'spinenet': ('nas_retinanet', 'spinenet'),
    'spinenet_v2': ('nas_retinanet', 'spinenet'),
    'spinenet_mbconv': ('nas_retinanet', 'spinenet'),
    'nasfpn': ('nas_retinanet', 'nasfpn'),
    'spinenet_scaling': ('nas_retinanet', 'spinenet_scaling'),
    'anynet_x': ('nas_image_classification', 'regnet'),
    'regnet_x': ('nas_image_classification', 'regnet'),
    'regnet_y': ('nas_image_classification', 'regnet'),
    'nasnet': ('nas_image_classification', 'nasnet'),
    'static_unet': ('nas_segmentation_3d', 'unet'),
    'tunable_unet_encoder': ('nas_segmentation_3d', 'unet'),
    'tunable_unet_nasfpn': ('nas_segmentation_3d', 'unet'),
    'pointpillars': ('nas_pointpillars', 'pointpillars'),
}


def test_every_prebuilt_architecture_space_is_bound_by_its_module():
  assert {name for name in search_spaces.list_search_spaces()
          if search_spaces.search_space_kind(name) != 'augmentation'} == set(
              PREBUILT_BINDINGS)
  for name, expected in PREBUILT_BINDINGS.items():
    space = search_spaces.get_search_space(name)
    spec = (_materialise(name, 0) if name in search_spaces.vertex_search_spaces()
            else search_spaces.materialize(space, pg.random_dna(
                _dna_spec(name), random.Random(0))))
    binding = architectures.binding_for(spec)
    assert (binding.default_experiment, binding.config_space) == expected, name
  assert architectures.binding_for(
      search_spaces.spinenet49_reference_spec()).apply is (
          spinenet.apply_any_spinenet)


@pytest.mark.parametrize('name,backbone_type', [
    ('spinenet', 'tunable_spinenet'),
    ('spinenet_mbconv', 'tunable_spinenet_mbconv'),
])
def test_apply_architecture_picks_the_spinenet_builder_by_block_fn(
    name, backbone_type):
  params = _experiment()
  architectures.apply_architecture(params, _materialise(name, 0))
  assert params.task.model.backbone.type == backbone_type
  assert params.task.model.decoder.type == 'identity'


def test_apply_architecture_scales_at_the_configs_image_size_scale():
  params = _experiment()
  params.task.model.override({'scaling_image_size_scale': 0.25,
                              'scaling_width_scale': 1.0}, is_strict=False)
  spec = _materialise('spinenet_scaling', 0).clone(
      override={'image_size': 640})
  architectures.apply_architecture(params, spec)
  assert params.task.model.input_size == [128, 128, 3]


class _ToySpec(pg.Object):
  """A spec type no architecture module binds."""
  width: int


class _WideToySpec(_ToySpec):
  """A subclass of it, bound separately below."""


def test_registered_spec_type_binds_and_unregistered_types_are_clear_errors():
  shipped = registry.registered_types()
  message = (r'no trainer for architectures of type _ToySpec; trainable '
             r'types: MnasNetSpec, .*NasFpnSpec')
  with pytest.raises(ValueError, match=message):
    architectures.binding_for(_ToySpec(width=8))
  applied = []
  try:

    @registry.register(_ToySpec, default_experiment='nas_image_classification',
                       config_space='mnasnet')
    def apply_toy(params, spec):
      applied.append((params, spec))

    @registry.register(_WideToySpec, default_experiment='nas_retinanet',
                       config_space='spinenet')
    def apply_wide_toy(params, spec):
      del params, spec

    assert architectures.binding_for(_ToySpec(width=8)) == (
        architectures.ArchitectureBinding('nas_image_classification',
                                          'mnasnet', apply_toy))
    # The most specific registered type wins, whatever the order.
    assert architectures.binding_for(_WideToySpec(width=8)).apply is (
        apply_wide_toy)
    architectures.apply_architecture('params', _ToySpec(width=8))
    assert applied == [('params', _ToySpec(width=8))]
    with pytest.raises(ValueError, match='already bound'):
      registry.register(_ToySpec, default_experiment='nas_retinanet',
                        config_space='nasfpn')(apply_wide_toy)
  finally:
    registry.unregister(_WideToySpec)
    registry.unregister(_ToySpec)
  assert registry.registered_types() == shipped
  with pytest.raises(ValueError, match='no trainer for architectures of type '
                     '_WideToySpec'):
    architectures.binding_for(_WideToySpec(width=8))
