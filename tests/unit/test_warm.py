"""Fork servers (warm.py): a forked trial runs `python -m trainer.task` as a
fresh interpreter would, in the environment, dir and log it was given."""

import json
import os
import signal
import subprocess

import pytest

from tests.conftest import REPO
from trainer.controller import warm


@pytest.fixture(scope='module', name='server')
def _server():
  server = warm.ForkServer.spawn(dict(os.environ, PYTHONPATH=REPO))
  yield server
  server.close()


def _run(server, flags, log, env=None):
  process = server.start([*warm.TASK_MODULE, *flags], str(log),
                         dict(os.environ, **(env or {})))
  return process.wait()


def test_a_trial_takes_its_environment_not_the_servers(server, tmp_path):
  # A Vertex AI trial finds its dir in AIP_MODEL_DIR and writes its error
  # there: without --nas_params_str, a usage error.
  vertex_dir = tmp_path / 'vertex'
  log = tmp_path / 'trial.log'
  returncode = _run(server, ['--mode=trial'], log,
                    {'AIP_MODEL_DIR': str(vertex_dir)})
  assert returncode == 1
  error = json.loads((vertex_dir / 'error.json').read_text())
  assert '--nas_params_str is required' in error['message']
  assert ('nas-garden: error: --nas_params_str is required with --mode=trial'
          in log.read_text())
  assert server.alive  # A trial's failure is not its server's.


def test_flag_and_user_errors_exit_1_with_their_line_in_the_log(
    server, tmp_path, monkeypatch):
  log = tmp_path / 'bad-flag.log'
  assert _run(server, ['--no_such_flag'], log) == 1
  assert 'FATAL Flags parsing error' in log.read_text()

  monkeypatch.chdir(tmp_path)  # Relative paths are the caller's.
  log = tmp_path / 'list.log'
  assert _run(server, ['--mode=list', '--job_dir=nojob'], log) == 1
  assert (f'nas-garden: error: no nas-garden job in {tmp_path}/nojob'
          in log.read_text())


def test_stderr_and_working_dir_can_be_given(server, tmp_path):
  # As tests/conftest.py's cli() reads a CLI's stdout and stderr apart.
  out, err = tmp_path / 'out', tmp_path / 'err'
  process = server.start(
      [*warm.TASK_MODULE, '--mode=list', '--job_dir=nojob'], str(out),
      dict(os.environ), err_path=str(err), cwd=str(tmp_path))
  assert process.wait() == 1
  assert (f'nas-garden: error: no nas-garden job in {tmp_path}/nojob'
          in err.read_text())
  assert 'nas-garden: error' not in out.read_text()


def test_wait_times_out_as_popens_does(server, tmp_path):
  process = server.start([*warm.TASK_MODULE, '--mode=list'],
                         str(tmp_path / 'log'), dict(os.environ))
  os.kill(process.pid, signal.SIGSTOP)  # It cannot end before it is killed.
  with pytest.raises(subprocess.TimeoutExpired):
    process.wait(timeout=0.3)
  process.kill()
  assert process.wait(timeout=10) == -signal.SIGKILL
  assert process.args[1:] == [*warm.TASK_MODULE, '--mode=list']


def test_a_dead_server_is_told(tmp_path):  # And its trials: test_faults.py.
  server = warm.ForkServer.spawn(dict(os.environ, PYTHONPATH=REPO))
  server.close()
  assert not server.alive
  with pytest.raises(warm.WorkerDied):
    server.start([*warm.TASK_MODULE, '--mode=list'], str(tmp_path / 'log'),
                 dict(os.environ))


def test_only_the_trainer_runs_warm():
  assert warm.runs(['-m', 'trainer.task', '--mode=trial'])
  assert not warm.runs(['-c', 'print(1)'])
