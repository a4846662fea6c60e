"""Hardware-aware search: the FLOPs budget screen, latency and memory in the
reward, and median early stopping, through the real controller."""

import json
import os
import textwrap

import pytest

import search_spaces
from tests.conftest import TINY_OVERRIDE, TINY_STEPS, cli, search_flags
from trainer import algorithms
from trainer import artifacts
from trainer.controller import early_stopping
from trainer.controller import executors
from trainer import objective as objective_lib
from trainer.controller import search
from trainer.controller import store as store_lib


def test_trials_stream_their_evaluations(search_job):
  job_dir, _ = search_job
  trial_dir = artifacts.trial_dir(job_dir, 'search', 1)
  streamed = early_stopping.read_evaluations(trial_dir)
  with open(os.path.join(trial_dir, artifacts.METRICS_FILE)) as f:
    metrics = json.load(f)
  assert [e['step'] for e in streamed] == [40]
  assert streamed == metrics['evaluations']
  assert streamed[-1]['top_1_accuracy'] == metrics['top_1_accuracy']


def test_over_budget_candidates_are_not_trained(tmp_path):
  # No data named: the built-in default, the generated shapes, is written.
  result = cli(*search_flags(tmp_path, 2, '--max_flops_multi_adds_billion=1e-6',
                             override=TINY_STEPS), check=True)
  assert os.listdir(tmp_path / 'data') == ['shapes_64']
  assert (tmp_path / 'data' / 'shapes_64' / 'COMPLETE').exists()
  trials = store_lib.Store.open(str(tmp_path), read_only=True).trials('search')
  assert [(t.id, t.status, t.reward) for t in trials] == [
      (1, 'infeasible', 0.0), (2, 'infeasible', 0.0)]
  for t in trials:
    assert t.metrics['multi_add_flops_billion'] > 1e-6
    assert 'exceed the budget 1e-06 B' in t.error
    # Never launched: no trial process wrote anything.
    assert not os.path.exists(artifacts.trial_dir(str(tmp_path), 'search', t.id))
  assert 'trial   1/2 infeasible' in result.stdout
  assert 'no completed trial yet' in result.stdout


def test_latency_and_memory_targets_measure_and_scale_the_reward(
    measured_search):
  job_dir, _ = measured_search  # --target_device_latency_ms=0.001, ...
  [t] = store_lib.Store.open(job_dir, read_only=True).trials('search')
  m = t.metrics
  assert t.status == 'completed'
  assert m['latency_ms'] > 0.001 and m['latency_p90_ms'] >= m['latency_ms']
  # The CV is reported; 2 cores shared with other work make the tail long.
  assert 0 <= m['latency_cv'] < 2 and m['memory_mb'] > 0
  # Trained and measured on this machine's CPU, each recorded on its own.
  assert (m['device'], m['latency_device']) == ('CPU', 'CPU')
  # Hard MnasNet reward: latency over its target scales, memory under does not.
  assert t.reward == pytest.approx(
      m['top_1_accuracy'] * 0.001 / m['latency_ms'])
  trial_dir = artifacts.trial_dir(job_dir, 'search', 1)
  assert os.path.isdir(os.path.join(trial_dir, 'saved_model'))
  # Measured after the training process ended: its metrics line (no latency)
  # is in the trial log before the measuring process's final one.
  with open(os.path.join(trial_dir, artifacts.LOG_FILE)) as f:
    reports = [json.loads(line) for line in f if line.startswith('{"')]
  assert ['latency_ms' in r for r in reports] == [False, True]
  assert reports[0]['top_1_accuracy'] == m['top_1_accuracy']


# A stand-in trial process: writes its evaluations (accuracy per step) one by
# one, then either finishes (metrics.json) or hangs until killed.
_FAKE_TRIAL = textwrap.dedent('''
    import json, os, sys, time
    trial_dir, accuracies, hang = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    evaluations = []
    for step, accuracy in enumerate(accuracies, 1):
      record = {'top_1_accuracy': accuracy, 'step': 10 * step}
      evaluations.append(record)
      with open(os.path.join(trial_dir, 'evaluations.jsonl'), 'a') as f:
        f.write(json.dumps(record) + '\\n')
      time.sleep(0.3)
    if hang == 'hang':
      time.sleep(120)
    metrics = dict(evaluations[-1], evaluations=evaluations)
    del metrics['step']
    with open(os.path.join(trial_dir, 'metrics.json'), 'w') as f:
      json.dump(metrics, f)
''')


def test_median_rule_stops_a_lagging_trial(tmp_path):
  """Trial 2 lags the finished trial 1 at step 10 and is killed there; trial
  3 keeps up and runs to its end."""
  plans = {1: ([0.6, 0.9], 'finish'), 2: ([0.1, 0.2], 'hang'),
           3: ([0.7, 0.95], 'finish')}
  executor = executors.LocalExecutor()

  def launch(trial):
    trial_dir = str(tmp_path / 'trials' / str(trial.id))
    accuracies, hang = plans[trial.id]
    return executor.start(['-c', _FAKE_TRIAL, trial_dir,
                           json.dumps(accuracies), hang], trial_dir)

  quality = objective_lib.Objective('top_1_accuracy')
  store = store_lib.Store.open(str(tmp_path), create=True)
  trials = search.Search(
      store, 'search', search_spaces.get_search_space('mnasnet'),
      algorithms.make_algorithm('random', 0), launch, quality, 3, 0,
      progress=lambda line: None,
      early_stopping=early_stopping.MedianStopping(10, quality.quality,
                                                   min_trials=1)).run()
  assert [(t.id, t.status) for t in trials] == [
      (1, 'completed'), (2, 'stopped'), (3, 'completed')]
  stopped = trials[1]
  assert stopped.metrics['evaluated_step'] == 10
  assert stopped.reward == pytest.approx(0.1)
  assert stopped.feedback_seq == 1  # Fed back like any result.
  assert stopped.finished_at - stopped.created_at < 30  # Not the 120 s hang.
  assert trials[2].reward == pytest.approx(0.95)


def test_median_rule_waits_for_enough_peers():
  rule = early_stopping.MedianStopping(
      10, objective_lib.Objective('top_1_accuracy').quality, min_trials=2)
  assert rule.check('/no/such/dir', []) is None  # No evaluation yet.
  with pytest.raises(ValueError):
    early_stopping.MedianStopping(
        0, objective_lib.Objective('top_1_accuracy').quality)


def test_early_stopping_needs_an_intermediate_evaluation(tmp_path):
  result = cli(*search_flags(tmp_path, 2, '--early_stopping=median'))
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith(
      'nas-garden: error: --early_stopping needs an evaluation at or after '
      'step 40 and before the last')
  assert not os.path.exists(tmp_path / store_lib.STORE_FILE)


@pytest.mark.slow  # Real trials; test_search's resume test covers them fast.
@pytest.mark.parametrize('algorithm', ['ppo', 'nsga2'])
def test_new_algorithms_run_real_trials_and_resume(tmp_path, algorithm):
  """A real 1-trial search, then the same command extended to 2 trials."""
  extra = ('--algorithm=' + algorithm, '--multi_objective_cost=flops')
  cli(*search_flags(tmp_path, 1, *extra), check=True)
  resumed = cli(*search_flags(tmp_path, 2, *extra), check=True)
  assert 'resuming: 1 trials in the store' in resumed.stdout
  trials = store_lib.Store.open(str(tmp_path), read_only=True).trials('search')
  assert [(t.id, t.status, t.feedback_seq) for t in trials] == [
      (1, 'completed', 0), (2, 'completed', 1)]
  assert trials[0].nas_params_str != trials[1].nas_params_str
