"""Job dirs given as URLs: a real search in `file://` (remote as gs:// is:
trials write through tf.io.gfile, the store lives in a local store dir and
is uploaded), killed and resumed, read back from a fresh store dir; and a
trial in `ram://`."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

from tests.conftest import REPO, TINY_OVERRIDE, mnasnet_sample


def _env(tmp_path):
  """The CLI's environment with its own home, cache and temp dirs, so every
  file it writes outside the job dir can be found."""
  for name in ('home', 'cwd', 'tmp'):
    (tmp_path / name).mkdir(exist_ok=True)
  return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='3',
              HOME=str(tmp_path / 'home'), TMPDIR=str(tmp_path / 'tmp'),
              XDG_CACHE_HOME=str(tmp_path / 'home' / '.cache'))


def _cli(tmp_path, *flags, check=True):
  result = subprocess.run([sys.executable, '-m', 'trainer.task', *flags],
                          cwd=tmp_path / 'cwd', env=_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
  if check and result.returncode != 0:
    raise AssertionError(result.stderr[-3000:])
  return result


def _kill_when_exists(tmp_path, flags, path):
  """Runs the CLI and SIGKILLs it once `path` exists."""
  process = subprocess.Popen(
      [sys.executable, '-m', 'trainer.task', *flags], cwd=tmp_path / 'cwd',
      env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  deadline = time.time() + 600
  try:
    while not os.path.exists(path):
      assert process.poll() is None, process.stdout.read()[-3000:]
      assert time.time() < deadline, f'{path} never appeared'
      time.sleep(0.2)
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()


def _leaderboard(output):
  """The leaderboard rows of --mode=list (the table, without timings)."""
  return [line for line in output.splitlines() if line.strip()]


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, files in os.walk(root) for f in files)


def test_search_in_a_url_job_dir_survives_sigkill_and_reads_back_anywhere(
    tmp_path):
  bucket = tmp_path / 'bucket'
  job_dir = f'file://{bucket}/job'
  search = ('--mode=search', f'--job_dir={job_dir}', '--search_space=mnasnet',
            '--max_trials=1', f'--params_override={TINY_OVERRIDE}', '--seed=3')
  # Killed while trial 1 trains (its first artifact is written at its start).
  _kill_when_exists(tmp_path, search,
                    bucket / 'job' / 'trials' / '1' / 'nas_params_str.json')
  _cli(tmp_path, *search)

  # The default store dir is under the user's cache dir, keyed by the URL.
  stores = tmp_path / 'home' / '.cache' / 'nas-garden' / 'stores'
  (default_store,) = os.listdir(stores)
  with sqlite3.connect(stores / default_store / 'nas_garden.db') as db:
    rows = db.execute("SELECT id, status, attempts FROM trials "
                      "WHERE stage='search' ORDER BY id").fetchall()
  assert rows == [(1, 'completed', 2)]

  listed = _cli(tmp_path, '--mode=list', f'--job_dir={job_dir}').stdout
  fresh = tmp_path / 'fresh_store'
  elsewhere = ('--job_dir=' + job_dir, f'--store_dir={fresh}')
  assert _leaderboard(_cli(tmp_path, '--mode=list', *elsewhere).stdout) == (
      _leaderboard(listed))
  assert 'trials: 1 completed' in listed
  assert os.listdir(fresh) == ['nas_garden.db']  # Downloaded, not created.
  _cli(tmp_path, '--mode=report', *elsewhere)
  _cli(tmp_path, '--mode=export', *elsewhere)

  written = _files(bucket / 'job')
  for name in ('metrics.json', 'trial.log', 'params.yaml', 'checkpoint',
               'nas_params_str.json'):
    assert f'trials/1/{name}' in written
  for name in ('nas_garden.db', 'report.html', 'export/export.json',
               'export/saved_model/saved_model.pb'):
    assert name in written
  assert any(f.startswith('hparams/search/') for f in written)
  assert not any('.tmp' in f or f.endswith('.upload') for f in written)
  # Nothing else was written: no store or trial files in the working dir,
  # the temp dir or the home dir besides the store dir (library files aside:
  # TensorFlow's autograph sources, Keras's config, matplotlib's font cache).
  assert os.listdir(tmp_path / 'cwd') == []
  assert [f for f in os.listdir(tmp_path / 'tmp')
          if not f.startswith('__autograph_generated_file')] == []
  outside = [f for f in _files(tmp_path / 'home')
             if not f.startswith(('.cache/nas-garden/stores/',
                                  '.keras/', '.cache/matplotlib/',
                                  '.config/matplotlib/'))]
  assert outside == []


def test_trial_in_process_writes_everything_to_ram(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import spec as spec_lib  # pylint: disable=g-import-not-at-top
  from trainer.training import trial  # pylint: disable=g-import-not-at-top
  job_dir = f'ram://job-{os.getpid()}'
  spec = spec_lib.TrialSpec(search_space='mnasnet',
                            nas_params_str=mnasnet_sample(1),
                            params_override=TINY_OVERRIDE, seed=1)
  before = _files(tmp_path)
  metrics = trial.run(trial.prepare(spec, f'{job_dir}/data'),
                      f'{job_dir}/trials/1')
  files = tf.io.gfile.glob(f'{job_dir}/trials/1/**') + [
      p for pattern in ('*', '*/*')
      for p in tf.io.gfile.glob(f'{job_dir}/trials/1/{pattern}')]
  names = {p[len(f'{job_dir}/trials/1/'):] for p in files}
  assert {'metrics.json', 'checkpoint', 'params.yaml'} <= names
  assert any(n.startswith('ckpt-') for n in names)
  assert any('tfevents' in n for n in names)
  assert tf.io.gfile.glob(f'{job_dir}/data/digits_*/train-*')
  assert metrics['top_1_accuracy'] >= 0
  assert _files(tmp_path) == before
