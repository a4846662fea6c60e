"""Proxy-task tools: the pure logic against SciPy and synthetic data."""

import csv
import json
import random

import numpy as np
import pyglove as pg
import pytest
from scipy import interpolate
from scipy import stats

import search_spaces
from proxy_tasks import candidates
from proxy_tasks import kendall
from proxy_tasks import model_selection
from proxy_tasks import proxy_search
from proxy_tasks import reference
from proxy_tasks import variance
from trainer.controller import store as store_lib

def _architectures(count, seed=0):
  spec = pg.dna_spec(search_spaces.get_search_space('mnasnet'))
  rng = random.Random(seed)
  return [search_spaces.nas_params_from_dna(pg.random_dna(spec, rng))
          for _ in range(count)]


# Kendall tau


@pytest.mark.parametrize('seed', range(6))
def test_kendall_tau_matches_scipy_with_ties(seed):
  rng = np.random.default_rng(seed)
  size = int(rng.integers(3, 30))
  # Few distinct values on each side: many ties, some in both at once.
  x = rng.integers(0, 5, size).astype(float)
  y = (x * 0.5 + rng.integers(0, 4, size)).round()
  expected = stats.kendalltau(x, y).statistic
  assert kendall.kendall_tau(list(x), list(y)) == pytest.approx(expected)


def test_kendall_tau_undefined_where_scipy_is_nan():
  assert np.isnan(stats.kendalltau([1, 1, 1], [1, 2, 3]).statistic)
  assert kendall.kendall_tau([1, 1, 1], [1, 2, 3]) is None
  assert kendall.kendall_tau([0.5], [0.7]) is None
  assert kendall.kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0


# Model selection


def test_rounds_follow_the_platform():
  rounds = model_selection.plan_rounds(30, 10, 875700)
  assert [r.num_models for r in rounds] == [30, 25, 20, 15, 10]
  assert [round(r.training_pct, 2) for r in rounds] == [
      3.33, 7.33, 12.33, 19.0, 100.0]
  assert [r.final for r in rounds] == [False] * 4 + [True]
  assert rounds[-1].train_steps == 875700
  assert model_selection.plan_rounds(4, 2, 40) == [
      model_selection.Round(4, 25.0, 10, False),
      model_selection.Round(2, 100.0, 40, True)]
  # Budgets grow strictly even where the schedule is short.
  assert [r.train_steps for r in model_selection.plan_rounds(30, 10, 20)] == [
      1, 2, 3, 4, 20]
  with pytest.raises(ValueError, match='final models'):
    model_selection.plan_rounds(5, 1, 100)
  with pytest.raises(ValueError, match='more than 3 train steps'):
    model_selection.plan_rounds(30, 10, 3)


def test_pruning_keeps_the_extremes_of_accuracy_and_cost():
  rng = np.random.default_rng(0)
  scores = {i: (float(a), float(c))
            for i, (a, c) in enumerate(rng.uniform(0.4, 0.6, (12, 2)))}
  scores.update({'most_accurate': (0.95, 0.5), 'least_accurate': (0.1, 0.45),
                 'cheapest': (0.5, 0.01), 'costliest': (0.55, 0.99)})
  kept = model_selection.prune(scores, len(scores) - 6)
  assert len(kept) == 6
  assert {'most_accurate', 'least_accurate', 'cheapest',
          'costliest'} <= set(kept)


def test_pruning_keeps_an_extreme_the_platform_rule_would_drop():
  # The closest pair is (top, near_top); top's second-nearest neighbour
  # (beside) is closer than near_top's, so the bare rule drops top.
  scores = {'top': (1.0, 0.5), 'near_top': (0.99, 0.5),
            'beside': (0.995, 0.52), 'low': (0.0, 0.0), 'high': (0.5, 1.0)}
  kept = model_selection.prune(scores, 1)
  assert 'top' in kept and len(kept) == 4


def test_pruning_thins_the_densest_region_and_counts_invalid_models():
  scores = {'a': (0.0, 0.0), 'b': (1.0, 1.0), 'c': (0.0, 1.0),
            'd': (1.0, 0.0), 'e': (0.5, 0.5), 'f': (0.51, 0.5),
            'g': (0.5, 0.51), 'broken': None}
  # Removing 3: the invalid model, then two of the tight trio.
  kept = model_selection.prune(scores, 3)
  assert set(kept) >= {'a', 'b', 'c', 'd'}
  assert len(kept) == 5 and 'broken' not in kept
  assert len({'e', 'f', 'g'} & set(kept)) == 1
  # At least two valid models stay, whatever is asked.
  assert len(model_selection.prune(scores, 100)) == 2


def test_cost_is_latency_only_where_every_model_has_it():
  assert model_selection.cost_metric(
      [{'latency_ms': 2.0}, {'latency_ms': 3}]) == 'latency_ms'
  assert model_selection.cost_metric(
      [{'latency_ms': 2.0}, {}]) == 'multi_add_flops_billion'


# Variance and smoothness


def _platform_smoothness(curve):
  """The platform's recipe with SciPy's degree-1 spline."""
  steps, accuracies = (np.array(v, dtype=float) for v in zip(*curve))
  x = (steps - steps.min()) / np.ptp(steps)
  y = (accuracies - accuracies.min()) / np.ptp(accuracies)
  spline = interpolate.splrep(x, y, k=1, s=0)
  samples = np.concatenate([np.linspace(low, high, 10, endpoint=False)
                            for low, high in variance.SEGMENTS])
  slopes = interpolate.splev(samples, spline, der=1)
  return abs(slopes[slopes < 0].sum())


@pytest.mark.parametrize('steps', [
    [100, 200, 300, 400, 500], [0, 70, 90, 100], [13, 40, 41, 77, 150, 151]])
def test_smoothness_matches_a_scipy_spline(steps):
  rng = np.random.default_rng(len(steps))
  curve = list(zip(steps, rng.uniform(0.2, 0.9, len(steps))))
  assert variance.smoothness(curve) == pytest.approx(
      _platform_smoothness(curve))


def test_variance_summary():
  rising = [(20, 0.3), (40, 0.6), (60, 0.8)]
  assert variance.smoothness(rising) == 0.0
  assert variance.smoothness([(20, 0.5)]) is None
  dipping = [(20, 0.3), (40, 0.9), (60, 0.5), (80, 1.0)]
  summary = variance.summary([0.8, 0.6], [rising, dipping])
  assert summary['coefficient_of_variation'] == pytest.approx(
      np.std([0.8, 0.6]) / np.mean([0.8, 0.6]))
  assert summary['variance_passed']
  assert summary['smoothness'] == pytest.approx(
      variance.smoothness(dipping) / 2)
  strict = variance.summary([0.8, 0.6], [rising], 0.1, 0.0)
  assert not strict['variance_passed'] and strict['smoothness_passed']


# Candidates and reference sets


def test_candidates_parse_and_defaults(tmp_path):
  parsed = candidates.parse(
      '[{name: short, params_override: trainer.train_steps=20},'
      ' {name: half, train_data_fraction: 0.5,'
      '  params_override: {task: {model: {input_size: [24, 24, 3]}}}}]')
  assert parsed == [
      candidates.Candidate('short', 'trainer.train_steps=20'),
      candidates.Candidate(
          'half', {'task': {'model': {'input_size': [24, 24, 3]}}}, 0.5)]
  path = tmp_path / 'candidates.json'
  path.write_text(json.dumps([{'name': 'a'}]))
  assert candidates.parse(str(path)) == [candidates.Candidate('a')]
  for bad, message in [('[{name: a}, {name: a}]', 'repeat'),
                       ('[{name: a, steps: 3}]', 'unknown fields'),
                       ('[{name: a, train_data_fraction: 0}]', r'\(0, 1\]'),
                       ('[]', 'non-empty list'), ('nofile.yaml', 'neither')]:
    with pytest.raises(ValueError, match=message):
      candidates.parse(bad)
  names = [c.name for c in candidates.defaults('classification', [32, 32, 3],
                                               64, 2)]
  assert names == ['as_configured', 'half_batch', 'half_data', 'image_24px']
  assert [c.name for c in candidates.defaults('detection', [64, 64, 3], 8, 1)
          ] == ['as_configured', 'half_batch']
  assert candidates.merge({'a': {'b': 1, 'c': 2}}, {'a': {'b': 3}}) == {
      'a': {'b': 3, 'c': 2}}
  assert candidates.train_files_share(['f2', 'f1', 'f3', 'f4'], 0.5) == [
      'f1', 'f2']
  with pytest.raises(ValueError, match='more files'):
    candidates.train_files_share(['f1'], 0.5)


def test_reference_from_files_and_from_a_train_stage(tmp_path):
  params = _architectures(3)
  rows = [{'nas_params_str': p, 'accuracy': a, 'latency_ms': l}
          for p, a, l in zip(params, (0.9, 0.7, 0.8), (3.0, 1.0, 2.0))]
  json_path = tmp_path / 'reference.json'
  json_path.write_text(json.dumps({'models': rows}))
  csv_path = tmp_path / 'reference.csv'
  with open(csv_path, 'w', newline='') as f:
    writer = csv.DictWriter(f, ['nas_params_str', 'accuracy'])
    writer.writeheader()
    writer.writerows({k: r[k] for k in writer.fieldnames} for r in rows)
  from_json = reference.read_file(str(json_path))
  assert [m.accuracy for m in from_json] == [0.9, 0.7, 0.8]
  assert from_json[0].costs == {'latency_ms': 3.0}
  from_csv = reference.read_file(str(csv_path))
  assert [(m.nas_params_str, m.costs) for m in from_csv] == [
      (p, {}) for p in params]
  json_path.write_text(json.dumps(rows[:2]))
  with pytest.raises(ValueError, match='at least 3'):
    reference.read_file(str(json_path))
  json_path.write_text(json.dumps([{'nas_params_str': params[0]}] * 3))
  with pytest.raises(ValueError, match='row 1 has no accuracy'):
    reference.read_file(str(json_path))

  store = store_lib.Store.open(str(tmp_path / 'job'), create=True)
  for p, accuracy in zip(params, (0.9, 0.7, 0.8)):
    t = store.add_trial('train', p)
    store.complete_trial('train', t.id, {
        'top_1_accuracy': accuracy, 'multi_add_flops_billion': 0.002,
        'search_trial_id': 7}, accuracy)
  store.fail_trial('train', store.add_trial('train', params[0]).id, 'boom')
  models = reference.from_trials(store.trials('train'), 'train',
                                 'top_1_accuracy')
  assert [(m.accuracy, m.source) for m in models] == [
      (0.9, 'train trial 1'), (0.7, 'train trial 2'), (0.8, 'train trial 3')]
  assert models[0].costs == {'multi_add_flops_billion': 0.002}


# Proxy search logic


def _reference(accuracies, latencies=None):
  latencies = latencies or [None] * len(accuracies)
  return [reference.ReferenceModel(f'm{i}', a, {} if l is None else
                                   {'latency_ms': l}, '')
          for i, (a, l) in enumerate(zip(accuracies, latencies))]


def test_kendall_tau_by_step_and_the_cheapest_passing_proxy():
  models = _reference([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
  curves = [{10: 0.1, 20: 0.3, 30: 0.90}, {10: 0.3, 20: 0.6, 30: 0.85},
            {10: 0.2, 20: 0.4, 30: 0.80}, {10: 0.4, 20: 0.5, 30: 0.75},
            {10: 0.1, 20: 0.2, 30: 0.70}, None]
  runs = [proxy_search.ProxyRun(c, 0.5, 2.0, {}) if c else None
          for c in curves]
  result = proxy_search.evaluate(models, runs, threshold=0.65)
  by_step = result['kendall_tau_by_step']
  assert [r['step'] for r in by_step] == [10, 20, 30]
  for row in by_step:
    proxy = [c[row['step']] for c in curves if c]
    full = [m.accuracy for m, c in zip(models, curves) if c]
    assert row['kendall_tau'] == pytest.approx(
        stats.kendalltau(proxy, full).statistic)
    assert row['num_models'] == 5
    assert row['train_seconds'] == 0.5 * row['step']
    assert row['train_compute'] == 2.0 * row['step']
  assert by_step[1]['kendall_tau'] < 0.65 <= by_step[2]['kendall_tau']
  assert (result['passed'], result['pass_step'], result['pass_train_compute'],
          result['pass_train_seconds']) == (True, 30, 60.0, 15.0)
  # Under 70 % of the models, no tau.
  few = proxy_search.evaluate(models, runs[:3] + [None] * 3)
  assert few['kendall_tau_by_step'][0]['kendall_tau'] is None
  assert not few['passed']

  def outcome(passed, compute=None, seconds=None):
    return {'passed': passed, 'pass_train_compute': compute,
            'pass_train_seconds': seconds}

  results = {'costly': outcome(True, 30.0, 5.0),
             'failing': outcome(False),
             'untimed': outcome(True, 12.0),  # Its trials stopped.
             'cheap': outcome(True, 12.0, 9.0),
             'uncounted': outcome(True, None, 1.0)}
  # Compute decides, not time; a candidate without counted FLOPs comes
  # last; time breaks a tie, untimed last.
  assert proxy_search.cheapest_passing(results) == 'cheap'
  assert proxy_search.cheapest_passing({'x': results['failing']}) is None


def test_a_proxy_must_also_rank_latency_where_both_sides_measure_it():
  models = _reference([0.9, 0.8, 0.7], latencies=[1.0, 2.0, 3.0])
  curves = [{10: 0.9}, {10: 0.8}, {10: 0.7}]
  aligned = [proxy_search.ProxyRun(c, 1.0, None, {'latency_ms': l})
             for c, l in zip(curves, (1.1, 2.2, 3.3))]
  reversed_ = [proxy_search.ProxyRun(c, 1.0, None, {'latency_ms': l})
               for c, l in zip(curves, (3.0, 2.0, 1.0))]
  assert proxy_search.evaluate(models, aligned)['passed']
  result = proxy_search.evaluate(models, reversed_)
  assert result['cost_kendall_tau'] == {'latency_ms': -1.0}
  assert result['kendall_tau_by_step'][0]['kendall_tau'] == 1.0
  assert not result['passed']
