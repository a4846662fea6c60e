"""Proxy search that stops: the τ bound against brute force, the verdict
against the full-budget analysis on synthetic curves, and the rule stopping
stand-in trial processes through the real controller."""

import itertools
import json
import random
import textwrap

import pytest

import search_spaces
from proxy_tasks import kendall
from proxy_tasks import proxy_search
from proxy_tasks import reference
from proxy_tasks import stopping
from trainer import algorithms
from trainer import artifacts
from trainer import objective as objective_lib
from trainer.controller import executors
from trainer.controller import search
from trainer.controller import store as store_lib

STEPS = [10, 20, 30, 40]
STAGE = 'proxy_search'


def _reference(accuracies, latencies=None):
  latencies = latencies or [None] * len(accuracies)
  return [reference.ReferenceModel(f'm{i}', a, {} if l is None else
                                   {'latency_ms': l}, '')
          for i, (a, l) in enumerate(zip(accuracies, latencies))]


def _run(curve, training=False, costs=None):
  return proxy_search.ProxyRun(curve, None, None, costs or {}, training)


@pytest.mark.parametrize('seed', range(30))
def test_tau_bounds_hold_whatever_the_unknown_models_record(seed):
  rng = random.Random(seed)
  size = rng.randint(3, 6)
  full = [rng.choice([0.5, 0.6, 0.7, 0.8]) for _ in range(size)]  # Ties.
  known = [rng.choice([0.1, 0.2, 0.3]) for _ in range(size)]
  unknown = rng.sample(range(size), rng.randint(1, 2))
  partial = [None if i in unknown else x for i, x in enumerate(known)]
  most = proxy_search.tau_upper_bound(partial, full)
  least = proxy_search.tau_upper_bound(
      [None if x is None else -x for x in partial], full)
  # Each unknown model records a value below, at, between or above the
  # known ones, or drops out (None).
  reachable = []
  for filled in itertools.product(
      [None, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35], repeat=len(unknown)):
    proxy = list(partial)
    for i, value in zip(unknown, filled):
      proxy[i] = value
    tau = kendall.kendall_tau(*zip(*[(x, y) for x, y in zip(proxy, full)
                                     if x is not None]))
    if tau is not None:
      reachable.append(tau)
  if most is None:
    assert not reachable
  else:
    assert -least - 1e-12 <= min(reachable) <= max(reachable) <= most + 1e-12
  # With every value known the bound is τ.
  assert proxy_search.tau_upper_bound(known, full) == kendall.kendall_tau(
      known, full)


def _synthetic(rng, size):
  """Reference accuracies and proxy curves tracking them more or less."""
  full = [round(rng.random(), 2) for _ in range(size)]
  tracking = rng.choice([0.0, 0.5, 1.0, 2.0])
  curves = [{s: round(tracking * a * s / STEPS[-1] + 0.3 * rng.random(), 2)
             for s in STEPS} for a in full]
  return _reference(full), curves


def _reveals(curves, parallel):
  """The runs as the controller sees them while the trials train: all
  models a step at a time (parallel), or one model after the other."""
  if parallel:
    for k in range(1, len(STEPS) + 1):
      yield [_run({s: c[s] for s in STEPS[:k]}, k < len(STEPS))
             for c in curves]
    return
  for model in range(len(curves)):
    for k in range(1, len(STEPS) + 1):
      yield ([_run(c) for c in curves[:model]] +
             [_run({s: curves[model][s] for s in STEPS[:k]},
                   k < len(STEPS))] +
             [_run({}, True) for _ in curves[model + 1:]])


@pytest.mark.parametrize('parallel', [True, False])
def test_the_verdict_agrees_with_the_full_budget_analysis(parallel):
  """Stopped at its first verdict, a candidate passes (or not) at the step
  where training every trial to the end passes it, on the curves so far and
  on the whole curves."""
  rng = random.Random(5)
  early = {proxy_search.PASSED: 0, proxy_search.CANNOT_PASS: 0}
  for _ in range(150):
    models, curves = _synthetic(rng, rng.randint(3, 8))
    full = proxy_search.evaluate(models, [_run(c) for c in curves], 0.65)
    states = list(_reveals(curves, parallel))
    for index, runs in enumerate(states):
      decided = proxy_search.verdict(models, runs, STEPS, 0.65)
      if decided is not None:
        break
    stopped = proxy_search.evaluate(models, runs, 0.65)
    assert (decided == proxy_search.PASSED) == full['passed']
    assert (stopped['passed'], stopped['pass_step']) == (
        full['passed'], full['pass_step'])
    if index < len(states) - 1:
      early[decided] += 1
  # Passing stopped trials before their end in some cases; so did failing
  # where models train one after another (run together, none has evaluated
  # the later steps, where any τ may still come).
  assert early[proxy_search.PASSED] > 0, early
  assert (early[proxy_search.CANNOT_PASS] > 0) != parallel, early


def test_latency_gating_leaves_only_the_cannot_pass_stop():
  """Trials measure latency at their end: a pass cannot stop them early."""
  curves = [{10: 0.9}, {10: 0.8}, {10: 0.7}]
  runs = [_run(c, training=True) for c in curves]
  assert proxy_search.verdict(_reference([0.9, 0.8, 0.7]), runs, [10, 20],
                              0.65) == proxy_search.PASSED
  gated = _reference([0.9, 0.8, 0.7], latencies=[1.0, 2.0, 3.0])
  assert proxy_search.verdict(gated, runs, [10, 20], 0.65) is None
  backwards = _reference([0.7, 0.8, 0.9], latencies=[1.0, 2.0, 3.0])
  assert proxy_search.verdict(backwards, [_run(c) for c in curves], [10],
                              0.65) == proxy_search.CANNOT_PASS


def test_evaluation_steps_as_the_trials_number_them():
  assert proxy_search.evaluation_steps(50, 20) == [20, 40, 50]
  assert proxy_search.evaluation_steps(40, 20) == [20, 40]
  assert proxy_search.evaluation_steps(40, 40) == [40]


# A stand-in proxy trial: writes its first evaluations, waits `hang` seconds
# (the rule should stop it meanwhile), then writes the rest and metrics.json.
_FAKE_TRIAL = textwrap.dedent('''
    import json, os, sys, time
    trial_dir, plan = sys.argv[1], json.loads(sys.argv[2])
    evaluations = []

    def evaluate(step, accuracy):
      evaluations.append({'top_1_accuracy': accuracy, 'step': step})
      with open(os.path.join(trial_dir, 'evaluations.jsonl'), 'a') as f:
        f.write(json.dumps(evaluations[-1]) + '\\n')

    for step, accuracy in plan['now']:
      evaluate(step, accuracy)
    time.sleep(plan['hang'])
    for step, accuracy in plan['later']:
      evaluate(step, accuracy)
    with open(os.path.join(trial_dir, 'metrics.json'), 'w') as f:
      json.dump({'top_1_accuracy': evaluations[-1]['top_1_accuracy'],
                 'evaluations': evaluations, 'train_steps': 40,
                 'train_and_eval_s': 1.0}, f)
''')


def _plan(curve, evaluated_now, hang):
  steps = sorted(curve)
  return {'now': [(s, curve[s]) for s in steps[:evaluated_now]],
          'later': [(s, curve[s]) for s in steps[evaluated_now:]],
          'hang': hang}


def test_the_rule_stops_a_candidate_once_it_passes_or_cannot(tmp_path):
  """Candidate 1's three trials run at once and rank the reference at step
  20: all stop there. Candidate 2's first two trials rank it backwards at
  every step, so its third cannot make τ reach the threshold: it stops
  before its first evaluation."""
  job_dir = str(tmp_path)
  models = _reference([0.9, 0.8, 0.7])
  ranked_at_20 = [{10: 0.1, 20: 0.5, 30: 0.6, 40: 0.7},
                  {10: 0.2, 20: 0.4, 30: 0.5, 40: 0.6},
                  {10: 0.3, 20: 0.3, 30: 0.4, 40: 0.5}]
  backwards = [{s: 0.1 for s in STEPS}, {s: 0.2 for s in STEPS},
               {s: 0.9 for s in STEPS}]
  plans = {1: _plan(ranked_at_20[0], 2, 60), 2: _plan(ranked_at_20[1], 2, 60),
           3: _plan(ranked_at_20[2], 2, 60), 4: _plan(backwards[0], 4, 0),
           5: _plan(backwards[1], 4, 0), 6: _plan(backwards[2], 0, 60)}
  executor = executors.LocalExecutor()

  def launch(trial):
    trial_dir = artifacts.trial_dir(job_dir, STAGE, trial.id)
    return executor.start(['-c', _FAKE_TRIAL, trial_dir,
                           json.dumps(plans[trial.id])], trial_dir)

  space = search_spaces.get_search_space('mnasnet')
  architectures = [search_spaces.nas_params_from_dna(
      search_spaces.dna_spec(space).first_dna())] * 6
  rule = stopping.CandidateStopping(job_dir, STAGE, models, [STEPS] * 2,
                                    'top_1_accuracy', 0.65)
  store = store_lib.Store.open(job_dir, create=True)
  top1 = objective_lib.Objective('top_1_accuracy')
  # As the tool runs it: a part per candidate, the second sequential.
  for count, parallel in ((3, 3), (6, 1)):
    trials = search.Search(
        store, STAGE, space, algorithms.FixedProposals(
            [search_spaces.dna_from_nas_params(space, p)
             for p in architectures[:count]]),
        launch, top1, count, 0, progress=lambda line: None,
        max_parallel_trials=parallel, early_stopping=rule).run()

  passing, failing = trials[:3], trials[3:]
  assert [t.status for t in passing] == ['stopped'] * 3
  for t, curve in zip(passing, ranked_at_20):
    assert [e['step'] for e in t.metrics['evaluations']] == [10, 20]
    assert t.reward == curve[20]
    assert t.finished_at - t.created_at < 30  # Not the 60 s wait.
  result = proxy_search.evaluate(
      models, [stopping.recorded_run(t, 'top_1_accuracy') for t in passing],
      0.65)
  assert (result['passed'], result['pass_step']) == (True, 20)
  # Trial 5 may be stopped at its last evaluation, just before it ends.
  assert failing[0].status == 'completed'
  assert failing[1].status in ('completed', 'stopped')
  assert len(failing[1].metrics['evaluations']) == 4
  assert (failing[2].status, failing[2].metrics['evaluations'],
          failing[2].reward) == ('stopped', [], None)
  assert failing[2].finished_at - failing[2].created_at < 30
