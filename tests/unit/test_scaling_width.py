"""`task.model.scaling_width_scale`: the spinenet_scaling CPU proxy's widths."""

import pytest
import yaml
from official.core import exp_factory

import configs
import search_spaces
from tests.conftest import fixture_sample
from trainer.training import architectures
from trainer.training import experiments  # pylint: disable=unused-import  (registers nas_retinanet)


def _scaling_spec(index=0):
  nas_params_str = fixture_sample('spinenet_scaling', index)
  space = search_spaces.get_search_space('spinenet_scaling')
  return search_spaces.materialize(
      space, search_spaces.dna_from_nas_params(space, nas_params_str))


@pytest.mark.parametrize('scale, filter_scale, endpoints, head', [
    (1.0, 1.0, 192, 256),  # the searched widths (Vertex's proxy and full)
    (0.25, 0.25, 48, 64),
    (0.15, 0.15, 32, 40),  # rounded to multiples of 8
    (0.01, 0.01, 8, 8),  # at least 8 filters
])
def test_width_scale_multiplies_the_searched_widths(scale, filter_scale,
                                                    endpoints, head):
  spec = _scaling_spec()
  assert (spec.filter_size_scale, spec.endpoints_num_filters,
          spec.head_num_filters) == (1.0, 192, 256)
  params = exp_factory.get_exp_config('nas_retinanet')
  params.task.model.scaling_width_scale = scale
  architectures.apply_architecture(params, spec)
  model = params.task.model
  backbone = model.backbone.tunable_spinenet
  assert backbone.filter_size_scale == pytest.approx(filter_scale)
  assert backbone.endpoints_num_filters == endpoints
  assert model.head.num_filters == head
  # Depth is searched and kept.
  assert backbone.block_repeats == spec.block_repeats
  assert model.head.num_convs == spec.head_num_convs


def test_only_the_cpu_proxy_narrows():
  def width_scale(name):
    merged = configs.text(configs.resolve(name))
    return yaml.safe_load(merged)['task']['model'].get(
        'scaling_width_scale', 1.0)
  assert width_scale('spinenet_scaling_detection_search_cpu') < 1.0
  assert width_scale('spinenet_scaling_detection_train_cpu') < 1.0
  for name in ('search_gpu', 'search_tpu', 'train_gpu'):
    assert width_scale(f'spinenet_scaling_detection_{name}') == 1.0
