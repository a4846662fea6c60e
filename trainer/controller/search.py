"""The search controller: proposes architectures, runs trials, learns from rewards.

All it knows lives in the store, so killing it at any instant and running the
same command again continues the same search: finished trials are kept, the
trial in flight is run again under its id, and the algorithm is rebuilt by
replaying the recorded history (see algorithms.replay).
"""

import fcntl
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import pyglove as pg

import search_spaces
from trainer import algorithms
from trainer import objective as objective_lib
from trainer import outcome as outcome_lib
from trainer.controller import early_stopping as early_stopping_lib
from trainer.controller import executors
from trainer.controller import leaderboard
from trainer.controller import store as store_lib

LOCK_FILE = 'controller.lock'


class SearchFailed(RuntimeError):
  """Too many trials failed."""


class ControllerLock:
  """Refuses a second live controller on a job dir; a dead one holds nothing.

  `flock` locks are released by the kernel when their holder dies, even by
  SIGKILL, so a crashed controller never blocks its own resume.
  """

  def __init__(self, job_dir: str):
    self._path = os.path.join(job_dir, LOCK_FILE)
    self._fd = None

  def __enter__(self):
    fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 32).decode(errors='replace').strip() or '?'
      os.close(fd)
      raise store_lib.StoreError(
          f'another controller (pid {holder}) is running on this job dir; '
          'wait for it or stop it first') from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    self._fd = fd
    return self

  def __exit__(self, *unused):
    os.close(self._fd)


class Search:
  """One stage's search loop over a store.

  Up to `max_parallel_trials` trials run at once; each result is recorded and
  fed back as soon as its trial ends. `launch(trial)` starts a trial and
  returns a handle whose `poll()` gives its outcome.Outcome once it has ended.
  """

  def __init__(self, store: store_lib.Store, stage: str, space: Any,
               algorithm: pg.DNAGenerator,
               launch: Callable[[store_lib.Trial], Any],
               objective: objective_lib.Objective, max_trials: int,
               max_failed_trials: int, progress: Callable[[str], None] = print,
               max_parallel_trials: int = 1,
               screen: Optional[Callable[[str], Optional[Tuple[dict, str]]]] = None,
               early_stopping: Optional[early_stopping_lib.MedianStopping] = None,
               skip_nan_error: bool = True):
    """The algorithm is fed `objective.feedback` of each rewarded trial; a
    ValueError there fails the trial. `screen(params)` returns (metrics,
    reason) for a candidate to record as infeasible without training it, or
    None to train it. With `skip_nan_error` a trial whose loss became NaN is
    infeasible (reward 0), not failed."""
    self.store, self.stage, self.space = store, stage, space
    self.algorithm, self.launch = algorithm, launch
    self.objective = objective
    self.max_trials, self.max_failed_trials = max_trials, max_failed_trials
    self.max_parallel_trials = max(1, max_parallel_trials)
    self.progress = progress
    self.screen, self.early_stopping = screen, early_stopping
    self.skip_nan_error = skip_nan_error
    self.dna_spec = pg.dna_spec(space)  # Costly to derive: computed once.

  def _from_params(self, nas_params_str: str) -> pg.DNA:
    return search_spaces.dna_from_nas_params(self.dna_spec, nas_params_str)

  def summary(self, nas_params_str: str) -> str:
    return search_spaces.architecture_summary(search_spaces.materialize(
        self.space, self._from_params(nas_params_str)))

  def run(self) -> List[store_lib.Trial]:
    """Runs trials until `max_trials` exist and have ended; returns them all."""
    self.algorithm.setup(self.dna_spec)
    trials = self.store.trials(self.stage)
    proposals = algorithms.replay(self.algorithm, trials,
                                  search_spaces.nas_params_from_dna,
                                  self._from_params, self.objective.feedback)
    if trials:
      self.progress(f'resuming: {len(trials)} trials in the store')
    in_flight: Dict[int, Tuple[store_lib.Trial, pg.DNA, Any, float]] = {}
    for trial in trials:
      if trial.status == store_lib.RUNNING:
        self.store.restart_trial(self.stage, trial.id)
        if not self._screened_out(trial, proposals[trial.id]):
          self._start(trial, proposals[trial.id], in_flight, restarted=True)
    exhausted = False
    while True:
      while len(in_flight) < self.max_parallel_trials and not exhausted:
        trials = self.store.trials(self.stage)
        if self._too_many_failures(trials) or len(trials) >= self.max_trials:
          break
        try:
          dna = self.algorithm.propose()
        except StopIteration:
          self.progress('the algorithm has no more architectures to propose')
          exhausted = True
          break
        trial = self.store.add_trial(self.stage,
                                     search_spaces.nas_params_from_dna(dna))
        if not self._screened_out(trial, dna):
          self._start(trial, dna, in_flight)
      if not in_flight:
        break
      self._collect(in_flight)
    trials = self.store.trials(self.stage)
    failed = self._too_many_failures(trials)
    if failed:
      raise SearchFailed(
          f'{len(failed)} trials failed (--max_failed_trials='
          f'{self.max_failed_trials}); last error: {failed[-1].error}')
    return trials

  def _too_many_failures(self, trials) -> List[store_lib.Trial]:
    failed = [t for t in trials if t.status == store_lib.FAILED]
    return failed if (self.max_failed_trials and
                      len(failed) >= self.max_failed_trials) else []

  def _start(self, trial, dna, in_flight, restarted=False) -> None:
    self.progress(f'trial {trial.id:>3}/{self.max_trials} '
                  f'{"re-running" if restarted else "running"}  | '
                  f'{self.summary(trial.nas_params_str)}')
    in_flight[trial.id] = (trial, dna, self.launch(trial), time.time())

  def _screened_out(self, trial, dna) -> bool:
    """Records a candidate the screen rejects as infeasible, untrained."""
    verdict = self.screen(trial.nas_params_str) if self.screen else None
    if verdict is None:
      return False
    metrics, reason = verdict
    self.progress(f'trial {trial.id:>3}/{self.max_trials} infeasible | '
                  f'{self.summary(trial.nas_params_str)}')
    self._finish(trial, dna, store_lib.INFEASIBLE, metrics, 0.0, reason,
                 time.time())
    return True

  def _collect(self, in_flight) -> None:
    """Waits until at least one trial in flight ended or was stopped early;
    records those."""
    while True:
      ended = []
      for trial_id, (trial, _, handle, _) in in_flight.items():
        ending = handle.poll()
        if ending is None and self.early_stopping:
          ending = self.early_stopping.check(
              handle.trial_dir, self.store.trials(self.stage))
          if ending is not None:
            handle.stop()
        if ending is not None:
          ended.append((trial_id, ending))
      if ended:
        break
      time.sleep(executors.POLL_S)
    for trial_id, ending in ended:
      trial, dna, _, started = in_flight.pop(trial_id)
      self._record(trial, dna, ending, started)

  def _record(self, trial, dna, ending: outcome_lib.Outcome,
              started: float) -> None:
    error = ending.error and ending.error.message
    if ending.status == outcome_lib.FAILED:
      nan = ending.error.kind == outcome_lib.NAN
      if nan and self.skip_nan_error:
        self._finish(trial, dna, outcome_lib.INFEASIBLE, None, 0.0, error,
                     started)
      else:
        self._finish(trial, dna, outcome_lib.FAILED, ending.metrics, None,
                     error, started)
      return
    status, metrics = ending.status, ending.metrics
    if status == outcome_lib.STOPPED and not metrics['evaluations']:
      # Stopped before its first evaluation: nothing to reward.
      self._finish(trial, dna, status, metrics, None, None, started)
      return
    try:
      reward = self.objective.reward(metrics)
      self.objective.feedback(status, metrics, reward)
    except ValueError as e:
      status, reward, error = outcome_lib.FAILED, None, str(e)
    self._finish(trial, dna, status, metrics, reward, error, started)

  def _finish(self, trial, dna, status, metrics, reward, error,
              started) -> None:
    """Stores the trial's end; a rewarded trial is fed back to the algorithm."""
    self.store.finish_trial(self.stage, trial.id, status, metrics, reward,
                            error)
    if reward is not None:
      value = self.objective.feedback(status, metrics, reward)
      if value is not None:
        self.algorithm.feedback(dna, value)
    done = self.store.trial(self.stage, trial.id)
    self.progress(leaderboard.trial_line(done, self.objective.metric) +
                  f' (this run {time.time() - started:.1f}s)')
