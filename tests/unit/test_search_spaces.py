"""The prebuilt spaces against nas_params_str samples from Vertex AI NAS."""

import ast
import functools
import json
import pathlib
import random
import re
import subprocess
import sys

import pyglove as pg
import pytest

import search_spaces

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'vertex_nas_params'
SPACE_NAMES = sorted(p.stem for p in FIXTURES.glob('*.json'))
VALUE = re.compile(r'(\d+)/(\d+) \((.*)\)\Z')


def _fixture(name):
  return json.loads((FIXTURES / f'{name}.json').read_text())


@functools.lru_cache(maxsize=None)
def _spec(name):
  """The space's DNASpec, computed once: it takes up to a second."""
  return pg.dna_spec(search_spaces.get_search_space(name))


def _samples():
  return [(name, i, sample) for name in SPACE_NAMES
          for i, sample in enumerate(_fixture(name)['nas_params_str_samples'])]


def test_fixtures_cover_all_fifteen_spaces():
  """The eleven image spaces, PointPillars and the three 3D UNet spaces."""
  assert len(SPACE_NAMES) == 15


def test_vertex_spaces_are_exactly_the_fixture_spaces():
  assert search_spaces.vertex_search_spaces() == SPACE_NAMES
  # The others are the seed papers' (tests/unit/test_regnet.py,
  # tests/unit/test_nasnet.py).
  assert set(search_spaces.list_search_spaces()) - set(SPACE_NAMES) == {
      'anynet_x', 'regnet_x', 'regnet_y', 'nasnet'}


@pytest.mark.parametrize('name', SPACE_NAMES)
def test_space_size_and_decision_count_match_vertex(name):
  fixture = _fixture(name)
  spec = _spec(name)
  assert spec.space_size == int(fixture['space_size'])
  assert len(spec.decision_points) == fixture['num_decision_points']
  # The fixture counts the keys of a sample: one per decision point.
  first_sample = json.loads(fixture['nas_params_str_samples'][0])
  assert [str(dp.id) for dp in spec.decision_points] == list(first_sample)


@pytest.mark.parametrize('name,index,sample', _samples())
def test_vertex_sample_round_trips_and_materialises(name, index, sample):
  del index  # Only names the test case.
  space = search_spaces.get_search_space(name)
  dna = search_spaces.dna_from_nas_params(_spec(name), sample)

  printed = search_spaces.nas_params_from_dna(dna)
  assert json.loads(printed) == json.loads(sample)
  assert list(json.loads(printed)) == list(json.loads(sample))

  architecture = search_spaces.materialize(space, dna)
  assert pg.is_deterministic(architecture)
  for path, value in json.loads(sample).items():
    literal = ast.literal_eval(VALUE.match(value).group(3))
    actual = architecture.sym_get(path)
    assert actual == literal and type(actual) is type(literal), path


@pytest.mark.parametrize('name', SPACE_NAMES)
def test_random_dnas_round_trip(name):
  spec = _spec(name)
  rng = random.Random(1234)
  printed = set()
  for _ in range(5):
    dna = pg.random_dna(spec, rng)
    text = search_spaces.nas_params_from_dna(dna)
    assert search_spaces.dna_from_nas_params(spec, text) == dna
    printed.add(text)
  assert len(printed) > 1 or spec.space_size == 1


@pytest.mark.parametrize('name', SPACE_NAMES)
def test_architecture_summary_is_one_line(name):
  space = search_spaces.get_search_space(name)
  summary = search_spaces.architecture_summary(
      search_spaces.materialize(space, _spec(name).first_dna()))
  assert summary and '\n' not in summary and len(summary) < 200


@pytest.mark.parametrize('name', SPACE_NAMES)
def test_every_materialised_spec_summarises_itself(name):
  """Each spec class carries its summary; only AutoAugment's plain lists are
  summarised by `architecture_summary` itself, and nothing falls back to
  `pg.format`."""
  space = search_spaces.get_search_space(name)
  spec = _spec(name)
  rng = random.Random(99)
  for dna in [spec.first_dna()] + [pg.random_dna(spec, rng) for _ in range(3)]:
    architecture = search_spaces.materialize(space, dna)
    summary = search_spaces.architecture_summary(architecture)
    assert summary != pg.format(architecture, compact=True)[:120]
    if name.startswith('autoaugment_'):
      assert search_spaces.is_autoaugment_policy(architecture)
      continue
    assert callable(getattr(type(architecture), 'summary', None)), name
    assert summary == architecture.summary()
    assert isinstance(summary, str) and summary


def test_architecture_summary_falls_back_to_the_compact_format():
  assert search_spaces.architecture_summary(pg.Dict(width=16, depth=3)) == (
      pg.format(pg.Dict(width=16, depth=3), compact=True))
  # A pg.Dict reads attributes as keys: a 'summary' key is not a method.
  value = pg.Dict(summary='x', depth=3)
  assert search_spaces.architecture_summary(value) == pg.format(
      value, compact=True)


def test_efficientnet_v2_fixed_strides_and_filters():
  space = search_spaces.get_search_space('efficientnet_v2')
  spec = search_spaces.materialize(space, _spec('efficientnet_v2').first_dna())
  assert [b.strides for b in spec.blocks] == [1, 2, 2, 2, 1, 2]
  assert [b.output_filters for b in spec.blocks] == [12, 24, 36, 72, 84, 144]


def test_spinenet_block_sequence_orders_levels_for_builders():
  space = search_spaces.get_search_space('spinenet')
  sample = _fixture('spinenet')['nas_params_str_samples'][0]
  spec = search_spaces.materialize(
      space, search_spaces.dna_from_nas_params(_spec('spinenet'), sample))
  blocks = spec.block_sequence()
  assert len(blocks) == 2 + 11 + 5
  assert [level for level, _ in blocks[:2]] == [2, 2]
  assert all(b.block_fn == 'bottleneck' and not b.input_offsets
             for _, b in blocks[:2])
  # Intermediate block 0: base level 4 ("6/11 (4)") plus offset 0 ("1/4 (0)").
  assert blocks[2][0] == 4
  # Intermediate block 1: base level 4 plus offset 2.
  assert blocks[3][0] == 6
  assert [level for level, _ in blocks[-5:]] == [5, 7, 3, 4, 6]
  assert sorted(spec.intermediate_block_levels) == spec.level_allocation
  for position, (_, block) in enumerate(blocks[2:], start=2):
    assert all(0 <= offset < position for offset in block.input_offsets)


def test_nasfpn_block_sequence_gives_output_blocks_their_levels():
  space = search_spaces.get_search_space('nasfpn')
  sample = _fixture('nasfpn')['nas_params_str_samples'][0]
  spec = search_spaces.materialize(
      space, search_spaces.dna_from_nas_params(_spec('nasfpn'), sample))
  levels = [level for level, _ in spec.block_sequence()]
  assert levels == [5, 7, 3, 7, 4, 6, 5]


@pytest.mark.parametrize('name,kind', [
    ('mnasnet', 'backbone'), ('spinenet_v2', 'backbone'),
    ('nasfpn', 'decoder'), ('spinenet_scaling', 'scaling'),
    ('autoaugment_segmentation', 'augmentation'),
    ('randaugment_detection', 'augmentation'),
    ('pointpillars', 'backbone'), ('static_unet', 'backbone'),
    ('tunable_unet_encoder', 'backbone'), ('tunable_unet_nasfpn', 'decoder'),
])
def test_search_space_kind(name, kind):
  assert search_spaces.search_space_kind(name) == kind


def test_every_registered_space_has_a_kind():
  for name in search_spaces.list_search_spaces():
    assert (search_spaces.search_space_kind(name)
            in search_spaces.SEARCH_SPACE_KIND_NAMES)


def test_architecture_summaries_name_the_choices():
  def summary(name, sample_index=0):
    space = search_spaces.get_search_space(name)
    sample = _fixture(name)['nas_params_str_samples'][sample_index]
    return search_spaces.architecture_summary(search_spaces.materialize(
        space, search_spaces.dna_from_nas_params(_spec(name), sample)))

  assert summary('randaugment_detection') == (
      'randaugment[detection] num_ops=1 magnitude=10')
  assert summary('spinenet_scaling') == (
      '512px filters=192 scale=1.0 alpha=0.75 repeats=3 head=5x256')
  assert summary('autoaugment_detection').startswith('op4@m3p0.3 op18@m1p0.9 | ')
  assert summary('efficientnet_v2').startswith('m3x1e4se-relu/16 ')
  assert summary('pointpillars') == (
      'feat x1/64 | r5x2e3se/48@1 b5x1e3-relu/128@2 m3x1e3/96@2 '
      'm3x3e3-relu/320@3 r3x3e3se/256@3 | r3x3e3se/128@1 m3x3e1se/128@2 '
      'b5x3e6-relu/128@3')
  assert summary('tunable_unet_encoder', 1) == (
      'b5x1se0.5/24 n3x3se0.5/64 b5x3se0.5id/128 n3x2se0.25/320 swish')
  assert summary('tunable_unet_nasfpn') == (
      'L2+0,2 L4@3,4 L1+0,3 L2+3,6 L4@0,5 L3@3,4')


def test_unknown_name_lists_valid_names():
  with pytest.raises(search_spaces.SearchSpaceError) as e:
    search_spaces.get_search_space('resnet')
  for name in SPACE_NAMES:
    assert name in str(e.value)


def test_user_space_from_module_function():
  space = search_spaces.get_search_space('tests.user_space_example:tiny_space')
  assert pg.dna_spec(space).space_size == 6
  dna = search_spaces.dna_from_nas_params(
      space, '{"width": "1/2 (16)", "depth": "2/3 (3)"}')
  assert search_spaces.materialize(space, dna) == {'width': 16, 'depth': 3}


@pytest.mark.parametrize('name,message', [
    ('tests.no_such_module:fn', 'cannot import'),
    ('tests.user_space_example:no_such_fn', 'no callable'),
    ('tests.user_space_example:deterministic_value', 'decision point'),
])
def test_bad_user_space_is_a_clear_error(name, message):
  with pytest.raises(search_spaces.SearchSpaceError, match=message):
    search_spaces.get_search_space(name)


def _mnasnet_sample():
  return json.loads(_fixture('mnasnet')['nas_params_str_samples'][0])


def _mnasnet_sample_with(path, value):
  """The first mnasnet sample with `path` set to `value`, or removed if None."""
  params = _mnasnet_sample()
  if value is None:
    del params[path]
  else:
    params[path] = value
  return json.dumps(params)


_KERNEL = 'blocks[0].kernel_size'


@pytest.mark.parametrize('space_name,nas_params_str,message', [
    ('nasfpn', json.dumps(_mnasnet_sample()), 'not in this search space'),
    ('mnasnet', '{"blocks[0].num_repeats": ', 'not valid JSON'),
    ('mnasnet', '[]', 'non-empty JSON object'),
    ('mnasnet', _mnasnet_sample_with(_KERNEL, '2/2 (5)'), 'out of range'),
    ('mnasnet', _mnasnet_sample_with(_KERNEL, '0/3 (3)'), '3 candidates'),
    ('mnasnet', _mnasnet_sample_with(_KERNEL, '1/2 (3)'), 'literal 3'),
    ('mnasnet', _mnasnet_sample_with(_KERNEL, 1), 'index/count'),
    ('mnasnet', _mnasnet_sample_with(_KERNEL, None),
     r'lacks decision point.*blocks\[0\]\.kernel_size'),
])
def test_bad_nas_params_str_is_a_one_line_error(space_name, nas_params_str,
                                                 message):
  with pytest.raises(search_spaces.SearchSpaceError, match=message) as e:
    search_spaces.dna_from_nas_params(_spec(space_name), nas_params_str)
  assert '\n' not in str(e.value)


@pytest.mark.parametrize('first,second,message', [
    ('0/5 (0)', '0/5 (0)', 'not distinct'),
    ('3/5 (3)', '2/5 (2)', 'not sorted'),
])
def test_input_offsets_must_be_distinct_and_sorted(first, second, message):
  params = json.loads(_fixture('nasfpn')['nas_params_str_samples'][0])
  params['intermediate_blocks[0].input_offsets[0]'] = first
  params['intermediate_blocks[0].input_offsets[1]'] = second
  with pytest.raises(search_spaces.SearchSpaceError, match=message) as e:
    search_spaces.dna_from_nas_params(_spec('nasfpn'), json.dumps(params))
  assert '\n' not in str(e.value)


def test_import_does_not_load_tensorflow():
  subprocess.run(
      [sys.executable, '-c',
       'import search_spaces, sys; assert "tensorflow" not in sys.modules'],
      cwd=pathlib.Path(search_spaces.__file__).parent, check=True)
