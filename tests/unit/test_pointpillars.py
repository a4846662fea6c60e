"""PointPillars' input: points -> pillars -> the bird's-eye-view image, with
the pillars' cells, decorations and limits checked against coordinates;
the searched feature net ignores padding."""

import random

import numpy as np
import pyglove as pg
import pytest
import tensorflow as tf

from official.vision.modeling.layers import nn_layers
import search_spaces
from tests.conftest import fixture_sample
from trainer.datasets import lidar
from trainer.datasets import pillars
from trainer.training.architectures import pointpillars

# 16 x 16 cells of 0.5 m over x in [0, 8), y in [-4, 4).
GRID = pillars.PillarGrid(point_range=((0.0, -4.0, -3.0), (8.0, 4.0, 1.0)),
                          pillar_size=(0.5, 0.5), max_pillars=64,
                          max_points=16)


def _bev(points, grid=GRID):
  """The pillars and a 3-channel BEV image: points, mean x, mean y."""
  p = pillars.pillarize(points, grid)
  num = tf.cast(p['num_points'], tf.float32)
  mean_xy = p['features'][:, 0, :2] - p['features'][:, 0, 4:6]
  pillar_features = tf.concat([num[:, None], mean_xy], axis=1)
  bev = pointpillars.PillarScatter(grid.rows, grid.cols)(
      [pillar_features[None], p['indices'][None], p['num_points'][None]])
  return p, bev[0].numpy()


def test_a_box_of_points_fills_exactly_the_cells_under_it():
  rng = np.random.default_rng(0)
  # A 2 m x 1 m box, 1.5 m tall, on the ground at (4.25, 0.25).
  xyz = rng.uniform([3.25, -0.25, -1.7], [5.25, 0.75, -0.2], (600, 3))
  points = np.column_stack([xyz, rng.uniform(0, 1, 600)]).astype(np.float32)
  _, bev = _bev(points)
  occupied = set(zip(*np.nonzero(bev[..., 0])))
  # Rows from y: floor((y + 4) / 0.5); columns from x: floor(x / 0.5).
  assert occupied == {(r, c) for r in range(7, 10) for c in range(6, 11)}
  counts = np.zeros((GRID.rows, GRID.cols))
  np.add.at(counts, (np.floor((xyz[:, 1] + 4) / 0.5).astype(int),
                     np.floor(xyz[:, 0] / 0.5).astype(int)), 1)
  np.testing.assert_array_equal(bev[..., 0],
                                np.minimum(counts, GRID.max_points))
  for r, c in occupied:
    # Each cell's mean point lies inside that cell's square.
    mean_x, mean_y = bev[r, c, 1:]
    assert c * 0.5 <= mean_x < (c + 1) * 0.5
    assert -4 + r * 0.5 <= mean_y < -4 + (r + 1) * 0.5


def test_points_are_decorated_with_offsets_from_mean_and_centre():
  points = np.array([[1.1, -3.9, 0.0, 0.5],   # cell (0, 2)
                     [1.3, -3.7, -1.0, 0.7],  # cell (0, 2)
                     [7.9, 3.9, 0.5, 0.1],    # cell (15, 15)
                     [9.0, 0.0, 0.0, 0.1],    # x out of range
                     [1.0, 0.0, 1.5, 0.1]],   # z out of range
                    np.float32)
  p = pillars.pillarize(points, GRID)
  num = p['num_points'].numpy()
  assert sorted(num[num > 0]) == [1, 2]
  first = int(np.argmax(num))
  assert tuple(p['indices'][first].numpy()) == (0, 2)
  np.testing.assert_allclose(p['features'][first, :2].numpy(), [
      [1.1, -3.9, 0.0, 0.5, -0.1, -0.1, 0.5, 1.1 - 1.25, -3.9 + 3.75],
      [1.3, -3.7, -1.0, 0.7, 0.1, 0.1, -0.5, 1.3 - 1.25, -3.7 + 3.75]],
                             atol=1e-5)
  assert not p['features'][first, 2:].numpy().any()
  assert p['features'].shape == (GRID.max_pillars, GRID.max_points, 9)


def test_the_densest_pillars_and_the_first_points_are_kept():
  grid = GRID._replace(max_pillars=2, max_points=3)
  points = np.array([[0.1, -3.9, 0, 0]] * 5 +      # cell (0, 0): 5 points
                    [[2.1, -3.9, 0, 0]] * 1 +      # cell (0, 4): 1 point
                    [[4.1, -3.9, 0, 0]] * 2,       # cell (0, 8): 2 points
                    np.float32)
  points[:, 3] = np.arange(len(points))  # Reflectance: the point's index.
  p = pillars.pillarize(points, grid)
  assert p['num_points'].numpy().tolist() == [3, 2]
  assert p['indices'].numpy().tolist() == [[0, 0], [0, 8]]
  assert p['features'][0, :, 3].numpy().tolist() == [0, 1, 2]
  assert p['features'][1, :, 3].numpy().tolist() == [6, 7, 0]


def test_pillars_made_under_tflite_equal_tensorflows():
  """The served model pillarises in its graph: the same pillars under
  TFLite's builtin ops, for a generated scene with more pillars and points
  than kept."""
  grid = pillars.PillarGrid(lidar.POINT_RANGE, (0.64, 0.64), max_pillars=500,
                            max_points=8)

  class Pillarize(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def pillarize(self, points):
      return pillars.pillarize(points, grid)

  module = Pillarize()
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [module.pillarize.get_concrete_function()], module)
  interpreter = tf.lite.Interpreter(model_content=converter.convert())
  points = lidar.render_scene(np.random.default_rng([0, 0, 1])).points
  got = interpreter.get_signature_runner()(points=points)
  expected = module.pillarize(points)
  assert int(tf.reduce_sum(tf.cast(expected['num_points'] == 8, tf.int32))) > 0
  for key, value in expected.items():
    np.testing.assert_array_equal(got[key], value.numpy())


def test_the_feature_net_ignores_padding_and_empty_pillars():
  space = search_spaces.get_search_space('pointpillars')
  spec = search_spaces.materialize(space, pg.random_dna(pg.dna_spec(space),
                                                        random.Random(1)))
  net = pointpillars.PillarFeatureNet(pg.to_json_str(spec))
  rng = np.random.default_rng(2)
  features = rng.normal(size=(1, 4, 8, 9)).astype(np.float32)
  num_points = np.array([[3, 8, 1, 0]], np.int32)
  out = net([features, num_points], training=False).numpy()
  padded = features.copy()
  for pillar, n in enumerate(num_points[0]):
    padded[0, pillar, n:] = 1e3  # Padding of any value changes nothing.
  np.testing.assert_array_equal(
      net([padded, num_points], training=False).numpy(), out)
  assert out.shape == (1, 4, spec.featurizer_blocks[0].output_filters)
  assert not out[0, 3].any() and out[0, :3].any()
  with pytest.raises(ValueError, match='not a PointPillarsSpec'):
    pointpillars.PillarFeatureNet(pg.to_json_str(spec.featurizer_blocks[0]))


# A coarse grid for the network tests: 0.64 m cells over KITTI's range.
NETWORK_GRID = pillars.PillarGrid(point_range=lidar.POINT_RANGE,
                                  pillar_size=(0.64, 0.64), max_pillars=2000,
                                  max_points=16)


@pytest.mark.parametrize('index', range(3))
def test_each_fixture_sample_builds_and_maps_pillars_to_anchor_outputs(index):
  """Real Vertex samples of `pointpillars`, at a quarter of their filters,
  on a generated scene: every output per BEV cell and anchor, finite, and
  the network's width follows the sample."""
  space = search_spaces.get_search_space('pointpillars')
  spec = search_spaces.materialize(space, search_spaces.dna_from_nas_params(
      space, fixture_sample('pointpillars', index)))
  net = pointpillars.build_network(
      spec, NETWORK_GRID.rows, NETWORK_GRID.cols, NETWORK_GRID.max_pillars,
      NETWORK_GRID.max_points, num_classes=3, anchors_per_cell=6,
      filter_size_scale=0.25)
  scene = lidar.render_scene(np.random.default_rng([0, 0, index]))
  inputs = {k: v[None] for k, v in
            pillars.pillarize(scene.points, NETWORK_GRID).items()}
  outputs = net(inputs, training=False)
  cells = (1, NETWORK_GRID.rows, NETWORK_GRID.cols, 6)
  assert outputs['class_logits'].shape == (*cells, 3)
  assert outputs['box_residuals'].shape == (*cells, 7)
  assert outputs['direction_logits'].shape == (*cells, 2)
  for value in outputs.values():
    assert np.isfinite(value.numpy()).all()
  [featurizer] = [layer for layer in net.layers
                  if isinstance(layer, pointpillars.PillarFeatureNet)]
  width = nn_layers.round_filters(spec.featurizer_blocks[0].output_filters,
                                  0.25)
  assert featurizer([inputs['features'], inputs['num_points']]).shape == (
      1, NETWORK_GRID.max_pillars, width)
