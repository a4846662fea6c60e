"""A quiet CLI: what TensorFlow and libraries print goes to log files, not the
terminal, unless --verbosity=1."""

import os
import re
import subprocess
import sys
import textwrap

from tests.conftest import REPO
from trainer import artifacts
from trainer import quiet

# A line of TensorFlow's C++ logging, of absl's (C++ or Python), or absl's
# notice before its C++ logging starts.
LOG_LINE = re.compile(r'^(\d{4}-\d\d-\d\d [\d:.]+: [IWE] |[IWE]\d{4} [\d:.]+ '
                      r'+\d+ \S+:\d+\] |WARNING: All log messages before absl)',
                      re.MULTILINE)


def _cli(*flags, command=('-m', 'trainer.task')):
  """The CLI with TensorFlow's C++ logs at every level: only where they go
  keeps them off the terminal."""
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='0')
  return subprocess.run([sys.executable, *command, *flags], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)


def _read(path):
  with open(path) as f:
    return f.read()


def test_tensorflow_logs_go_to_log_files_unless_verbose(measured_search):
  job_dir, result = measured_search  # Its C++ logs at every level.
  assert result.stderr == ''
  assert not LOG_LINE.search(result.stdout), result.stdout
  assert 'trial   1 completed' in result.stdout
  assert 'best trial: 1' in result.stdout
  # The controller's hidden output is in the job's log, the trial's (and its
  # latency measurement's) in its trial.log.
  assert LOG_LINE.search(_read(os.path.join(job_dir, quiet.LOG_FILE)))
  trial_dir = artifacts.trial_dir(job_dir, 'search', 1)
  assert LOG_LINE.search(_read(os.path.join(trial_dir, artifacts.LOG_FILE)))

  verbose = _cli('--mode=report', f'--job_dir={job_dir}', '--verbosity=1')
  assert verbose.returncode == 0, verbose.stderr[-3000:]
  assert LOG_LINE.search(verbose.stderr), verbose.stderr
  assert 'report: ' in verbose.stdout


# The CLI with a mode that fails as a bug of ours would.
_BUGGY_MODE = textwrap.dedent('''
    from absl import app
    from trainer import task
    def buggy(args):
      print('warming up', flush=True)
      raise KeyError('no such column')
    task.MODE_TABLE['list'] = buggy
    app.run(task.main)
''')


def test_a_bug_of_ours_shows_one_line_and_logs_its_traceback(tmp_path):
  result = _cli('--mode=list', f'--job_dir={tmp_path}',
                command=('-c', _BUGGY_MODE))
  assert result.returncode == 1
  assert result.stdout == 'warming up\n'
  log = tmp_path / quiet.LOG_FILE
  assert result.stderr == ("nas-garden: internal error: 'no such column' "
                           f'(traceback in {log})\n')
  assert "KeyError: 'no such column'" in _read(log)
  assert 'Traceback' in _read(log)
