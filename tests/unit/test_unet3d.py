"""The 3D UNet spaces as Model Garden volumetric models: every fixture sample
of the searched encoder and decoder builds and trains a step; the baseline
is Model Garden's own 3D UNet."""

import json
import os

import numpy as np
import pyglove as pg
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.core import task_factory
from official.projects.volumetric_models.modeling.backbones import unet_3d
from official.vision.modeling.layers import nn_layers
import search_spaces
from tests.conftest import FIXTURES
from trainer.training import architectures
from trainer.training import experiments  # pylint: disable=unused-import  (registers nas_segmentation_3d)
from trainer.training.architectures import unet3d

SIZE = 16


def _spec(space, index=0):
  with open(os.path.join(FIXTURES, f'{space}.json')) as f:
    sample = json.load(f)['nas_params_str_samples'][index]
  space_value = search_spaces.get_search_space(space)
  return search_spaces.materialize(
      space_value, search_spaces.dna_from_nas_params(space_value, sample))


def _tiny_task(spec):
  params = exp_factory.get_exp_config('nas_segmentation_3d')
  params.override({'task': {'model': {
      'input_size': [SIZE] * 3, 'num_channels': 2,
      'backbone': {'unet_3d': {'base_filters': 4},
                   'tunable_unet_encoder': {'filter_size_scale': 0.25}},
      'decoder': {'tunable_unet_nasfpn': {'num_filters': 8}},
      'norm_activation': {'use_sync_bn': False}}}}, is_strict=True)
  architectures.apply_architecture(params, spec)
  return params, task_factory.get_task(params.task)


def _volumes(batch=2):
  rng = np.random.default_rng(0)
  images = rng.normal(size=(batch, SIZE, SIZE, SIZE, 2)).astype(np.float32)
  labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (batch,) + (SIZE,) * 3)]
  return tf.constant(images), tf.constant(labels)


@pytest.mark.parametrize('index', [0, 1, 2])
def test_every_encoder_sample_builds_and_trains_a_step(index):
  spec = _spec('tunable_unet_encoder', index)
  params, task = _tiny_task(spec)
  assert params.task.model.backbone.type == 'tunable_unet_encoder'
  assert params.task.model.decoder.type == 'unet_3d_decoder'
  model = task.build_model()
  endpoints = model.backbone.output_specs
  for level, block in enumerate(spec.blocks, start=1):
    assert endpoints[str(level)].as_list() == [
        None, *(SIZE // 2 ** (level - 1),) * 3,
        nn_layers.round_filters(block.num_filters, 0.25)]
  _train_step(task, model)
  tf_keras.backend.clear_session()


def _train_step(task, model):
  optimizer = tf_keras.optimizers.SGD(0.01)
  before = [v.numpy().copy() for v in model.trainable_variables]
  logs = task.train_step(_volumes(), model, optimizer)
  assert np.isfinite(float(logs['loss']))
  assert any(not np.array_equal(b, v.numpy())
             for b, v in zip(before, model.trainable_variables))
  outputs = model(_volumes()[0], training=False)['logits']
  assert outputs.shape == (2, SIZE, SIZE, SIZE, 4)


@pytest.mark.parametrize('index', [0, 1, 2])
def test_every_decoder_sample_builds_and_trains_a_step(index):
  spec = _spec('tunable_unet_nasfpn', index)
  params, task = _tiny_task(spec)
  assert params.task.model.backbone.type == 'unet_3d'
  assert params.task.model.decoder.type == 'tunable_unet_nasfpn'
  model = task.build_model()
  assert isinstance(model.decoder, unet3d.UNetNasFpn3D)
  # One output per level, at the level's resolution, with num_filters.
  assert {level: shape.as_list() for level, shape in
          model.decoder.output_specs.items()} == {
              str(level): [None, *(SIZE // 2 ** (level - 1),) * 3, 8]
              for level in search_spaces.UNET_LEVELS}
  # Each block ends in a 3^3 conv: 2 intermediate and 4 output blocks.
  assert sum(isinstance(layer, tf_keras.layers.Conv3D) and
             layer.kernel_size == (3, 3, 3)
             for layer in model.decoder.layers) == 6
  attention = sum(b.combine_fn == 'attention' for _, b in spec.block_sequence())
  assert sum(isinstance(layer, tf_keras.layers.Lambda)
             for layer in model.decoder.layers) == attention
  _train_step(task, model)
  tf_keras.backend.clear_session()


def _encoder(**block):
  spec = search_spaces.TunableUNetEncoderSpec(blocks=[
      search_spaces.UNetEncoderBlockSpec(**block) for _ in range(4)],
      activation='swish')
  return unet3d.UNetEncoder3D(
      block_specs_json=pg.to_json_str(spec),
      input_specs=tf_keras.layers.InputSpec(shape=[None, SIZE, SIZE, SIZE, 2]))


def _layer_types(model):
  return [type(layer).__name__ for layer in model.layers]


def test_blocks_follow_their_decisions():
  base = dict(block_type='basic_block', num_filters=8, num_repeats=2,
              kernel_size=5, id_skip=True, se_ratio=0.25)
  encoder = _encoder(**base)
  convs = [layer for layer in encoder.layers
           if isinstance(layer, tf_keras.layers.Conv3D)]
  # Basic: two 5^3 convs, then squeeze-excite's two 1^3 convs; 2 blocks a
  # level.
  assert [c.kernel_size for c in convs[:4]] == [(5, 5, 5)] * 2 + [(1, 1, 1)] * 2
  assert sum(c.kernel_size == (1, 1, 1) for c in convs) == 2 * 2 * 4
  # The identity skip joins blocks whose input has their width: all 8 but
  # the first (2 input channels).
  assert _layer_types(encoder).count('Add') == 7
  assert _layer_types(encoder).count('Multiply') == 8  # SE in every block.
  plain = _encoder(**{**base, 'id_skip': False, 'se_ratio': 0.0})
  assert 'Add' not in _layer_types(plain)
  assert 'Multiply' not in _layer_types(plain)
  bottleneck = _encoder(**{**base, 'block_type': 'bottleneck_block',
                           'kernel_size': 3})
  kernels = [c.kernel_size for c in bottleneck.layers
             if isinstance(c, tf_keras.layers.Conv3D)][:3]
  assert kernels == [(1, 1, 1), (3, 3, 3), (1, 1, 1)]
  assert any(isinstance(layer, tf_keras.layers.Activation) and
             layer.get_config()['activation'] == 'swish'
             for layer in encoder.layers)
  tf_keras.backend.clear_session()


def test_static_unet_is_model_gardens_unet_3d():
  params, task = _tiny_task(_spec('static_unet'))
  assert params.task.model.backbone.type == 'unet_3d'
  model = task.build_model()
  assert isinstance(model.backbone, unet_3d.UNet3D)
  assert model.backbone.get_config()['model_id'] == len(
      search_spaces.UNET_LEVELS)
  assert model(_volumes()[0])['logits'].shape == (2, SIZE, SIZE, SIZE, 4)
  tf_keras.backend.clear_session()
