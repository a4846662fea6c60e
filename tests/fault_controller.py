"""A real search controller (store, lock, local executor, algorithm replay)
whose trials are cheap processes (tests/stand_in_trial.py), so that one
search can be killed many times in a test:

  python -m tests.fault_controller JOB_DIR MAX_TRIALS
"""

import os
import sys

import search_spaces
from trainer import algorithms
from trainer import objective
from trainer.controller import executors
from trainer.controller import search
from trainer.controller import store as store_lib


def make_search(job_dir: str, max_trials: int, launch) -> search.Search:
  return search.Search(
      store_lib.Store.open(job_dir, create=True), 'search',
      search_spaces.get_search_space('mnasnet'),
      algorithms.make_algorithm('regularized_evolution', seed=5,
                                population_size=4, tournament_size=2),
      launch, objective.Objective('top_1_accuracy'), max_trials, 0, progress=lambda line: None)


def control(job_dir: str, max_trials: int) -> None:
  executor = executors.LocalExecutor()

  def launch(trial):
    trial_dir = os.path.join(job_dir, 'trials', str(trial.id))
    return executor.start(['-m', 'tests.stand_in_trial', trial_dir,
                           trial.nas_params_str], trial_dir)

  controller = make_search(job_dir, max_trials, launch)
  try:
    with search.ControllerLock(job_dir):
      controller.run()
  except store_lib.StoreError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  control(sys.argv[1], int(sys.argv[2]))
