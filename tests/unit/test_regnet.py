"""RegNet design spaces (AnyNetX, RegNetX, RegNetY): the quantised linear
rule, group compatibility, and the published models built through Model
Garden's classification task with tf_keras.applications' parameter counts."""

import random

import numpy as np
import pyglove as pg
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.core import task_factory
from official.core import train_utils
import configs
import search_spaces
from trainer.training import architectures
from trainer.training import experiments
from trainer.training.architectures import regnet

# The paper's 200MF models (Radosavovic et al. 2020, Table of RegNetX/Y):
# (d, w0, wa, wm, g), and their tf_keras.applications twin.
REGNET_200MF = {'x': (13, 24, 36.44, 2.49, 8), 'y': (13, 24, 36.44, 2.49, 8)}
APPLICATIONS = {'x': (tf_keras.applications.RegNetX002, 2_705_640),
                'y': (tf_keras.applications.RegNetY002, 3_183_844)}


def _published(block_type):
  d, w0, wa, wm, g = REGNET_200MF[block_type]
  return search_spaces.RegNetSpec(depth=d, w0=w0, wa=wa, wm=wm, group_width=g,
                                  block_type=block_type)


def test_regnetx_200mf_stages_follow_the_quantised_linear_rule():
  stages = _published('x').stage_specs()
  assert [s.width for s in stages] == [24, 56, 152, 368]
  assert [s.depth for s in stages] == [1, 1, 4, 7]
  assert {s.group_width for s in stages} == {8}


@pytest.mark.parametrize('squeeze_excite', [False, True])
def test_a_block_without_stride_starts_as_the_identity(squeeze_excite):
  """Each block's last batch norm starts at gamma 0 (Goyal et al. 2017), so
  a deep stage starts as its first block: without it, many deep AnyNetX
  samples stayed at chance through the whole proxy."""
  stage = search_spaces.AnyNetStageSpec(depth=2, width=16, bottleneck_ratio=2,
                                        group_width=4)
  inputs = tf_keras.Input([8, 8, 16])
  block = regnet._Block(  # pylint: disable=protected-access
      16, stage, 1, squeeze_excite,
      dict(norm_momentum=0.9, norm_epsilon=1e-5, use_sync_bn=False), 'relu',
      None)
  model = tf_keras.Model(inputs, block(inputs))
  features = tf.nn.relu(tf.random.stateless_normal([2, 8, 8, 16], [3, 4]))
  np.testing.assert_allclose(model(features, training=True).numpy(),
                             features.numpy(), atol=1e-6)
  tf_keras.backend.clear_session()


def test_group_width_is_made_compatible_with_the_bottleneck_width():
  # Width 24 at bottleneck 4 leaves 6 channels: group width 8 drops to 6.
  stage = search_spaces.AnyNetStageSpec(depth=1, width=24, bottleneck_ratio=4,
                                        group_width=8).compatible()
  assert (stage.width, stage.group_width) == (24, 6)
  # Width 44 at group width 16: the inner width rounds to a multiple of 16.
  stage = search_spaces.AnyNetStageSpec(depth=1, width=44, bottleneck_ratio=1,
                                        group_width=16).compatible()
  assert (stage.width, stage.group_width) == (48, 16)


@pytest.mark.parametrize('name, decisions', [('anynet_x', 16), ('regnet_x', 5),
                                             ('regnet_y', 5)])
def test_space_decisions_and_samples_materialise(name, decisions):
  space = search_spaces.get_search_space(name)
  spec = pg.dna_spec(space)
  assert len(spec.decision_points) == decisions
  for seed in range(5):
    dna = pg.random_dna(spec, random.Random(seed))
    params = search_spaces.nas_params_from_dna(dna)
    assert search_spaces.dna_from_nas_params(space, params) == dna
    built = search_spaces.materialize(space, dna).canonical()
    for stage in built.stages:  # Every stage is buildable as it stands.
      assert stage.width % stage.group_width == 0
      assert (stage.width // stage.bottleneck_ratio) % stage.group_width == 0


def test_regnet_architectures_that_build_the_same_network_share_a_key():
  """Evolution's de-duplication: many (d, w0, wa, wm) build one network."""
  space = search_spaces.get_search_space('regnet_x')
  template = pg.template(space)
  by_stages = {}
  for wa in range(8, 257, 8):
    spec = search_spaces.RegNetSpec(depth=13, w0=24, wa=float(wa), wm=2.5,
                                    group_width=8)
    by_stages.setdefault(str(spec.stage_specs()), []).append(
        template.encode(spec))
  same = next(dnas for dnas in by_stages.values() if len(dnas) > 1)
  assert same[0] != same[1]
  assert (search_spaces.architecture_key(space, same[0]) ==
          search_spaces.architecture_key(space, same[1]))
  assert len({search_spaces.architecture_key(space, dnas[0])
              for dnas in by_stages.values()}) == len(by_stages)


def _classifier(spec, size=224, num_classes=1000):
  params = exp_factory.get_exp_config('nas_image_classification')
  params.task.model.num_classes = num_classes
  params.task.model.input_size = [size, size, 3]
  architectures.apply_architecture(params, spec)
  return task_factory.get_task(params.task).build_model()


@pytest.mark.parametrize('block_type', ['x', 'y'])
def test_published_200mf_has_the_parameters_of_tf_keras_applications(
    block_type):
  application, count = APPLICATIONS[block_type]
  stock = application(weights=None)
  assert stock.count_params() == count
  ours = _classifier(_published(block_type))
  assert ours.count_params() == count
  tf_keras.backend.clear_session()


def test_tiny_proxy_narrows_every_stage_and_keeps_levels():
  spec = _published('y')
  backbone = regnet.RegNet(pg.to_json_str(spec), filter_size_scale=0.25,
                           input_specs=tf_keras.layers.InputSpec(
                               shape=[None, 64, 64, 3]))
  shapes = {level: tuple(s) for level, s in backbone.output_specs.items()}
  scaled = [regnet.scaled_stage(s, 0.25) for s in spec.stage_specs()]
  assert [s.width for s in scaled] == [8, 16, 40, 96]
  assert shapes == {'1': (None, 32, 32, 32), '2': (None, 16, 16, 8),
                    '3': (None, 8, 8, 16), '4': (None, 4, 4, 40),
                    '5': (None, 2, 2, 96)}


def _detection_config():
  return experiments.load_experiment_config(
      'nas_retinanet', configs.resolve('regnet_detection_search_cpu'))


def test_regnet_is_a_retinanet_backbone_under_fpn():
  """The shipped detection config: RegNetX-200MF's levels 3-5 feed the FPN
  and the head predicts at each."""
  params = _detection_config()
  architectures.apply_architecture(params, _published('x'))
  model = task_factory.get_task(params.task).build_model()
  assert isinstance(model.backbone, regnet.RegNet)
  outputs = model(tf.zeros([1, 64, 64, 3]), training=True)
  assert sorted(outputs['cls_outputs']) == ['3', '4', '5']
  assert outputs['cls_outputs']['5'].shape[1:3] == (2, 2)
  tf_keras.backend.clear_session()


def test_a_regnet_too_shallow_for_the_detector_is_refused_in_one_line():
  # Widths 256..296 quantise to one stage: levels 1-2 only.
  shallow = search_spaces.RegNetSpec(depth=6, w0=256, wa=8, wm=1.5,
                                     group_width=8)
  assert len(shallow.stage_specs()) == 1
  with pytest.raises(ValueError, match=r'^this architecture has 1 stage\(s\), '
                     r'feature levels up to 2; the model needs level '
                     r'task.model.min_level=3$'):
    architectures.apply_architecture(_detection_config(), shallow)
  params = exp_factory.get_exp_config('nas_image_classification')
  architectures.apply_architecture(params, shallow)  # A classifier takes it.
  assert params.task.model.backbone.type == 'tunable_regnet'


@pytest.mark.parametrize('group_width, filters', [(1, 16), (4, 16), (8, 32)])
def test_grouped_conv_on_a_cpu_equals_the_native_grouped_conv(
    monkeypatch, group_width, filters):
  """The CPU paths (depthwise for group width 1, else group by group) give
  Conv2D(groups=...)'s numbers with its kernel, and count the same FLOPs."""
  images = tf.random.stateless_normal([2, 8, 8, 16], seed=[1, 2])
  cpu = regnet.GroupedConv2D(filters, 3, 2, group_width)
  cpu(images)
  assert not cpu._native  # pylint: disable=protected-access  (no GPU here)
  stock = tf_keras.layers.Conv2D(filters, 3, 2, padding='same', use_bias=False,
                                 groups=16 // group_width)
  stock(images)
  stock.set_weights(cpu.get_weights())
  monkeypatch.setattr(regnet, '_native_grouped_conv', lambda: True)
  native = regnet.GroupedConv2D(filters, 3, 2, group_width)
  native(images)
  native.set_weights(cpu.get_weights())
  expected = stock(images).numpy()
  np.testing.assert_allclose(cpu(images).numpy(), expected, atol=1e-4)
  np.testing.assert_allclose(native(images).numpy(), expected, atol=1e-4)
  flops = []
  for layer in (native, cpu):
    inputs = tf_keras.Input([8, 8, 16])
    flops.append(train_utils.try_count_flops(tf_keras.Model(inputs,
                                                            layer(inputs))))
  assert flops[0] == flops[1] == 4 * 4 * filters * 9 * group_width * 2
