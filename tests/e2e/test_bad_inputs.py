"""Bad input: a one-line error, a non-zero exit, and the store left as it was."""

import json
import os
import sqlite3

import pytest

from tests.conftest import (FIXTURES, TINY_OVERRIDE, cli, job_dir_snapshot,
                            search_flags)


def _sample(space):
  with open(os.path.join(FIXTURES, f'{space}.json')) as f:
    return json.load(f)['nas_params_str_samples'][0]


def _read_as_a_reader(job_dir):
  """Reads the store read-only, as the report or another tool does: SQLite
  leaves its -wal and -shm files behind, and a refused command keeps them."""
  db = sqlite3.connect(f'file:{os.path.join(job_dir, "nas_garden.db")}?mode=ro',
                       uri=True)
  db.execute('SELECT COUNT(*) FROM trials').fetchone()
  db.close()
  assert os.path.exists(os.path.join(job_dir, 'nas_garden.db-wal'))


def _assert_one_line_error(result, expected):
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('nas-garden: error: '), result.stderr[-2000:]
  assert expected in last, last


def _bad_yaml(tmp_path):
  path = tmp_path / 'bad.yaml'
  path.write_text('task: [unclosed\n')
  return f'--config_file={path}'


def _unknown_key_yaml(tmp_path):
  path = tmp_path / 'unknown.yaml'
  path.write_text('task:\n  model:\n    no_such_field: 1\n')
  return f'--config_file={path}'


def _garbage_records(tmp_path):
  path = tmp_path / 'train-00000-of-00001'
  path.write_bytes(b'this is not a TFRecord file' * 10)
  return [f'--train_data={path}', f'--eval_data={path}']


SEARCH_CASES = {
    'unknown space': (lambda tmp: ['--search_space=no_such_space'],
                      "unknown search space 'no_such_space'; valid: anynet_x, autoaugment_detection"),
    'unknown algorithm': (lambda tmp: ['--algorithm=annealing'],
                          "unknown algorithm 'annealing'; valid: random, grid"),
    'bad YAML': (lambda tmp: [_bad_yaml(tmp)], 'is not valid YAML'),
    'unknown config key': (lambda tmp: [_unknown_key_yaml(tmp)], 'no_such_field'),
    'missing config file': (lambda tmp: ['--config_file=/no/such/config.yaml'],
                            'config file not found: /no/such/config.yaml'),
    'bad override': (lambda tmp: ['--params_override=task.model.no_such_field=3'],
                     'cannot apply --params_override'),
    'missing data': (lambda tmp: ['--train_data=/no/such/train-*',
                                  '--eval_data=/no/such/eval-*'],
                     'no files match --train_data=/no/such/train-*'),
    'corrupt data': (
        _garbage_records,
        '(--train_data) is not a TFRecord file of tf.Examples: corrupted '
        'record at 0'),
    'cpu replicas without mirrored': (
        lambda tmp: ['--cpu_replicas=2'],
        '--cpu_replicas needs a mirrored or multi_worker_mirrored strategy'),
    'no Ray cluster': (
        lambda tmp: ['--executor=ray', '--ray_address=auto'],
        'cannot use the Ray cluster at auto: '),
    'ray flags without ray': (
        lambda tmp: ['--cpus_per_trial=2'],
        '--cpus_per_trial only with --executor=ray'),
    'changed config on resume': (
        lambda tmp: ['--target_flops_multi_adds_billion=0.5'],
        'different target_flops_multi_adds_billion'),
}


@pytest.mark.parametrize('case', sorted(SEARCH_CASES))
def test_search_bad_input_leaves_store_unchanged(search_job, tmp_path, case):
  job_dir, _ = search_job
  extra, expected = SEARCH_CASES[case]
  _read_as_a_reader(job_dir)
  before = job_dir_snapshot(job_dir)
  flags = [f for f in search_flags(job_dir, 3, '--target_flops_multi_adds_billion=0.0008')]
  args = extra(tmp_path)
  # A later flag wins in absl: the bad value replaces the good one.
  result = cli(*flags, *args)
  _assert_one_line_error(result, expected)
  assert job_dir_snapshot(job_dir) == before


def test_bad_input_creates_no_store_in_a_new_job_dir(tmp_path):
  job_dir = tmp_path / 'new_job'
  result = cli(*search_flags(str(job_dir), 2), _bad_yaml(tmp_path))
  _assert_one_line_error(result, 'is not valid YAML')
  assert not job_dir.exists()


def _read_only(path):
  """A command prefix under which `path` is a read-only mount (root), or
  none after taking its write bits (other users)."""
  if os.geteuid() != 0:
    os.chmod(path, 0o555)
    return []
  return ['unshare', '-m', 'sh', '-c',
          'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && '
          'exec "$@"', str(path)]


def test_read_only_job_dir(search_job, tmp_path):
  job_dir, _ = search_job
  before = job_dir_snapshot(job_dir)
  flags = search_flags(job_dir, 4, '--target_flops_multi_adds_billion=0.0008')
  result = cli(*flags, prefix=_read_only(job_dir))
  _assert_one_line_error(result, f'job dir {job_dir} is not writable')
  assert job_dir_snapshot(job_dir) == before

  parent = tmp_path / 'read_only'
  parent.mkdir()
  result = cli(*search_flags(str(parent / 'job'), 1), prefix=_read_only(parent))
  _assert_one_line_error(
      result, f'cannot create job dir {parent / "job"}: {parent} is not writable')
  assert not (parent / 'job').exists()


def test_job_dir_of_a_newer_store_schema(tmp_path):
  job_dir = tmp_path / 'job'
  job_dir.mkdir()
  with sqlite3.connect(job_dir / 'nas_garden.db') as db:
    db.execute('CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)')
    db.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    db.execute('CREATE TABLE trials_v99 (anything TEXT)')
  before = job_dir_snapshot(job_dir)
  for args in (search_flags(str(job_dir), 1),
               ('--mode=list', f'--job_dir={job_dir}')):
    result = cli(*args)
    _assert_one_line_error(result, 'was written by a newer nas-garden (store '
                           'schema 99 > 1); upgrade nas-garden to use it')
    assert job_dir_snapshot(job_dir) == before


TRIAL_CASES = {
    'malformed JSON': ('{"blocks[0].num_repeats": ', 'nas_params_str is not valid JSON'),
    'foreign space': (_sample('nasfpn'), 'not in this search space'),
    'out of range': (_sample('mnasnet').replace('"0/2 (1)"', '"5/2 (1)"', 1),
                     'out of range'),
}


@pytest.mark.parametrize('case', sorted(TRIAL_CASES))
def test_trial_bad_nas_params(tmp_path, case):
  nas_params, expected = TRIAL_CASES[case]
  result = cli('--mode=trial', f'--job_dir={tmp_path}', f'--nas_params_str={nas_params}',
               f'--params_override={TINY_OVERRIDE}')
  _assert_one_line_error(result, expected)
  error = json.loads((tmp_path / 'trials' / '1' / 'error.json').read_text())
  assert error['kind'] == 'crash' and expected in error['message']


def test_list_of_missing_job_dir(tmp_path):
  result = cli('--mode=list', f'--job_dir={tmp_path / "none"}')
  _assert_one_line_error(result, 'no nas-garden job in')


AUGMENT_CASES = {
    'not an augmentation space': (
        ['--search_space=mnasnet', '--base_search_space=mnasnet',
         f'--base_nas_params_str={_sample("mnasnet")}'],
        '--search_space=mnasnet is not an augmentation space; valid: '
        'autoaugment_detection, autoaugment_segmentation, randaugment_detection'),
    'base space missing': (
        [f'--base_nas_params_str={_sample("mnasnet")}'],
        '--base_search_space is required with --base_nas_params_str'),
    'foreign base architecture': (
        ['--base_search_space=spinenet',
         f'--base_nas_params_str={_sample("mnasnet")}'],
        'not in this search space'),
    'no base job': (['--base_job_dir=/no/such/job'], 'no nas-garden job in'),
}


@pytest.mark.parametrize('case', sorted(AUGMENT_CASES))
def test_augment_search_bad_input(tmp_path, case):
  extra, expected = AUGMENT_CASES[case]
  result = cli('--mode=augment_search', f'--job_dir={tmp_path / "job"}', *extra)
  _assert_one_line_error(result, expected)
  assert not (tmp_path / 'job').exists()


def test_augment_preview_needs_a_policy(tmp_path):
  result = cli('--mode=augment_preview', f'--job_dir={tmp_path}',
               '--search_space=randaugment_detection')
  _assert_one_line_error(result, '--nas_params_str is required with '
                         '--mode=augment_preview')
