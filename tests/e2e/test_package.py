"""The Python package: `python -m build` makes its sdist and wheel, and the
installed wheel alone runs a real trial as a Vertex AI training job does."""

import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest

from tests.conftest import DIGITS, FIXTURES, REPO

# What a clean checkout lacks (.gitignore): building in the repo itself would
# leave build/ and *.egg-info there, and an old egg-info's file list leaks
# into the sdist.
NOT_IN_A_CHECKOUT = ('.venv', '.git', '*.egg-info', 'build', 'dist',
                     '__pycache__', '.pytest_cache', 'jobs', '.whl')
# Where the package's files live in the repo (setup.py ships these).
PACKAGED = ('search_spaces.py', 'trainer/**/*.py', 'augment/**/*.py',
            'proxy_tasks/**/*.py', 'configs/*.py', 'configs/*.yaml')
# A real trial of 4 steps at batch 8 on digits: seconds, not minutes.
FOUR_STEPS = ('trainer.train_steps=4,trainer.steps_per_loop=2,'
              'trainer.summary_interval=2,trainer.validation_interval=4,'
              'trainer.checkpoint_interval=4,'
              f'task.train_data.global_batch_size=8,{DIGITS}')


def packaged_files():
  return sorted(os.path.relpath(path, REPO) for pattern in PACKAGED
                for path in glob.glob(os.path.join(REPO, pattern),
                                      recursive=True))


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
  """The sdist and the wheel `python -m build` makes from a copy of the
  checkout (the wheel built from the unpacked sdist, as build does)."""
  root = tmp_path_factory.mktemp('package')
  source, out = root / 'source', root / 'dist'
  shutil.copytree(REPO, source,
                  ignore=shutil.ignore_patterns(*NOT_IN_A_CHECKOUT))
  result = subprocess.run(
      [sys.executable, '-m', 'build', '--no-isolation', '--outdir', str(out),
       str(source)], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  (sdist,), (wheel,) = glob.glob(str(out / '*.tar.gz')), glob.glob(
      str(out / '*.whl'))
  return sdist, wheel


def test_sdist_and_wheel_ship_every_module_and_config(dist):
  sdist, wheel = dist
  with tarfile.open(sdist) as archive:
    in_sdist = {name.split('/', 1)[1] for name in archive.getnames()
                if '/' in name}
  with zipfile.ZipFile(wheel) as archive:
    in_wheel = set(archive.namelist())
  expected = packaged_files()
  assert 'search_spaces.py' in expected and 'configs/cpu.yaml' in expected
  assert sorted(set(expected) - in_sdist) == []
  assert sorted(set(expected) - in_wheel) == []


def run_isolated(args, target, cwd, env, timeout):
  """The venv's interpreter with only `target` and the venv's third-party
  packages importable. -S skips site, so the editable install's .pth
  finder, which maps `trainer` to the repo, never loads; the venv's
  site-packages come back through PYTHONPATH, after `target`."""
  site_packages = sysconfig.get_paths()['purelib']
  env = {**env, 'PYTHONPATH': os.pathsep.join([str(target), site_packages]),
         'TF_CPP_MIN_LOG_LEVEL': '3'}
  return subprocess.run([sys.executable, '-S', *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_installed_wheel_runs_a_vertex_trial_from_another_dir(dist, tmp_path):
  target, work = tmp_path / 'target', tmp_path / 'work'
  work.mkdir()
  install = subprocess.run(
      [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
       '--no-index', '--target', str(target), dist[1]],
      capture_output=True, text=True, timeout=300)
  assert install.returncode == 0, install.stderr
  base_env = {k: v for k, v in os.environ.items()
              if not k.startswith(('AIP_', 'CLOUD_ML_', 'TF_CONFIG'))}
  probe = run_isolated(['-c', (
      'import json, sys, trainer, search_spaces, configs\n'
      'print(json.dumps({"modules": [trainer.__file__, search_spaces.__file__,'
      ' configs.CONFIG_DIR], "repo": %r in sys.path or any('
      'f.__module__.startswith("__editable__") for f in sys.meta_path)}))'
      % REPO)], target, work, base_env, timeout=120)
  assert probe.returncode == 0, probe.stderr
  imported = json.loads(probe.stdout)
  assert not imported['repo']
  for path in imported['modules']:
    assert path.startswith(str(target) + os.sep), path

  job_dir = tmp_path / 'job'
  trial_dir = job_dir / 'nas' / 'search' / '3'
  metric_file = tmp_path / 'hypertune' / 'output.metrics'
  with open(os.path.join(FIXTURES, 'mnasnet.json')) as f:
    nas_params_str = json.load(f)['nas_params_str_samples'][0]
  vertex_env = dict(base_env, AIP_MODEL_DIR=f'file://{trial_dir}',
                    CLOUD_ML_TRIAL_ID='3', CLOUD_ML_HP_METRIC_TAG='accuracy',
                    CLOUD_ML_HP_METRIC_FILE=str(metric_file))
  result = run_isolated(
      ['-m', 'trainer.task', '--mode=trial', '--search_space=mnasnet',
       f'--nas_params_str={nas_params_str}', f'--params_override={FOUR_STEPS}',
       '--seed=1'], target, work, vertex_env, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]

  metrics = json.loads((trial_dir / 'metrics.json').read_text())
  (report,) = [json.loads(line)
               for line in metric_file.read_text().splitlines()]
  assert (report['accuracy'], report['trial'], report['global_step']) == (
      str(metrics['top_1_accuracy']), '3', '4')
  assert (report['key_0'], report['value_0']) == (
      'top_1_accuracy', str(metrics['top_1_accuracy']))
  for artifact in ('params.yaml', 'nas_params_str.json', 'architecture.json',
                   'evaluations.jsonl', 'ckpt-4.index',
                   'data/digits_32/COMPLETE'):
    assert (trial_dir / artifact).exists(), artifact
  # Nothing written anywhere else: not in the working dir, nor beside the
  # trial dir.
  assert sorted(os.listdir(tmp_path)) == ['hypertune', 'job', 'target', 'work']
  assert os.listdir(work) == []
  assert [os.path.relpath(d, job_dir) for d, _, files in os.walk(job_dir)
          if files and not d.startswith(str(trial_dir))] == []
