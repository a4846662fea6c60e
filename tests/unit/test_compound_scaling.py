"""Compound scaling: the (α, β, γ) grid, the paper's rounding, and FLOPs of
φ-scaled real classifiers built through the trial's config path."""

import math

import pytest

from tests.conftest import fixture_sample
from trainer import compound_scaling as scaling
from trainer import spec as spec_lib
from trainer.modes import compound_scaling as mode
from trainer.modes.common import UsageError


@pytest.mark.parametrize('points', [1, 3, 6, 10])
def test_every_grid_point_doubles_flops_with_multipliers_at_least_one(points):
  grid = scaling.grid(points)
  assert len(grid) == points == len(set(grid))
  for point in grid:
    assert min(point) >= 1.0
    assert abs(point.flops_growth - 2) <= 0.01 * 2  # Rounded to 3 decimals.
    assert scaling.satisfies_constraint(point)


def test_default_grid_gives_each_dimension_half_the_doubling_once():
  assert scaling.grid(3) == [(1.414, 1.091, 1.091), (1.189, 1.189, 1.091),
                             (1.189, 1.091, 1.189)]
  assert scaling.satisfies_constraint(scaling.ScalingPoint(
      *scaling.PAPER_POINT))
  assert not scaling.satisfies_constraint(scaling.ScalingPoint(1.2, 1.2, 1.2))
  assert not scaling.satisfies_constraint(scaling.ScalingPoint(2.0, 1.0, 0.99))


@pytest.mark.parametrize('bad', [0, 11])
def test_grid_size_out_of_range_is_a_one_line_error(bad):
  with pytest.raises(ValueError, match='compound_scaling_grid_points'):
    scaling.grid(bad)
  with pytest.raises(ValueError, match='compound_scaling_max_phi'):
    scaling.phis(0)


def test_rounding_repeats_up_and_resolution_to_the_quantum():
  assert scaling.round_repeats(3, 1.0) == 3
  assert scaling.round_repeats(1, 1.2) == 2  # Ceiling, as the paper.
  assert scaling.round_repeats(4, 1.2) == 5
  assert scaling.round_repeats(10, 1.1 ** 2 * 100 / 121) == 10  # Float noise.
  assert scaling.round_resolution(224, 1.15, 8) == 256  # 257.6
  assert scaling.round_resolution(224, 1.15 ** 2, 8) == 296
  assert scaling.round_resolution(64, 1.09, 128) == 128  # At least a quantum.
  assert scaling.scaled_input_size([32, 48, 3], 1.5, 8) == [48, 72, 3]


def test_scaled_override_rounds_filters_to_eight_and_keeps_the_base():
  base = mode.BaseSize('tunable_mnasnet', 0.35, 1.0, 128, [64, 64, 3], 8)
  override = mode.scaled_override(base, scaling.ScalingPoint(1.2, 1.1, 1.15))
  assert override == {'task': {'model': {
      'backbone': {'tunable_mnasnet': {
          'filter_size_scale': 0.385, 'depth_multiplier': 1.2,
          'endpoints_num_filters': 144}},  # round_filters(128 * 1.1) = 144.
      'input_size': [72, 72, 3]}}}  # 73.6 -> 72.
  no_head = base._replace(head_filters=0)
  assert 'endpoints_num_filters' not in mode.scaled_override(
      no_head, scaling.ScalingPoint(1.2, 1.1, 1.15))['task']['model'][
          'backbone']['tunable_mnasnet']


def test_depth_multiplier_builds_ceiling_repeats_per_block_group():
  from trainer.training.architectures import blocks  # pylint: disable=g-import-not-at-top
  import search_spaces  # pylint: disable=g-import-not-at-top

  groups = [search_spaces.MnasBlockSpec(
      num_repeats=r, block_fn='mbconv', expand_ratio=6, kernel_size=3,
      se_ratio=0.0, output_filters=16, strides=1) for r in (1, 2, 3)]
  built = []
  blocks.build_level_endpoints(
      0, groups, lambda x, g, s: built.append(g.num_repeats) or x,
      depth_multiplier=1.2)
  assert [built.count(r) for r in (1, 2, 3)] == [2, 3, 4]


def test_spaces_without_multipliers_are_refused_by_name():
  with pytest.raises(UsageError, match=r'regnet_x has none .*spaces that do: '
                     r'efficientnet_v2, mnasnet'):
    mode.check_space('regnet_x', fixture_regnet())
  mode.check_space('mnasnet', fixture_sample('mnasnet'))


def fixture_regnet():
  import pyglove as pg  # pylint: disable=g-import-not-at-top
  import random  # pylint: disable=g-import-not-at-top
  import search_spaces  # pylint: disable=g-import-not-at-top
  space = search_spaces.get_search_space('regnet_x')
  return search_spaces.nas_params_from_dna(
      pg.random_dna(pg.dna_spec(space), random.Random(0)))


# A full-size classifier (224 px, width 1.0, the 1280-filter head conv) from
# the shipped config, so FLOPs are not dominated by the tiny proxy's
# rounding; an empty TFRecord file passes the data check without data.
def _full_size(space):
  backbone = f'task.model.backbone.tunable_{space}'
  return (f'task.model.num_classes=10,task.model.input_size=[224,224,3],'
          f'{backbone}.filter_size_scale=1.0,'
          f'{backbone}.endpoints_num_filters=1280')


@pytest.mark.parametrize('space', [
    'mnasnet', pytest.param('efficientnet_v2', marks=pytest.mark.slow)])
def test_paper_coefficients_scale_flops_about_two_to_the_phi(space, tmp_path):
  """With the paper's α=1.2, β=1.1, γ=1.15 the φ models' multiply-adds,
  counted as trials count them, are within 25% of 2^φ times the base's."""
  from trainer.training import trial  # pylint: disable=g-import-not-at-top
  data = tmp_path / 'empty.tfrecord'
  data.write_bytes(b'')
  base_spec = spec_lib.TrialSpec(
      search_space=space, nas_params_str=fixture_sample(space),
      experiment='nas_image_classification',
      config_file='mnasnet_classification_search_cpu',
      params_override=_full_size(space), train_data=str(data),
      eval_data=str(data))
  prepared = trial.prepare(base_spec)
  base = mode.base_size(prepared, space)
  base_flops = trial.estimate_flops(prepared)
  point = scaling.ScalingPoint(*scaling.PAPER_POINT)
  ratios = {}
  for phi in (1, 2, 3):
    scaled = trial.prepare(mode.scaled_spec(base_spec, base,
                                            point.multipliers(phi)))
    backbone = scaled.params.task.model.backbone.get()
    assert backbone.depth_multiplier == pytest.approx(1.2 ** phi)
    assert backbone.filter_size_scale == pytest.approx(1.1 ** phi)
    ratios[phi] = trial.estimate_flops(scaled) / base_flops
  for phi, ratio in ratios.items():
    assert abs(ratio / 2 ** phi - 1) <= 0.25, ratios
  assert math.isclose(ratios[1] * 2, ratios[2], rel_tol=0.25)
