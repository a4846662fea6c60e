"""The proxy tools take their settings as arguments and run trials through a
given `run_stage`, so their logic runs here on recorded stand-in trials."""

import json
import types

import pytest

from proxy_tasks import tools
from trainer import spec as spec_lib
from trainer.controller import store as store_lib

ARCH = '{"blocks[0].num_repeats": "0/3 (1)"}'


def _prepare(validation_interval):
  def prepare(spec):
    trainer = types.SimpleNamespace(train_steps=40, steps_per_loop=10,
                                    validation_interval=validation_interval)
    return types.SimpleNamespace(
        params=types.SimpleNamespace(trainer=trainer),
        quality_metric='top_1_accuracy', spec=spec)
  return prepare


def _trial(trial_id, curve, status='completed'):
  evaluations = [{'step': 10 * (i + 1), 'top_1_accuracy': a}
                 for i, a in enumerate(curve)]
  return store_lib.Trial(
      stage=tools.VARIANCE_STAGE, id=trial_id, nas_params_str=ARCH,
      status=status,
      metrics={'top_1_accuracy': curve[-1], 'evaluations': evaluations},
      reward=curve[-1], error=None, proposed_after=0, feedback_seq=trial_id,
      attempts=1, created_at=0.0, finished_at=1.0)


def test_variance_runs_the_model_n_times_with_learning_curves(tmp_path):
  calls = []
  curves = {1: [0.5, 0.6, 0.7, 0.8], 2: [0.5, 0.4, 0.7, 0.9],
            3: [0.6, 0.6, 0.6, 0.6]}

  def run_stage(template, proposals, customize, identity_extra):
    calls.append((template, proposals, customize, identity_extra))
    return [_trial(i, curves[i]) for i in (1, 2, 3)]

  template = spec_lib.TrialSpec('mnasnet', ARCH, stage=tools.VARIANCE_STAGE,
                                seed=4)
  # The config evaluates only at the end: the tool asks for a learning curve.
  result = tools.measure_variance(str(tmp_path), template, 3, 0.5, 1.0,
                                  run_stage, _prepare(40))
  [(ran, proposals, customize, extra)] = calls
  assert proposals == [ARCH] * 3 and customize is None
  assert extra == {'proxy_model': ARCH}
  assert json.loads(ran.params_override) == {
      'trainer': {'validation_interval': 10}}
  assert ran.stage == tools.VARIANCE_STAGE and ran.nas_params_str == ''
  assert [r['seed'] for r in result['runs']] == [
      spec_lib.trial_seed(4, i) for i in (1, 2, 3)]
  assert [r['accuracy'] for r in result['runs']] == [0.8, 0.9, 0.6]
  # Only run 2's curve drops.
  assert [r['smoothness'] > 0 for r in result['runs']] == [False, True, False]
  with open(tmp_path / tools.VARIANCE_FILE) as f:
    assert json.load(f) == json.loads(json.dumps(result))


def test_variance_needs_two_runs(tmp_path):
  with pytest.raises(ValueError, match='at least 2'):
    tools.measure_variance(str(tmp_path), spec_lib.TrialSpec('mnasnet', ARCH),
                           1, 0.5, 1.0, None, _prepare(10))
