"""The search controller: proposes architectures, runs trials, learns from rewards.

All it knows lives in the store, so killing it at any instant and running the
same command again continues the same search: finished trials are kept, the
trial in flight is run again under its id, and the algorithm is rebuilt by
replaying the recorded history (see algorithms.replay).
"""

import fcntl
import os
import time
from typing import Any, Callable, List

import pyglove as pg

import search_spaces
from trainer import algorithms
from trainer import executors
from trainer import leaderboard
from trainer import reward as reward_lib
from trainer import store as store_lib

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
  """One stage's search loop over a store."""

  def __init__(self, store: store_lib.Store, stage: str, space: Any,
               algorithm: pg.DNAGenerator,
               run_trial: Callable[[store_lib.Trial], executors.TrialOutcome],
               reward: reward_lib.Reward, max_trials: int,
               max_failed_trials: int, progress: Callable[[str], None] = print):
    self.store, self.stage, self.space = store, stage, space
    self.algorithm, self.run_trial, self.reward = algorithm, run_trial, reward
    self.max_trials, self.max_failed_trials = max_trials, max_failed_trials
    self.progress = progress
    self.dna_spec = pg.dna_spec(space)  # Costly to derive: computed once.

  def _from_params(self, nas_params_str: str) -> pg.DNA:
    return search_spaces.dna_from_nas_params(self.dna_spec, nas_params_str)

  def summary(self, nas_params_str: str) -> str:
    return search_spaces.architecture_summary(search_spaces.materialize(
        self.space, self._from_params(nas_params_str)))

  def run(self) -> List[store_lib.Trial]:
    """Runs trials until `max_trials` exist; returns them all."""
    self.algorithm.setup(self.dna_spec)
    trials = self.store.trials(self.stage)
    proposals = algorithms.replay(self.algorithm, trials,
                                  search_spaces.nas_params_from_dna,
                                  self._from_params)
    if trials:
      self.progress(f'resuming: {len(trials)} trials in the store')
    for trial in trials:
      if trial.status == store_lib.RUNNING:
        self.store.restart_trial(self.stage, trial.id)
        self._execute(trial, proposals[trial.id], restarted=True)
    while True:
      trials = self.store.trials(self.stage)
      failed = [t for t in trials if t.status == store_lib.FAILED]
      if self.max_failed_trials and len(failed) >= self.max_failed_trials:
        raise SearchFailed(
            f'{len(failed)} trials failed (--max_failed_trials='
            f'{self.max_failed_trials}); last error: {failed[-1].error}')
      if len(trials) >= self.max_trials:
        return trials
      try:
        dna = self.algorithm.propose()
      except StopIteration:
        self.progress('the algorithm has no more architectures to propose')
        return trials
      trial = self.store.add_trial(self.stage,
                                   search_spaces.nas_params_from_dna(dna))
      self._execute(trial, dna)

  def _execute(self, trial: store_lib.Trial, dna: pg.DNA,
               restarted: bool = False) -> None:
    summary = self.summary(trial.nas_params_str)
    self.progress(f'trial {trial.id:>3}/{self.max_trials} '
                  f'{"re-running" if restarted else "running"}  | {summary}')
    started = time.time()
    outcome = self.run_trial(trial)
    if outcome.metrics is not None:
      reward = self.reward(outcome.metrics)
      self.store.complete_trial(self.stage, trial.id, outcome.metrics, reward)
      self.algorithm.feedback(dna, reward)
    else:
      self.store.fail_trial(self.stage, trial.id, outcome.error)
    done = self.store.trial(self.stage, trial.id)
    self.progress(leaderboard.trial_line(done) +
                  f' (this run {time.time() - started:.1f}s)')
