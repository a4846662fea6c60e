"""The design-space analysis (trainer/design_space.py): EDFs, the KS
statistic, the quantised linear width fit, the JSON and PNG it writes, the
report section; and the mode's flag checks and sampling."""

import json
import random

import numpy as np
import pytest

import search_spaces
from trainer import artifacts
from trainer import design_space
from trainer.modes import design_space as mode
from trainer.modes.common import UsageError
from trainer.report import data
from trainer.report import page


def test_edf_is_the_fraction_below():
  errors = [0.5, 0.1, 0.2, 0.2]
  assert list(design_space.edf(errors, [0.1, 0.15, 0.2, 0.3, 0.6])) == [
      0.0, 0.25, 0.25, 0.75, 1.0]
  curve = design_space.edf_curve(errors)
  assert curve == {'error': [0.1, 0.2, 0.2, 0.5],
                   'fraction': [0.25, 0.5, 0.75, 1.0]}


def test_ks_statistic_hand_computed():
  # Pooled 0.1 0.2 0.25 0.3 0.35: F_a 1/3 2/3 2/3 1 1, F_b 0 0 1/2 1/2 1;
  # |F_a - F_b| peaks at 0.2: 2/3.
  assert design_space.ks_statistic([0.1, 0.2, 0.3], [0.25, 0.35]) == (
      pytest.approx(2 / 3))
  assert design_space.ks_statistic([0.1, 0.2], [0.2, 0.1]) == 0.0
  assert design_space.ks_statistic([0.1, 0.2], [0.3, 0.4]) == 1.0
  assert np.isnan(design_space.ks_statistic([], [0.3]))


def test_dominance_is_an_edf_at_or_above_the_other_everywhere():
  better, worse = [0.1, 0.2, 0.3], [0.15, 0.25, 0.35]
  assert design_space.dominant(better, worse) == 0
  assert design_space.dominant(worse, better) == 1
  # Crossing EDFs: a has the best model, b more good ones.
  assert design_space.dominant([0.05, 0.5, 0.6], [0.1, 0.15, 0.2]) is None
  assert design_space.dominant([0.1, 0.2], [0.2, 0.1]) is None  # Equal.
  assert design_space.dominant([], [0.1]) is None
  # Ties at shared errors still count as at or above.
  assert design_space.dominant([0.1, 0.2], [0.1, 0.3]) == 0


def test_ks_statistic_matches_scipy():
  stats = pytest.importorskip('scipy.stats')
  rng = random.Random(3)
  for _ in range(20):
    a = [round(rng.random(), 2) for _ in range(rng.randint(1, 30))]
    b = [round(rng.random(), 2) for _ in range(rng.randint(1, 30))]
    assert design_space.ks_statistic(a, b) == pytest.approx(
        stats.ks_2samp(a, b).statistic)


def test_linear_fit_is_least_squares():
  assert design_space.fit_linear([24 + 36 * j for j in range(10)]) == (
      pytest.approx(24), pytest.approx(36))
  w0, wa = design_space.fit_linear([10, 12, 20])
  # Mean j 1, mean width 14: slope (4 + 6) / 2 = 5, intercept 14 - 5 = 9.
  assert (w0, wa) == (pytest.approx(9), pytest.approx(5))


@pytest.mark.parametrize('depth,w0,wa,wm', [(13, 24, 36.0, 2.5),
                                            (22, 48, 32.0, 2.0),
                                            (16, 80, 48.0, 1.75)])
def test_width_fit_recovers_a_regnet(depth, w0, wa, wm):
  spec = search_spaces.RegNetSpec(depth=depth, w0=w0, wa=wa, wm=wm,
                                  group_width=8)
  widths = design_space.block_widths(spec)
  assert len(widths) == depth
  fit = design_space.fit_quantised_linear(widths)
  assert fit['e_fit'] == 0.0
  assert fit['w0'] == w0  # The first block's width is w0.
  # Many (w0, wa, wm) give the same network: the fitted triple builds it.
  refit = search_spaces.RegNetSpec(depth=depth, w0=int(fit['w0']),
                                   wa=fit['wa'], wm=fit['wm'], group_width=8)
  assert refit.stage_specs() == spec.stage_specs()
  assert list(design_space.quantised_widths(
      depth, fit['w0'], fit['wa'], fit['wm'])) == widths


@pytest.mark.parametrize('depth,w0,wa,wm', [(22, 48, 32.0, 2.0),
                                            (16, 80, 48.0, 1.75)])
def test_width_fit_recovers_w0_wa_wm(depth, w0, wa, wm):
  """Where no other grid triple's line is closer to the widths (least
  squares tie-break), the fit finds the generating (w0, wa, wm) itself
  (for d=13 w0=24 wa=36 wm=2.5, wa=40 builds the same widths and wins)."""
  spec = search_spaces.RegNetSpec(depth=depth, w0=w0, wa=wa, wm=wm,
                                  group_width=8)
  fit = design_space.fit_quantised_linear(design_space.block_widths(spec))
  assert (fit['w0'], fit['wa'], fit['wm'], fit['e_fit']) == (w0, wa, wm, 0.0)
  assert fit['linear_wa'] > 0 and fit['linear_e_fit'] > 0


def test_width_fit_of_widths_off_the_rule_has_an_error():
  fit = design_space.fit_quantised_linear([64] * 3 + [32] * 3 + [512] * 2)
  assert fit['e_fit'] > 0.1


def test_block_widths_of_an_anynet_and_of_other_architectures():
  spec = search_spaces.AnyNetSpec(stages=[
      search_spaces.AnyNetStageSpec(depth=2, width=64, bottleneck_ratio=1,
                                    group_width=8),
      search_spaces.AnyNetStageSpec(depth=1, width=128, bottleneck_ratio=1,
                                    group_width=8)])
  assert design_space.block_widths(spec) == [64, 64, 128]
  assert design_space.block_widths({'not': 'staged'}) is None


def _trial(trial_id, accuracy, widths=None, status='completed', flops=0.01,
           params=1000):
  metrics = ({} if accuracy is None else
             {'top_1_accuracy': accuracy, 'multi_add_flops_billion': flops,
              'params': params})
  return {'id': trial_id, 'status': status, 'metrics': metrics,
          'nas_params_str': '{}', 'widths': widths}


def _spaces():
  regnet = design_space.block_widths(search_spaces.RegNetSpec(
      depth=13, w0=24, wa=36.0, wm=2.5, group_width=8))
  return [
      {'name': 'a', 'stage': 'design_space:a', 'quality_metric':
       'top_1_accuracy', 'trials': [
           _trial(1, 0.9, regnet, flops=0.02, params=2000),
           _trial(2, 0.7, [64, 128]), _trial(3, 0.8, [32, 32, 64]),
           _trial(4, None, status='failed')]},
      {'name': 'b', 'stage': 'design_space:b', 'quality_metric':
       'top_1_accuracy', 'trials': [_trial(1, 0.75), _trial(2, 0.65)]},
  ]


def test_analyse_and_write(tmp_path):
  result = design_space.analyse(_spaces(), top=0.5, max_top=5)
  a, b = result['spaces']
  assert (a['n'], a['failed'], a['trials']) == (3, 1, 4)
  assert a['min_error'] == pytest.approx(0.1)
  assert a['edf']['error'] == pytest.approx([0.1, 0.2, 0.3])
  assert a['flops']['values'] == [0.02, 0.01, 0.01]
  assert a['params']['max'] == 2000
  # ceil(0.5 * 3) = 2 best models fitted: trial 1 (a RegNet) and trial 3.
  assert [f['trial_id'] for f in a['width_fit']['fits']] == [1, 3]
  assert a['width_fit']['fits'][0]['e_fit'] == 0.0
  assert set(a['width_fit']['median']) >= {'w0', 'wa', 'wm', 'e_fit'}
  assert 'skipped' in b['width_fit']  # No widths: not a staged space.
  # Errors a: 0.1 0.2 0.3, b: 0.25 0.35 (the hand-computed case).
  [ks] = result['ks']
  assert (ks['a'], ks['b']) == ('a', 'b')
  assert ks['statistic'] == pytest.approx(2 / 3)
  assert ks['dominant'] == 'a'

  json_path, png_path = design_space.write(str(tmp_path), result)
  assert json.loads(open(json_path).read()) == json.loads(json.dumps(result))
  assert open(png_path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'

  html = page.render(str(tmp_path), [])
  assert 'id="design_space"' in html and 'id="design-space-ks"' in html
  assert 'data:image/png;base64,' in html and 'no-trials' not in html
  assert data.read_result(str(tmp_path), design_space.RESULT_FILE)['ks'][0][
      'statistic'] == (
      pytest.approx(2 / 3))


def test_report_without_a_design_space_result(tmp_path):
  assert data.read_result(str(tmp_path), design_space.RESULT_FILE) is None
  assert 'id="design_space"' not in page.render(str(tmp_path), [])


def test_design_space_stages_and_their_dirs():
  stage = artifacts.design_space_stage('tests.user_space_example:space')
  assert artifacts.is_stage(stage) and artifacts.is_stage('search')
  assert not artifacts.is_stage('design_space:')
  assert not artifacts.is_stage('nope')
  assert artifacts.trial_dir('/j', stage, 3) == (
      '/j/design_space_trials_tests.user_space_example_space/3')
  assert artifacts.trial_dir('/j', 'design_space:regnet_x', 1) == (
      '/j/design_space_trials_regnet_x/1')


def test_spaces_flag():
  assert mode.spaces_flag('anynet_x, regnet_x') == ['anynet_x', 'regnet_x']
  for bad, message in (('anynet_x', 'two or more'), ('', 'two or more'),
                       ('regnet_x,regnet_x', 'twice'),
                       ('regnet_x,no_such_space', 'unknown search space')):
    with pytest.raises(ValueError, match=message):
      mode.spaces_flag(bad)
  with pytest.raises(UsageError):
    mode.spaces_flag('a:b,a_b')


def test_samples_are_seeded_and_extend():
  three = mode.sample('regnet_x', 3, seed=5)
  assert mode.sample('regnet_x', 2, seed=5) == three[:2]
  assert mode.sample('regnet_x', 3, seed=6) != three
  assert mode.sample('anynet_x', 3, seed=5) != three
