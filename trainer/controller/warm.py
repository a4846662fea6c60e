"""Warm trials: each trial process a fork of one that has TensorFlow loaded.

Importing TensorFlow, Model Garden and the trainer costs about 5 s of CPU in
every trial process. A fork server holds those imports but has never started
TensorFlow: no thread pools exist in it, so it is safe to fork. For each
trial it forks a child that runs `python -m trainer.task <flags>` as a fresh
interpreter would: its own log on stdout and stderr, its own environment
(CUDA_VISIBLE_DEVICES included: devices are set up only in the child),
working dir, flags and clock. Each trial is still one process of its own,
so timeouts, the memory cap, kill -9 and resume treat it as a cold one, and
nothing passes from trial to trial.

Where it can, the controller forks its server from itself once it has
imported the trainer and before it runs any TensorFlow op
(`prepare_server`): then no process pays the imports twice. That is only
safe on a machine without GPUs: any `import tensorflow` after absl's app.run
has started lists the GPUs (tensorflow.python.distribute.combinations),
which initialises CUDA, and a process forked after that cannot use it.
Elsewhere the server is a fresh interpreter, `python -m
trainer.controller.warm`, spawned at the first trial.

A server that dies takes its trials with it (parent-death signal); the
controller re-runs them from their checkpoints in a new server
(`WorkerDied`), as it re-runs a Ray trial whose worker died.
"""

import faulthandler
import io
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Dict, List, Optional

TASK_MODULE = ['-m', 'trainer.task']
# How long the server waits for a request before reaping ended children.
_REAP_S = 0.05


class WorkerDied(Exception):
  """The fork server died; the trial it ran was killed with it."""


def runs(python_args: List[str]) -> bool:
  """Whether a fork server can run this trial command: `-m trainer.task`."""
  return python_args[:2] == TASK_MODULE


class WarmProcess:
  """A trial forked by a server, as the executors use a Popen: `args`,
  `pid`, `poll()`, `wait()` and `kill()`; `poll` raises WorkerDied if the
  server died before the trial's end was reported."""

  def __init__(self, server: 'ForkServer', pid: int, args: List[str]):
    self.server, self.pid, self.args = server, pid, args
    self.returncode: Optional[int] = None

  def poll(self) -> Optional[int]:
    if self.returncode is None:
      self.returncode = self.server.returncode(self.pid)
    return self.returncode

  def wait(self, timeout: Optional[float] = None) -> int:
    """As Popen.wait: raises subprocess.TimeoutExpired after `timeout` s."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while self.poll() is None:
      if deadline is not None and time.monotonic() > deadline:
        raise subprocess.TimeoutExpired(self.args, timeout)
      time.sleep(_REAP_S)
    return self.returncode

  def kill(self) -> None:
    try:
      os.kill(self.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass


class ForkServer:
  """The controller's end of a fork server: requests go down one pipe,
  "started"/"ended" replies come up the other. Threads may share it (its
  pipe is read under a lock)."""

  def __init__(self, pid: int, requests: int, replies: int,
               process: Optional[subprocess.Popen] = None):
    self.pid, self._process = pid, process  # No process: forked from here.
    self._requests, self._replies = requests, replies
    self._unread = b''
    self._ended: Dict[int, int] = {}
    self._dead = False
    self._lock = threading.RLock()

  @classmethod
  def spawn(cls, env: Dict[str, str]) -> 'ForkServer':
    """A server in a new interpreter with `env`, importing what trials need
    (its trials start once it has)."""
    from trainer.controller import executors  # pylint: disable=g-import-not-at-top  (imports this module)
    process = subprocess.Popen(
        [sys.executable, '-m', 'trainer.controller.warm'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        preexec_fn=executors.die_with_parent)
    return cls(process.pid, process.stdin.fileno(), process.stdout.fileno(),
               process)

  @classmethod
  def fork_here(cls) -> 'ForkServer':
    """A server forked from this process, which has imported what trials
    need and may be forked (can_fork_here)."""
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
      os.close(requests_w)
      os.close(replies_r)
      _die_with(parent)
      _serve_forever(requests_r, replies_w)
    os.close(requests_r)
    os.close(replies_w)
    return cls(pid, requests_w, replies_r)

  @property
  def alive(self) -> bool:
    self._read(block=False)
    return not self._dead

  def start(self, python_args: List[str], log_path: str,
            env: Dict[str, str], err_path: Optional[str] = None,
            cwd: Optional[str] = None) -> WarmProcess:
    """Forks a trial running `python <python_args>` with `env` in `cwd`
    (default: this process's), its stdout and stderr appended to `log_path`
    (stderr to `err_path` if given); raises WorkerDied if the server is
    gone."""
    if not runs(python_args):
      raise ValueError(f'a fork server runs {" ".join(TASK_MODULE)} only')
    request = {'flags': python_args[len(TASK_MODULE):], 'log': log_path,
               'err': err_path or log_path, 'env': env,
               'cwd': cwd or os.getcwd()}
    with self._lock:
      try:
        os.write(self._requests, json.dumps(request).encode() + b'\n')
      except BrokenPipeError:
        self._dead = True
        raise WorkerDied('the fork server has died') from None
      while True:
        for reply in self._read(block=True):
          if 'started' in reply:
            return WarmProcess(self, reply['started'],
                               [sys.executable, *python_args])
          if 'error' in reply:
            raise OSError(
                f'the fork server could not fork: {reply["error"]}')
        if self._dead:
          raise WorkerDied('the fork server died starting a trial')

  def returncode(self, pid: int) -> Optional[int]:
    """The trial's exit status (as Popen.returncode) once it has ended."""
    self._read(block=False)
    if pid in self._ended:
      return self._ended[pid]
    if self._dead:
      raise WorkerDied('its fork server died')
    return None

  def _read(self, block: bool) -> List[dict]:
    """Replies that have come; records ended trials and a dead server."""
    with self._lock:
      replies = []
      while not self._dead:
        ready, _, _ = select.select([self._replies], [], [],
                                    None if block else 0)
        if not ready:
          break
        chunk = os.read(self._replies, 1 << 16)
        if not chunk:
          self._dead = True
          if self._process is None:  # Forked from here: reap it.
            os.waitpid(self.pid, 0)
          break
        self._unread += chunk
        *lines, self._unread = self._unread.split(b'\n')
        replies.extend(json.loads(line) for line in lines)
        block = False
      for reply in replies:
        if 'ended' in reply:
          self._ended[reply['ended']] = reply['returncode']
      return replies

  def close(self) -> None:
    """Ends the server; trials still running die with it."""
    if self._process is not None:
      self._process.kill()
      self._process.wait()
    elif not self._dead:
      os.kill(self.pid, signal.SIGKILL)
      os.waitpid(self.pid, 0)
    self._dead = True


def wait_gone(pid: int, timeout_s: float = 10) -> None:
  """Kills a trial whose server died, and waits until it has ended: its
  parent-death signal kills it too, but not at once, and a re-run must not
  start while it may still write into its trial dir."""
  try:
    os.kill(pid, signal.SIGKILL)
  except ProcessLookupError:
    return
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    try:
      with open(f'/proc/{pid}/stat') as f:
        if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
          return  # Ended; its new parent has not reaped it yet.
    except OSError:
      return
    time.sleep(0.01)


_server: Optional[ForkServer] = None


def can_fork_here() -> bool:
  """Whether this process may be forked as a fork server: it has imported
  the trainer, not started TensorFlow, and the machine has no GPU (see the
  module's docstring)."""
  if 'trainer.training.trial' not in sys.modules:
    return False
  from tensorflow.python.eager import context  # pylint: disable=g-import-not-at-top
  from trainer.training import devices  # pylint: disable=g-import-not-at-top
  started = context.context_safe()
  return not (started and started._initialized) and not devices.machine_gpus()  # pylint: disable=protected-access


def prepare_server() -> None:
  """Forks this process's server now if it can be (can_fork_here), before
  this process runs TensorFlow; else `server` spawns one at the first
  trial."""
  global _server
  if (_server is None or not _server.alive) and can_fork_here():
    _server = ForkServer.fork_here()


def server(env: Dict[str, str]) -> ForkServer:
  """This process's fork server: the one prepare_server forked, else one
  spawned with `env`, and a new one once it has died."""
  global _server
  if _server is None or not _server.alive:
    _server = (ForkServer.fork_here() if can_fork_here()
               else ForkServer.spawn(env))
  return _server


def _become_server() -> None:
  """`python -m trainer.controller.warm`: imports what trials need, then
  serves requests from stdin, replying on stdout."""
  # Dies with its parent: spawned with executors.die_with_parent.
  requests, replies = os.dup(0), os.dup(1)
  from trainer import task  # pylint: disable=g-import-not-at-top,unused-import
  from trainer.training import trial  # pylint: disable=g-import-not-at-top,unused-import
  _serve_forever(requests, replies)


def _serve_forever(requests: int, replies: int) -> None:
  """Serves until the controller's end of `requests` closes; never
  returns."""
  try:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # stderr stays: the controller's.
    os.close(null)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the controller's.
    _serve(requests, replies)
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
  finally:
    os._exit(0)  # pylint: disable=protected-access


def _die_with(parent: int) -> None:
  from trainer.controller import executors  # pylint: disable=g-import-not-at-top  (imports this module)
  executors.die_with_parent()
  if os.getppid() != parent:  # It died before the signal was asked for.
    os._exit(1)  # pylint: disable=protected-access


def _serve(requests: int, replies: int) -> None:
  children = set()
  unread = b''
  while True:
    ready, _, _ = select.select([requests], [], [], _REAP_S)
    if ready:
      chunk = os.read(requests, 1 << 16)
      if not chunk:  # The controller is done (or gone): so are its trials.
        for pid in children:
          os.kill(pid, signal.SIGKILL)
        return
      unread += chunk
      *lines, unread = unread.split(b'\n')
      for line in lines:
        try:
          pid = _fork_trial(json.loads(line), (requests, replies))
        except OSError as e:
          _reply(replies, {'error': str(e)})
        else:
          children.add(pid)
          _reply(replies, {'started': pid})
    for pid in list(children):
      ended, status = os.waitpid(pid, os.WNOHANG)
      if ended:
        children.discard(pid)
        _reply(replies, {'ended': pid,
                         'returncode': os.waitstatus_to_exitcode(status)})


def _reply(replies: int, message: dict) -> None:
  os.write(replies, json.dumps(message).encode() + b'\n')


def _fork_trial(request: dict, server_fds) -> int:
  parent = os.getpid()
  pid = os.fork()
  if pid:
    return pid
  code = 1
  try:
    for fd in server_fds:
      os.close(fd)
    _die_with(parent)
    code = _run_trial(request)
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


def _run_trial(request: dict) -> int:
  """Runs `python -m trainer.task <flags>` in this forked child as a fresh
  interpreter would (PYTHONUNBUFFERED, as trial processes run); returns its
  exit status."""
  for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
    signal.signal(signum, signal.SIG_DFL)
  signal.signal(signal.SIGINT, signal.default_int_handler)
  for fd, path in ((1, request['log']), (2, request['err'])):
    opened = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(opened, fd)
    os.close(opened)
  null = os.open(os.devnull, os.O_RDONLY)
  os.dup2(null, 0)
  os.close(null)
  sys.stdout = io.TextIOWrapper(io.FileIO(1, 'w', closefd=False),
                                write_through=True)
  sys.stderr = io.TextIOWrapper(io.FileIO(2, 'w', closefd=False),
                                write_through=True, errors='backslashreplace')
  os.environ.clear()
  os.environ.update(request['env'])
  os.chdir(request['cwd'])

  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  from trainer import task  # pylint: disable=g-import-not-at-top
  from trainer.modes import trial  # pylint: disable=g-import-not-at-top
  trial.PROCESS_START = time.time()
  sys.argv = [task.__file__, *request['flags']]
  sys.orig_argv = [sys.executable, *TASK_MODULE, *request['flags']]
  flags.FLAGS.unparse_flags()
  try:
    # What absl's app.run does before main (it can run once per process).
    argv = flags.FLAGS(sys.argv)
    if flags.FLAGS['verbosity'].using_default_value:
      flags.FLAGS.verbosity = 0  # INFO, as app.run makes it.
    logging.use_absl_handler()
    faulthandler.enable()
    task.main(argv)
  except flags.Error as e:
    print(f'FATAL Flags parsing error: {e}', file=sys.stderr)
    return 1
  except SystemExit as e:
    if e.code is None or isinstance(e.code, int):
      return e.code or 0
    print(e.code, file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  _become_server()
