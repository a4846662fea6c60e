"""The trial spec, outcome and objective: the vocabulary the controller and
the trial process share, importable without TensorFlow."""

import copy
import os
import signal
import subprocess
import sys

from absl import flags
import pytest

from tests.conftest import REPO
from trainer import flags as nas_flags
from trainer import objective as objective_lib
from trainer import outcome
from trainer import spec as spec_lib


def test_importing_the_light_modules_leaves_tensorflow_out():
  """The trial spec, outcome, objective, file helpers and the Vertex
  environment load without TensorFlow (a job's controller and the platform
  flag translation import them)."""
  code = ('import sys\n'
          'from trainer import spec, outcome, objective, fileio, vertex\n'
          'from trainer import platform_flags\n'
          'loaded = sorted(m for m in sys.modules if m.split(".")[0] in '
          '("tensorflow", "tf_keras", "official"))\n'
          'print(loaded)\n'
          'assert not loaded, loaded\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == '[]'


SPEC = spec_lib.TrialSpec(
    search_space='randaugment_detection', nas_params_str='{"num_ops": "1/3"}',
    experiment='nas_retinanet', config_file='/c/a.yaml,/c/b.yaml',
    params_override='{"trainer": {"train_steps": 4}}', train_data='/d/t-*',
    eval_data='/d/e-*', base_search_space='spinenet',
    base_nas_params_str='{"x": "0/2"}', stage='augment_search', seed=7,
    runtime=spec_lib.Runtime('mirrored', '', True, 2),
    init_checkpoint='/ckpt/dir')


def test_to_argv_and_from_flags_round_trip_through_the_real_flags():
  argv = SPEC.to_argv('/job', 3, measure_latency=True, search_trial_id=5)
  assert argv[:3] == ['-m', 'trainer.task', '--mode=trial']
  values = copy.deepcopy(flags.FLAGS)
  values(['nas-garden', *argv[3:]])
  args = nas_flags.Args.parsed(values)
  assert spec_lib.TrialSpec.from_flags(args) == SPEC
  assert (args.job_dir, args.trial_id, args.measure_latency,
          args.search_trial_id) == ('/job', 3, True, 5)
  assert args.given('base_search_space') and not args.given('top_k')


def test_json_round_trip_and_unknown_fields():
  assert spec_lib.TrialSpec.from_dict(SPEC.to_dict()) == SPEC
  with pytest.raises(ValueError, match='unknown trial spec fields: colour'):
    spec_lib.TrialSpec.from_dict(dict(SPEC.to_dict(), colour='red'))


def test_identity_is_the_spec_without_what_varies_per_trial_or_run():
  identity = SPEC.identity('task: {}\n')
  assert identity == {
      'search_space': 'randaugment_detection', 'experiment': 'nas_retinanet',
      'params_override': SPEC.params_override, 'train_data': '/d/t-*',
      'eval_data': '/d/e-*', 'base_search_space': 'spinenet',
      'base_nas_params_str': '{"x": "0/2"}', 'stage': 'augment_search',
      'seed': 7, 'config': 'task: {}\n'}
  # Another architecture, runtime or config path: the same stage.
  other = SPEC.replace(nas_params_str='{}', runtime=spec_lib.Runtime(),
                       config_file='/elsewhere.yaml')
  assert other.identity('task: {}\n') == identity


def test_trial_seed_rule():
  trial = SPEC.for_trial(11, '{"a": "0/2"}')
  assert trial.seed == spec_lib.trial_seed(7, 11) == 7 * 100003 + 11
  assert trial.nas_params_str == '{"a": "0/2"}'
  assert SPEC.for_trial(12, '{}').seed != trial.seed


def test_nas_params_flag_reads_a_file(tmp_path):
  path = tmp_path / 'arch.json'
  path.write_text('{"a": "1/2"}')
  assert spec_lib.read_nas_params(str(path)) == '{"a": "1/2"}'
  with pytest.raises(ValueError, match='neither JSON nor a file'):
    spec_lib.read_nas_params(str(tmp_path / 'missing.json'))


class ResourceExhaustedError(Exception):
  """Named as TensorFlow's out-of-memory error."""


@pytest.mark.parametrize('exception, kind, message', [
    (ResourceExhaustedError('OOM when allocating\n tensor'), outcome.OOM,
     'out of memory: OOM when allocating tensor'),
    (RuntimeError('The loss value is NaN after training loop'), outcome.NAN,
     'The loss value is NaN after training loop'),
    (ValueError('bad\nconfig'), outcome.CRASH, 'bad config'),
    (KeyError(), outcome.CRASH, 'KeyError'),
])
def test_errors_get_their_kind(exception, kind, message):
  assert outcome.error_of(exception) == outcome.TrialError(kind, message)


def test_written_outcomes_read_back(tmp_path):
  error = outcome.TrialError(outcome.NAN, 'The loss value is NaN')
  outcome.write_error(str(tmp_path), error)
  assert outcome.read(str(tmp_path), 1) == outcome.Outcome(
      outcome.FAILED, None, error)
  outcome.write_metrics(str(tmp_path), {'AP': 0.5})
  assert outcome.read(str(tmp_path), 0) == outcome.completed({'AP': 0.5})
  empty = tmp_path / 'empty'
  empty.mkdir()
  assert outcome.read(str(empty), -signal.SIGKILL).error.kind == outcome.OOM
  assert outcome.read(str(empty), 3) == outcome.failed(
      outcome.CRASH, 'exited with code 3 (see trial.log)')


def test_objective_feedback_single_and_multi():
  metrics = {'AP': 0.4, 'multi_add_flops_billion': 2.0, 'latency_ms': 5.0}
  single = objective_lib.Objective('AP', targets={objective_lib.FLOPS: 1.0})
  assert single.reward(metrics) == pytest.approx(0.2)
  assert single.feedback(outcome.COMPLETED, metrics, 0.2) == 0.2
  assert not single.needs_measurement()
  multi = objective_lib.Objective('AP', cost=objective_lib.LATENCY)
  assert multi.feedback(outcome.COMPLETED, metrics, 0.4) == (0.4, -5.0)
  assert multi.feedback(outcome.INFEASIBLE, {'latency_ms': 9.0}, 0.0) == (
      0.0, -9.0)
  assert multi.feedback(outcome.INFEASIBLE, None, 0.0) is None
  assert multi.needs_measurement()
  with pytest.raises(ValueError, match="reward metric 'miou' not reported"):
    objective_lib.Objective('miou').reward(metrics)


def test_every_mode_has_its_flag_value():
  from trainer import task  # pylint: disable=g-import-not-at-top
  assert set(task.MODE_TABLE) == set(nas_flags.MODES)
