"""Runs trials in isolated processes: on this machine, or as Ray tasks.

A trial is a Python process (`python -m trainer.task --mode=trial ...`),
given as its interpreter arguments; each executor starts it where the
trial's resources are and hands back a handle whose `poll()` gives its
outcome.Outcome once it has ended. A trial process dies with its parent (Linux
parent-death signal), so a killed controller or Ray worker never leaves an
orphan writing into a trial dir that a re-run is about to redo.

On a machine with GPUs each trial process sees only its own
(CUDA_VISIBLE_DEVICES): the local executor hands them out (`GpuSlots`), a Ray
trial gets exactly those Ray assigned its task.

With --trial_memory_limit_mb each trial's processes are held under that much
resident memory (`MemoryCap`), as a cgroup's memory limit holds them.

With `warm_trials` a trial process, local or on a Ray worker, is a fork of
a server that has TensorFlow imported (warm.py; a Ray worker keeps its server
from task to task); it is still a process of its own, so all of the above
holds for it as for a cold `python` one.
"""

import contextlib
import ctypes
import math
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from trainer import artifacts
from trainer import fileio
from trainer import outcome
from trainer.controller import store as store_lib
from trainer.controller import warm
from trainer.training import devices

_PR_SET_PDEATHSIG = 1
POLL_S = 0.2
MB = 2**20
# Loaded before any fork: the forked child only calls prctl.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith(
    'linux') else None
# Times a trial whose Ray worker or node, or fork server, died is run again
# before it fails.
MAX_WORKER_DEATHS = 3


def too_many_deaths(deaths: int, reason: str) -> Optional[outcome.Outcome]:
  """The failure of a trial whose worker died for the `deaths`-th time
  (`reason`), once past MAX_WORKER_DEATHS; None while it may run again."""
  if deaths > MAX_WORKER_DEATHS:
    return outcome.failed(outcome.CRASH, f'{reason} {deaths} times')
  return None


def die_with_parent() -> None:
  """preexec_fn of a child process that must not outlive this one."""
  if _LIBC is not None:
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class TrialLog:
  """A trial process's output, kept as trial.log in its trial dir. For a URL
  trial dir (<job_dir>/<stage dir>/<id>) it is written in the job's local
  store dir and copied there when the trial ends (object stores cannot
  append)."""

  def __init__(self, trial_dir: str):
    self._path = os.path.join(trial_dir, artifacts.LOG_FILE)
    if fileio.is_url(trial_dir):
      job_dir, stage_dir, trial_id = trial_dir.rstrip('/').rsplit('/', 2)
      logs = os.path.join(store_lib.location(job_dir), 'logs')
      os.makedirs(logs, exist_ok=True)
      self.local_path = os.path.join(logs, f'{stage_dir}-{trial_id}.log')
    else:
      self.local_path = self._path
    self.file = open(self.local_path, 'w')  # pylint: disable=consider-using-with

  def close(self) -> None:
    if self.file.closed:
      return
    self.file.close()
    if self.local_path != self._path:
      fileio.copy(self.local_path, self._path)
      os.remove(self.local_path)


def trial_env() -> Dict[str, str]:
  """The environment of a trial process: this process's, with the source
  root on PYTHONPATH and unbuffered output (trial.log streams as the trial
  runs)."""
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (artifacts.SOURCE_ROOT, env.get('PYTHONPATH')) if p)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  env['PYTHONUNBUFFERED'] = '1'
  return env


def start_process(python_args: List[str], trial_dir: str,
                  visible_gpus: Optional[Sequence[str]] = None,
                  warm_trials: bool = False):
  """Starts `python <python_args>` logging to the trial dir's trial.log, after
  removing what an earlier attempt left; returns (process, TrialLog). With
  `visible_gpus` the process sees only those GPUs (none if empty); without,
  it inherits this process's CUDA_VISIBLE_DEVICES. `warm_trials`: a trial
  command is forked by this process's fork server (warm.server); it raises
  warm.WorkerDied if that server dies starting it."""
  fileio.makedirs(trial_dir)
  for stale in (artifacts.METRICS_FILE, artifacts.ERROR_FILE,
                artifacts.EVALUATIONS_FILE):
    fileio.remove(os.path.join(trial_dir, stale))
  common_env = trial_env()
  env = dict(common_env)
  if visible_gpus is not None:
    env[devices.CUDA_VISIBLE_DEVICES] = ','.join(visible_gpus)
  log = TrialLog(trial_dir)
  if warm_trials and warm.runs(python_args):
    try:
      return warm.server(common_env).start(python_args, log.local_path,
                                           env), log
    except BaseException:
      log.close()
      raise
  process = subprocess.Popen([sys.executable, *python_args], stdout=log.file,
                             stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env,
                             preexec_fn=die_with_parent)
  return process, log


def _children_by_parent() -> Dict[int, List[int]]:
  """Every process's children, read from /proc/<pid>/stat (Linux)."""
  children: Dict[int, List[int]] = {}
  for name in os.listdir('/proc'):
    if not name.isdigit():
      continue
    try:
      with open(f'/proc/{name}/stat') as f:
        stat = f.read()
    except OSError:  # It ended meanwhile.
      continue
    # "pid (command) state ppid ...": the command may hold spaces and ")".
    ppid = int(stat.rsplit(')', 1)[1].split()[1])
    children.setdefault(ppid, []).append(int(name))
  return children


def process_tree(pid: int) -> List[int]:
  """`pid` and every process descended from it."""
  children = _children_by_parent()
  tree = [pid]
  for parent in tree:  # Grows as it is walked: breadth first.
    tree.extend(children.get(parent, ()))
  return tree


def resident_bytes(pid: int) -> int:
  """The process's resident memory (VmRSS); 0 once it has ended."""
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0  # Gone, or a zombie (which has no VmRSS).


class MemoryCap:
  """--trial_memory_limit_mb, enforced as a cgroup's out-of-memory killer
  enforces memory.max: the resident memory of the trial process and all its
  descendants, measured at each poll (every POLL_S), past `limit_mb` gets
  every one of them SIGKILLed. Address-space limits cannot do this for
  TensorFlow: it maps far more than it touches (RLIMIT_AS), and a trial over
  RLIMIT_DATA aborts in a thread's allocation, indistinguishable from a
  crash."""

  def __init__(self, limit_mb: int):
    self.limit_mb = limit_mb

  def enforce(self, pid: int) -> Optional[outcome.Outcome]:
    """Kills the process tree of `pid` if it holds more than the cap, and
    returns the trial's outcome; None while it is under."""
    tree = process_tree(pid)
    used_mb = sum(resident_bytes(p) for p in tree) / MB
    if used_mb <= self.limit_mb:
      return None
    for p in tree:
      with contextlib.suppress(ProcessLookupError):
        os.kill(p, signal.SIGKILL)
    return outcome.over_memory_limit(self.limit_mb, used_mb)


def memory_cap(limit_mb: Optional[int]) -> Optional[MemoryCap]:
  return MemoryCap(limit_mb) if limit_mb else None


class _Deadline:
  def __init__(self, timeout_s: Optional[float]):
    self.timeout_s = timeout_s
    self._at = time.monotonic() + timeout_s if timeout_s else None

  def passed(self) -> bool:
    return self._at is not None and time.monotonic() >= self._at

  def expired(self) -> outcome.Outcome:
    return outcome.timed_out(self.timeout_s)


class GpuSlots:
  """The machine's GPUs shared between local trials, as NNI's
  maxTrialNumberPerGpu and Ray's num_gpus share them: each trial holds
  `gpus_per_trial` whole GPUs of its own (1, 2, ...), or a share of one GPU
  (0.5: two trials on each GPU, their memory growing as each needs), from
  its start to its end. 0: trials see no GPU.
  """

  def __init__(self, gpus: Sequence[str], gpus_per_trial: float):
    if gpus_per_trial < 0 or (gpus_per_trial >= 1 and
                              gpus_per_trial != int(gpus_per_trial)):
      raise ValueError(f'--gpus_per_trial={gpus_per_trial:g}: give a whole '
                       'number of GPUs, a share 1/k of one (0.5, 0.25, ...), '
                       'or 0')
    if 0 < gpus_per_trial < 1 and not math.isclose(
        1 / gpus_per_trial, round(1 / gpus_per_trial)):
      raise ValueError(f'--gpus_per_trial={gpus_per_trial:g}: a share of a '
                       'GPU must be 1/k (0.5, 0.25, ...), so that k trials '
                       'fill it')
    if gpus_per_trial > len(gpus):
      raise ValueError(f'--gpus_per_trial={gpus_per_trial:g} but this machine '
                       f'has {len(gpus)} GPUs ({",".join(gpus)})')
    self.gpus = list(gpus)
    self._gpus_each = math.ceil(gpus_per_trial)  # 0 or 1 for a share.
    self._trials_per_gpu = (round(1 / gpus_per_trial) if 0 < gpus_per_trial < 1
                            else 1)
    self._trials_on: Dict[str, int] = {gpu: 0 for gpu in self.gpus}

  @property
  def trials_at_once(self) -> Optional[int]:
    """How many trials can hold GPUs at once; None: no limit (trials that
    use no GPU)."""
    if not self._gpus_each:
      return None
    return len(self.gpus) // self._gpus_each * self._trials_per_gpu

  def take(self) -> Optional[List[str]]:
    """GPUs for a trial starting now, the least shared first; None while
    too few have room."""
    free = sorted((gpu for gpu in self.gpus
                   if self._trials_on[gpu] < self._trials_per_gpu),
                  key=lambda gpu: self._trials_on[gpu])
    if len(free) < self._gpus_each:
      return None
    taken = free[:self._gpus_each]
    for gpu in taken:
      self._trials_on[gpu] += 1
    return taken

  def give_back(self, gpus: Sequence[str]) -> None:
    for gpu in gpus:
      self._trials_on[gpu] -= 1


def local_gpu_slots(gpus_per_trial: Optional[float],
                    gpus: Optional[Sequence[str]] = None
                    ) -> Optional[GpuSlots]:
  """The GPU slots of local trials on a machine with `gpus` (default this
  machine's, `devices.machine_gpus`), or None where trials keep the
  CUDA_VISIBLE_DEVICES they inherit (no GPUs: a user's setting is left
  alone). `gpus_per_trial` None: 1 where GPUs exist."""
  gpus = devices.machine_gpus() if gpus is None else gpus
  if not gpus:
    if gpus_per_trial:
      raise ValueError(f'--gpus_per_trial={gpus_per_trial:g} but this machine '
                       'has no GPU (none in CUDA_VISIBLE_DEVICES, or no '
                       'nvidia-smi)')
    return None
  return GpuSlots(gpus, 1 if gpus_per_trial is None else gpus_per_trial)


class RunningTrial:
  """A local trial: waiting for its GPUs while every slot is taken, then a
  process in flight. Its timeout counts from the process's start; its
  `memory_cap` is checked at each poll. A warm trial whose fork server died
  is started again in a new one (up to MAX_WORKER_DEATHS times), resuming
  from its last checkpoint; `on_rerun(reason)` is told each time."""

  def __init__(self, python_args: List[str], trial_dir: str,
               timeout_s: Optional[float],
               gpu_slots: Optional[GpuSlots] = None,
               memory_cap: Optional[MemoryCap] = None,
               warm_trials: bool = False,
               on_rerun: Optional[Callable[[str], None]] = None):
    self._args, self._trial_dir = python_args, trial_dir
    self._timeout_s, self._gpu_slots = timeout_s, gpu_slots
    self._memory_cap, self._warm_trials = memory_cap, warm_trials
    self._on_rerun = on_rerun or (lambda reason: None)
    self._deaths = 0
    self._process = self._log = self._deadline = None
    self._gpus: Optional[List[str]] = None  # Held from start to end.
    self._ending = self._start_if_free()  # Set if it could not start.

  @property
  def trial_dir(self) -> str:
    return self._trial_dir

  @property
  def started(self) -> bool:
    return self._process is not None

  def _start_if_free(self) -> Optional[outcome.Outcome]:
    """Starts the trial once GPUs are free; the trial's end if its fork
    server died too often."""
    if self._gpu_slots is not None and self._gpus is None:
      self._gpus = self._gpu_slots.take()
      if self._gpus is None:
        return None
    try:
      self._process, self._log = start_process(
          self._args, self._trial_dir, self._gpus, self._warm_trials)
    except warm.WorkerDied:
      return self._server_died()
    self._deadline = _Deadline(self._timeout_s)
    return None

  def _release_gpus(self) -> None:
    if self._gpus is not None:
      self._gpu_slots.give_back(self._gpus)
      self._gpus = None

  def poll(self) -> Optional[outcome.Outcome]:
    if self._ending is not None:
      return self._ending
    if not self.started:
      return self._start_if_free()
    try:
      returncode = self._process.poll()
    except warm.WorkerDied:
      return self._server_died()
    if returncode is None:
      ending = self._over_limits()
      if ending is not None:
        self.stop()
      return ending
    self._log.close()
    self._release_gpus()
    return outcome.read(self._trial_dir, returncode)

  def _server_died(self) -> Optional[outcome.Outcome]:
    """The fork server died and the trial with it (parent-death signal):
    once its process is gone, the trial starts again in a new server, or
    fails after MAX_WORKER_DEATHS."""
    if self._process is not None:
      warm.wait_gone(self._process.pid)
      self._log.close()
      self._process = None
    self._deaths += 1
    failure = too_many_deaths(self._deaths, 'its fork server died')
    if failure:
      self._release_gpus()
      return failure
    self._on_rerun('its fork server died')
    return self._start_if_free()

  def _over_limits(self) -> Optional[outcome.Outcome]:
    """The ending of a running trial past its deadline or over its memory
    cap (which killed it); None while within both."""
    if self._deadline.passed():
      return self._deadline.expired()
    return self._memory_cap and self._memory_cap.enforce(self._process.pid)

  def stop(self) -> None:
    """Ends the trial process now (timeout, early stopping), or its wait."""
    if self.started:
      self._process.kill()
      try:
        self._process.wait()
      except warm.WorkerDied:
        warm.wait_gone(self._process.pid)
      self._log.close()
    self._release_gpus()

  def wait(self) -> outcome.Outcome:
    while True:
      outcome = self.poll()
      if outcome is not None:
        return outcome
      time.sleep(POLL_S)


class LocalExecutor:
  """Starts each trial as a subprocess on this machine, with its own GPUs
  from `gpu_slots` (None: the CUDA_VISIBLE_DEVICES this process has); a
  trial started while every slot is taken waits for one. A trial over
  `memory_limit_mb` (None: no cap) is killed and fails as out of memory.
  `warm_trials`: trial processes are forks of a process with TensorFlow
  imported (warm.py), not fresh interpreters.

  Processes are started from the calling (main) thread and polled, never
  waited on from threads: `preexec_fn` is unsafe once threads exist.
  """

  def __init__(self, timeout_s: float = 0,
               gpu_slots: Optional[GpuSlots] = None,
               memory_limit_mb: Optional[int] = None,
               warm_trials: bool = False):
    self.timeout_s = timeout_s or None
    self.gpu_slots = gpu_slots
    self.memory_cap = memory_cap(memory_limit_mb)
    self.warm_trials = warm_trials

  def start(self, python_args: List[str], trial_dir: str,
            on_rerun: Optional[Callable[[str], None]] = None) -> RunningTrial:
    """`on_rerun(reason)` is told when the trial starts again because its
    fork server died (a trial's own death is its failure)."""
    return RunningTrial(python_args, trial_dir, self.timeout_s, self.gpu_slots,
                        self.memory_cap, self.warm_trials, on_rerun)

  def run(self, python_args: List[str], trial_dir: str) -> outcome.Outcome:
    """Runs one trial to its end."""
    return self.start(python_args, trial_dir).wait()


def run_trial_process(python_args: List[str], trial_dir: str,
                      visible_gpus: Optional[Sequence[str]] = None,
                      memory_limit_mb: Optional[int] = None,
                      warm_trials: bool = False) -> outcome.Outcome:
  """Runs a trial process to its end where this is called (a Ray worker);
  `visible_gpus` and `warm_trials` as in `start_process`, `memory_limit_mb`
  as in `LocalExecutor`. Raises warm.WorkerDied once the trial of a fork
  server that died has ended."""
  process, log = start_process(python_args, trial_dir, visible_gpus,
                               warm_trials)
  try:
    ending = _wait(process, memory_cap(memory_limit_mb))
  except warm.WorkerDied:
    warm.wait_gone(process.pid)
    raise
  finally:
    log.close()
  return ending or outcome.read(trial_dir, process.returncode)


def _wait(process: subprocess.Popen,
          cap: Optional[MemoryCap]) -> Optional[outcome.Outcome]:
  """Waits for the process to end; the outcome if the cap killed it."""
  while cap is not None and process.poll() is None:
    ending = cap.enforce(process.pid)
    if ending is not None:
      process.wait()
      return ending
    time.sleep(POLL_S)
  process.wait()
  return None


def run_ray_task(python_args: List[str], trial_dir: str,
                 memory_limit_mb: Optional[int] = None,
                 warm_trials: bool = False) -> outcome.Outcome:
  """A Ray task's trial, on exactly the GPUs Ray assigned the task: none for
  a task given no GPU (to which Ray leaves every GPU of its node)."""
  import ray  # pylint: disable=g-import-not-at-top  (the ray extra)
  assigned = ray.get_runtime_context().get_accelerator_ids().get('GPU', [])
  return run_trial_process(python_args, trial_dir, assigned, memory_limit_mb,
                           warm_trials)


class RayExecutor:
  """Runs each trial as a Ray task holding `cpus_per_trial` CPUs and
  `gpus_per_trial` GPUs (None: 1 where the cluster has GPUs), on an
  existing cluster (`address`: 'auto' or 'ray://host:port') or, without an
  address, on a local Ray instance sized for `max_parallel_trials` trials.
  The controller and its store stay here. `memory_limit_mb` caps each
  trial's processes as in `LocalExecutor`, enforced by its Ray worker.
  `warm_trials`: each Ray worker forks its trials from a fork server of its
  own, which it keeps for its next tasks (workers are kept, GPU ones too:
  neither a worker nor its server ever starts TensorFlow).

  Trial dirs are written by the workers: on a cluster the job dir must be on
  storage every node sees (a shared file system, or gs://).
  """

  def __init__(self, address: str = '', cpus_per_trial: float = 1,
               gpus_per_trial: Optional[float] = None,
               max_parallel_trials: int = 1,
               timeout_s: float = 0,
               memory_limit_mb: Optional[int] = None,
               warm_trials: bool = False):
    import ray  # pylint: disable=g-import-not-at-top  (the ray extra)
    self.ray = ray
    self.timeout_s = timeout_s or None
    self.memory_limit_mb = memory_limit_mb
    self.warm_trials = warm_trials
    if not ray.is_initialized():
      options = dict(include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
      if address:
        ray.init(address=address, **options)
      else:
        ray.init(num_cpus=max(1, math.ceil(cpus_per_trial *
                                           max_parallel_trials)),
                 object_store_memory=100 * 2**20, **options)
    if gpus_per_trial is None:
      gpus_per_trial = 1 if ray.cluster_resources().get('GPU') else 0
    self.gpus_per_trial = gpus_per_trial
    options = dict(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial,
                   max_retries=0)
    if warm_trials:  # GPU workers too stay for the next task (Ray's default
      options['max_calls'] = 0  # for them is one), so that their servers do.
    self._task = ray.remote(**options)(run_ray_task)

  def start(self, python_args: List[str], trial_dir: str,
            on_rerun: Optional[Callable[[str], None]] = None) -> 'RayTrial':
    return RayTrial(self, python_args, trial_dir, on_rerun)

  def submit(self, python_args: List[str], trial_dir: str):
    return self._task.remote(python_args, trial_dir, self.memory_limit_mb,
                             self.warm_trials)


class RayTrial:
  """A trial in flight as a Ray task. A worker, node or fork server that
  dies takes the task with it: the trial is submitted again (up to
  MAX_WORKER_DEATHS times) and resumes from its last checkpoint;
  `on_rerun(reason)` is told each time.
  """

  def __init__(self, executor: RayExecutor, python_args: List[str],
               trial_dir: str, on_rerun: Optional[Callable[[str], None]]):
    self._executor, self._args, self._trial_dir = executor, python_args, trial_dir
    self._on_rerun = on_rerun or (lambda reason: None)
    self._deadline = _Deadline(executor.timeout_s)
    self._deaths = 0
    self._ref = executor.submit(python_args, trial_dir)

  @property
  def trial_dir(self) -> str:
    return self._trial_dir

  def poll(self) -> Optional[outcome.Outcome]:
    ray = self._executor.ray
    ready, _ = ray.wait([self._ref], timeout=0)
    if not ready:
      if not self._deadline.passed():
        return None
      self.stop()
      return self._deadline.expired()
    try:
      return ray.get(self._ref)
    except (ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError) as e:
      return self._died(
          f'its Ray {"node" if isinstance(e, ray.exceptions.NodeDiedError) else "worker"}'
          ' died')
    except ray.exceptions.OutOfMemoryError:
      return outcome.failed(outcome.OOM, 'out of memory: Ray\'s memory '
                            'monitor killed the trial')
    except ray.exceptions.RayError as e:
      if isinstance(getattr(e, 'cause', None), warm.WorkerDied):
        return self._died('its fork server died')
      return outcome.failed(outcome.CRASH, ' '.join(str(e).split())[:500])

  def _died(self, reason: str) -> Optional[outcome.Outcome]:
    """The trial's end after too many deaths, else None: submitted again."""
    self._deaths += 1
    failure = too_many_deaths(self._deaths, reason)
    if failure:
      return failure
    self._on_rerun(reason)
    self._ref = self._executor.submit(self._args, self._trial_dir)
    return None

  def stop(self) -> None:
    """Ends the trial now: its worker is killed, and the trial process with it."""
    self._executor.ray.cancel(self._ref, force=True)
