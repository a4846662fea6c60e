"""The Vertex AI environment of a trial: its dirs, strategy and hypertune
reports, against the documented metrics format."""

import copy
import json
import os

from absl import flags
import pytest

from trainer import flags as nas_flags
from trainer import spec as spec_lib
from trainer import vertex
from trainer.modes import trial as trial_mode

# The line cloudml-hypertune's README documents for
# report_hyperparameter_tuning_metric('my_metric_tag', 0.987, 1000) in trial 0.
DOCUMENTED_LINE = ('{"global_step": "1000", "my_metric_tag": "0.987", '
                   '"timestamp": 1525851440.123456, "trial": "0"}')


def parsed_args(*argv):
  values = copy.deepcopy(flags.FLAGS)
  values(['nas-garden', '--mode=trial', *argv])
  return nas_flags.Args.parsed(values)


@pytest.mark.parametrize('model_dir, expected', [
    ('gs://b/job/nas/search/3', 'gs://b/job/nas/search/3'),
    ('gs://b/job/nas/search/3/model/', 'gs://b/job/nas/search/3'),
    ('file:///r/job/nas/train/12/', 'file:///r/job/nas/train/12'),
    ('gs://b/job/nas/search/3rd', 'gs://b/job/nas/search/3rd'),
    ('gs://b/elsewhere/out', 'gs://b/elsewhere/out'),
    ('', ''),
])
def test_trial_dir_is_the_trial_part_of_aip_model_dir(model_dir, expected):
  assert vertex.trial_dir({vertex.MODEL_DIR: model_dir}) == expected


def test_a_local_aip_model_dir_is_made_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert vertex.trial_dir({vertex.MODEL_DIR: 'out/nas/search/2'}) == str(
      tmp_path / 'out' / 'nas' / 'search' / '2')


def test_trial_dirs_use_job_dir_when_given_else_aip_model_dir(tmp_path,
                                                              monkeypatch):
  monkeypatch.setenv(vertex.MODEL_DIR, 'gs://b/job/nas/search/3/model')
  assert trial_mode.trial_dirs(parsed_args(), 3) == (
      'gs://b/job/nas/search/3', 'gs://b/job/nas/search/3/data')
  assert trial_mode.trial_dirs(parsed_args(f'--job_dir={tmp_path}'), 3) == (
      str(tmp_path / 'trials' / '3'), str(tmp_path / 'data'))
  # The platform's --job-dir gives way to AIP_MODEL_DIR, as in its trainer.
  assert trial_mode.trial_dirs(parsed_args(f'--job-dir={tmp_path}'), 3) == (
      'gs://b/job/nas/search/3', 'gs://b/job/nas/search/3/data')
  monkeypatch.delenv(vertex.MODEL_DIR)
  with pytest.raises(ValueError, match='--job_dir is required'):
    trial_mode.trial_dirs(parsed_args(), 3)


@pytest.mark.parametrize('environ, expected', [
    ({}, False),
    ({vertex.TRIAL_ID: '3'}, False),  # Any trial's id: not the service's mark.
    ({vertex.MODEL_DIR: 'gs://b/j/nas/search/3'}, True),
    ({vertex.METRIC_FILE: '/tmp/m'}, True),
    ({vertex.METRIC_TAG: 'accuracy'}, True),
])
def test_reports_only_as_a_vertex_job_or_when_asked(environ, expected):
  assert vertex.reports_metrics(environ) is expected


def tf_config(**cluster):
  return {vertex.TF_CONFIG: json.dumps({
      'cluster': {kind: [f'{kind}-{i}:2222' for i in range(n)]
                  for kind, n in cluster.items()},
      'task': {'type': 'chief', 'index': 0}})}


@pytest.mark.parametrize('given, environ, expected', [
    ('', {}, ''),
    ('', tf_config(chief=1), ''),
    ('', tf_config(chief=1, evaluator=1), ''),
    ('', tf_config(worker=1, ps=2), ''),
    ('', tf_config(chief=1, worker=1), 'multi_worker_mirrored'),
    ('', tf_config(worker=3), 'multi_worker_mirrored'),
    ('mirrored', tf_config(chief=1, worker=3), 'mirrored'),
])
def test_a_multi_worker_tf_config_picks_multi_worker_mirrored(given, environ,
                                                              expected):
  assert vertex.distribution_strategy(given, environ) == expected


def test_the_trial_spec_takes_the_tf_config_strategy(monkeypatch):
  monkeypatch.setenv(vertex.TF_CONFIG, tf_config(chief=1, worker=1)[
      vertex.TF_CONFIG])
  spec = spec_lib.TrialSpec('mnasnet', runtime=spec_lib.Runtime(
      mixed_precision=True))
  assert trial_mode.runtime_spec(spec).runtime == spec_lib.Runtime(
      'multi_worker_mirrored', mixed_precision=True)


def test_a_broken_tf_config_is_a_one_line_error():
  with pytest.raises(ValueError, match='TF_CONFIG is not a cluster spec'):
    vertex.distribution_strategy('', {vertex.TF_CONFIG: '{"cluster": '})


def test_report_has_the_documented_fields_and_format():
  report = vertex.metric_report('my_metric_tag', 0.987, 1000, 0,
                                timestamp=1525851440.123456)
  line = json.loads(json.dumps(report, sort_keys=True))
  documented = json.loads(DOCUMENTED_LINE)
  assert {k: line[k] for k in documented} == documented
  # The platform's NAS reporter adds these two.
  assert (line['checkpoint_path'], line['model_flops']) == ('', '0.0')
  assert set(line) == set(documented) | {'checkpoint_path', 'model_flops'}


def test_report_defaults_tag_and_never_reports_a_zero_reward():
  report = vertex.metric_report('', 0.0, None, 4, timestamp=1.0)
  assert report[vertex.DEFAULT_METRIC_TAG] == '1e-08'
  assert report['global_step'] == '0'


def test_report_keeps_five_extra_metrics_that_fit():
  extra = {'top_1_accuracy': 0.5, 'x' * 65: 1.0, 'global_step': 9,
           'device': 'CPU', 'params': 1200, 'latency_ms': 3.5,
           'memory_mb': 12, 'search_trial_id': 7, 'sixth': 1.0}
  report = vertex.metric_report('reward', 0.4, 10, 3, model_flops=0.25,
                                extra_metrics=extra, timestamp=1.0)
  pairs = [(report[f'key_{i}'], report[f'value_{i}'])
           for i in range(vertex.MAX_EXTRA_METRICS)]
  assert pairs == [('top_1_accuracy', '0.5'), ('params', '1200.0'),
                   ('latency_ms', '3.5'), ('memory_mb', '12.0'),
                   ('search_trial_id', '7.0')]
  assert 'key_5' not in report and report['model_flops'] == '0.25'


def test_each_report_is_one_more_line_and_the_file_keeps_the_last_100(
    tmp_path):
  path = str(tmp_path / 'hypertune' / 'output.metrics')
  for step in range(vertex.KEPT_REPORTS + 2):
    vertex.write_report(path, vertex.metric_report('t', 0.5, step, 1))
  lines = [json.loads(line) for line in open(path).read().splitlines()]
  assert [line['global_step'] for line in lines] == [
      str(step) for step in range(2, vertex.KEPT_REPORTS + 2)]


def test_report_metrics_writes_where_and_under_the_tag_the_service_says(
    tmp_path, monkeypatch):
  default_file = tmp_path / 'default' / 'output.metrics'
  monkeypatch.setattr(vertex, 'DEFAULT_METRIC_FILE', str(default_file))
  vertex.report_metrics({}, reward=0.25, global_step=40, trial_id=3)
  assert json.loads(default_file.read_text())[
      vertex.DEFAULT_METRIC_TAG] == '0.25'
  metric_file = tmp_path / 'given.metrics'
  vertex.report_metrics(
      {vertex.METRIC_FILE: str(metric_file), vertex.METRIC_TAG: 'accuracy'},
      reward=0.75, global_step=40, trial_id=3)
  line = json.loads(metric_file.read_text())
  assert (line['accuracy'], line['trial'], line['global_step']) == (
      '0.75', '3', '40')
  assert len(default_file.read_text().splitlines()) == 1


def test_the_trial_reports_its_reward_with_the_flags_targets(tmp_path,
                                                            monkeypatch):
  metric_file = tmp_path / 'output.metrics'
  monkeypatch.setenv(vertex.METRIC_FILE, str(metric_file))
  monkeypatch.setenv(vertex.METRIC_TAG, 'reward')
  metrics = {'top_1_accuracy': 0.8, 'multi_add_flops_billion': 2.0,
             'params': 1000, 'evaluated_step': 40, 'device': 'CPU',
             'quality_metric': 'top_1_accuracy'}
  for flag, reward in (('--target_flops_multi_adds_billion=1.0', 0.4),
                       ('--reward_metric=top_1_accuracy', 0.8)):
    trial_mode.report_to_vertex(parsed_args(flag), metrics, 3, '/trial')
    line = json.loads(metric_file.read_text().splitlines()[-1])
    assert line['reward'] == str(reward)
    assert (line['global_step'], line['trial'], line['checkpoint_path'],
            line['model_flops']) == ('40', '3', '/trial', '2.0')
    assert [(line['key_0'], line['value_0']), (line['key_1'], line['value_1'])
           ] == [('top_1_accuracy', '0.8'), ('params', '1000.0')]
    assert 'key_2' not in line


def test_a_trial_trained_without_evaluating_reports_nothing(tmp_path,
                                                           monkeypatch):
  metric_file = tmp_path / 'output.metrics'
  monkeypatch.setenv(vertex.METRIC_FILE, str(metric_file))
  trial_mode.report_to_vertex(
      parsed_args('--skip_eval'),
      {'evaluated_step': 4, 'params': 10, 'quality_metric': 'top_1_accuracy'},
      3, '/t')
  trial_mode.report_to_vertex(  # The training half of a measured trial.
      parsed_args('--noreport_metrics'),
      {'evaluated_step': 4, 'top_1_accuracy': 0.5,
       'quality_metric': 'top_1_accuracy'}, 3, '/t')
  assert not metric_file.exists()
