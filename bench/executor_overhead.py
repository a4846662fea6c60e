"""Per-trial scheduling overhead of the local and Ray executors.

The same tiny trial (MnasNet at 32 px on the built-in digits, fixed
architecture and seed: a `--mode=trial` process, which is what a trial is)
runs (a) directly: its process started and waited for, nothing else; (b)
through the search controller with the local executor; (c) through the
controller with the Ray executor on a local Ray instance. A controller
trial's time runs from its store row's creation to its result being stored,
so it holds the proposal bookkeeping, the executor's start, polling, result
reading and the store writes. Overhead = median controller trial time -
median direct time; share = overhead / median direct time. Targets: under
1 s and under 5% per trial. Runs alternate between the three, in rounds.
Last line: JSON with the figures.

Usage: python bench/executor_overhead.py [--steps=200] [--rounds=3]
                                         [--trials_per_round=2]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import search_spaces  # pylint: disable=wrong-import-position
from trainer import algorithms  # pylint: disable=wrong-import-position
from trainer import artifacts  # pylint: disable=wrong-import-position
from trainer import executors  # pylint: disable=wrong-import-position
from trainer import reward as reward_lib  # pylint: disable=wrong-import-position
from trainer import search  # pylint: disable=wrong-import-position
from trainer import store as store_lib  # pylint: disable=wrong-import-position
import tiny_trial  # pylint: disable=wrong-import-position  (bench/)

def trial_args(job_dir: str, trial_id: int, override: str):
  return executors.trial_argv({
      'search_space': 'mnasnet', 'job_dir': job_dir, 'trial_id': trial_id,
      'seed': tiny_trial.SEED, 'params_override': override,
      'nas_params_str': tiny_trial.architecture()})


def run_direct(job_dir: str, trial_id: int, override: str) -> float:
  """(a) The trial process alone."""
  trial_dir = artifacts.trial_dir(job_dir, 'search', trial_id)
  started = time.perf_counter()
  process, log = executors.start_process(
      trial_args(job_dir, trial_id, override), trial_dir)
  returncode = process.wait()
  log.close()
  outcome = executors.read_outcome(trial_dir, returncode)
  wall = time.perf_counter() - started
  if outcome.error:
    raise SystemExit(f'trial failed: {outcome.error}')
  return wall


def run_controller(executor, job_dir: str, count: int, override: str):
  """(b), (c): `count` trials of the architecture through the controller;
  their controller times."""
  space = search_spaces.get_search_space('mnasnet')
  dna = search_spaces.dna_from_nas_params(space, tiny_trial.architecture())
  store = store_lib.Store.open(job_dir, create=True)
  trials = search.Search(
      store, 'search', space, algorithms.FixedProposals([dna] * count),
      lambda t: executor.start(trial_args(job_dir, t.id, override),
                               artifacts.trial_dir(job_dir, 'search', t.id)),
      reward_lib.Reward(), count, 0, progress=lambda line: None).run()
  failed = [t.error for t in trials if t.status != store_lib.COMPLETED]
  if failed:
    raise SystemExit(f'trial failed: {failed[0]}')
  return [t.finished_at - t.created_at for t in trials]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=200,
                      help='train steps (multiple of 50); the shipped tiny '
                           'CPU proxy uses 200')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--trials_per_round', type=int, default=2)
  args = parser.parse_args()
  override = tiny_trial.override(args.steps)
  cpus = os.cpu_count()
  started = time.perf_counter()
  ray_executor = executors.RayExecutor(cpus_per_trial=cpus)
  ray_start_s = time.perf_counter() - started
  local_executor = executors.LocalExecutor()
  print(f'tiny trial: mnasnet at 32 px, batch 64, {args.steps} steps, digits; '
        f'{args.rounds} rounds of {args.trials_per_round} trials each way; '
        f'Ray: local instance, {cpus} CPUs per trial, started in '
        f'{ray_start_s:.1f} s (once per search)', flush=True)
  root = tempfile.mkdtemp(prefix='nas_garden_bench_')
  times = {'direct': [], 'local': [], 'ray': []}
  next_id = 1
  for round_index in range(args.rounds):
    job_dir = os.path.join(root, f'direct_{round_index}')
    for _ in range(args.trials_per_round):
      times['direct'].append(run_direct(job_dir, next_id, override))
      next_id += 1
    for name, executor in (('local', local_executor), ('ray', ray_executor)):
      times[name] += run_controller(
          executor, os.path.join(root, f'{name}_{round_index}'),
          args.trials_per_round, override)
    print(f'round {round_index + 1}: ' + ', '.join(
        f'{name} {statistics.median(t[-args.trials_per_round:]):.2f} s'
        for name, t in times.items()), flush=True)

  direct = statistics.median(times['direct'])
  figures = {}
  print(f'{"":8}{"median trial s":>16}{"min-max s":>14}{"overhead s":>12}'
        f'{"share":>8}')
  for name in ('direct', 'local', 'ray'):
    median = statistics.median(times[name])
    spread = f'{min(times[name]):.2f}-{max(times[name]):.2f}'
    overhead = median - direct
    if name != 'direct':
      figures[f'{name}_overhead_s'] = round(overhead, 3)
      figures[f'{name}_overhead_share'] = round(overhead / direct, 4)
    print(f'{name:8}{median:>16.2f}{spread:>14}' + (
        f'{overhead:>12.2f}{overhead / direct:>8.1%}' if name != 'direct'
        else f'{"-":>12}{"-":>8}'))
  print('targets: overhead under 1 s and under 5% of the trial; a trial\'s '
        'own time varies by a few tenths of a second from run to run')
  print(json.dumps(figures))


if __name__ == '__main__':
  main()
