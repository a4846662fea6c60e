"""Per-trial scheduling overhead of the local and Ray executors.

The same tiny trial (MnasNet at 32 px on the built-in digits, fixed
architecture and seed: a `--mode=trial` process, which is what a trial is)
runs (a) directly: its process started and waited for, nothing else; (b)
through the search controller with the local executor; (c) through the
controller with the Ray executor on a local Ray instance.

Each trial process is started by a small timing launcher that records when
the trial process began and ended. A controller trial's time runs from its
store row's creation to its result being stored: the proposal bookkeeping,
the executor's start, Ray's scheduling, polling, result reading and the
store writes. Its overhead is that time minus its own trial process's
lifetime, trial by trial, so the few tenths of a second by which one
training run differs from the next do not blur the figure (the launcher's
own start, about 0.03 s, counts as overhead). The medians of the plain wall
times are printed beside it as a cross-check. Share = overhead / the
median trial lifetime. Targets: under 1 s and under 5% per trial.
Last line: JSON with the figures.

Usage: python bench/executor_overhead.py [--steps=200] [--rounds=2]
                                         [--trials_per_round=2]
                                         [--steps_per_loop=N] [--smoke]

--smoke: seconds of training, not minutes (SMOKE: one round of one trial
each way, of the fewest steps that still time a steady train loop), to
check the bench still runs; its figures mean nothing.
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
from trainer import objective  # pylint: disable=wrong-import-position
from trainer.controller import executors  # pylint: disable=wrong-import-position
from trainer.controller import search  # pylint: disable=wrong-import-position
from trainer.controller import store as store_lib  # pylint: disable=wrong-import-position
import _smoke  # pylint: disable=wrong-import-position  (bench/)
import tiny_trial  # pylint: disable=wrong-import-position  (bench/)

LIFETIME_FILE = 'trial_process_lifetime.json'
# --smoke's settings (flags given explicitly still win).
SMOKE = {'steps': tiny_trial.SMOKE_STEPS,
         'steps_per_loop': tiny_trial.SMOKE_STEPS_PER_LOOP, 'rounds': 1,
         'trials_per_round': 1}
# Runs the trial process and writes [start, end] (time.time()) beside it.
_LAUNCHER = '''
import json, os, subprocess, sys, time
started = time.time()
code = subprocess.call([sys.executable, *sys.argv[2:]])
with open(sys.argv[1], 'w') as f:
  json.dump([started, time.time()], f)
sys.exit(code)
'''


def timed_trial_args(job_dir: str, trial_id: int, steps):
  """The tiny trial's interpreter arguments behind the launcher's;
  `steps`: (train steps, steps per loop)."""
  lifetime_path = os.path.join(artifacts.trial_dir(job_dir, 'search', trial_id),
                               LIFETIME_FILE)
  return (['-c', _LAUNCHER, lifetime_path] +
          tiny_trial.trial_args(job_dir, trial_id, *steps))


def lifetime(job_dir: str, trial_id: int) -> float:
  with open(os.path.join(artifacts.trial_dir(job_dir, 'search', trial_id),
                         LIFETIME_FILE)) as f:
    started, ended = json.load(f)
  return ended - started


def run_direct(job_dir: str, trial_id: int, steps):
  """(a) The trial process alone: (wall time, its lifetime)."""
  started = time.time()
  outcome = executors.run_trial_process(
      timed_trial_args(job_dir, trial_id, steps),
      artifacts.trial_dir(job_dir, 'search', trial_id))
  wall = time.time() - started
  if outcome.error:
    raise SystemExit(f'trial failed: {outcome.error.message}')
  return [(wall, lifetime(job_dir, trial_id))]


def run_controller(executor, job_dir: str, count: int, steps):
  """(b), (c): `count` trials of the architecture through the controller:
  (controller time, lifetime) of each."""
  space = search_spaces.get_search_space('mnasnet')
  dna = search_spaces.dna_from_nas_params(space, tiny_trial.architecture())
  store = store_lib.Store.open(job_dir, create=True)
  trials = search.Search(
      store, 'search', space, algorithms.FixedProposals([dna] * count),
      lambda t: executor.start(timed_trial_args(job_dir, t.id, steps),
                               artifacts.trial_dir(job_dir, 'search', t.id)),
      objective.Objective(tiny_trial.QUALITY_METRIC), count, 0,
      progress=lambda line: None).run()
  failed = [t.error for t in trials if t.status != store_lib.COMPLETED]
  if failed:
    raise SystemExit(f'trial failed: {failed[0]}')
  return [(t.finished_at - t.created_at, lifetime(job_dir, t.id))
          for t in trials]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  tiny_trial.add_step_flags(parser)
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--trials_per_round', type=int, default=2)
  args = _smoke.parse_args(parser, SMOKE)
  steps = (args.steps, args.steps_per_loop)
  cpus = os.cpu_count()
  started = time.time()
  ray_executor = executors.RayExecutor(cpus_per_trial=cpus)
  ray_start_s = time.time() - started
  local_executor = executors.LocalExecutor()
  print(f'tiny trial: mnasnet at 32 px, batch 64, {args.steps} steps, digits; '
        f'{args.rounds} rounds of {args.trials_per_round} trials each way; '
        f'Ray: local instance, {cpus} CPUs per trial, started in '
        f'{ray_start_s:.1f} s (once per search)', flush=True)
  root = tempfile.mkdtemp(prefix='nas_garden_bench_')
  runs = {'direct': [], 'local': [], 'ray': []}
  for round_index in range(args.rounds):
    job_dir = os.path.join(root, f'direct_{round_index}')
    for trial_id in range(1, args.trials_per_round + 1):
      runs['direct'] += run_direct(job_dir, trial_id, steps)
    for name, executor in (('local', local_executor), ('ray', ray_executor)):
      runs[name] += run_controller(
          executor, os.path.join(root, f'{name}_{round_index}'),
          args.trials_per_round, steps)
    print(f'round {round_index + 1}: ' + ', '.join(
        f'{name} {statistics.median(w for w, _ in r[-args.trials_per_round:]):.2f} s'
        for name, r in runs.items()), flush=True)

  trial_s = statistics.median(life for r in runs.values() for _, life in r)
  direct_wall = statistics.median(w for w, _ in runs['direct'])
  figures = {}
  print(f'{"":8}{"median wall s":>15}{"overhead s (median, min-max)":>32}'
        f'{"share":>8}')
  for name, pairs in runs.items():
    overheads = [wall - life for wall, life in pairs]
    overhead = statistics.median(overheads)
    if name != 'direct':
      figures[f'{name}_overhead_s'] = round(overhead, 3)
      figures[f'{name}_overhead_share'] = round(overhead / trial_s, 4)
    print(f'{name:8}{statistics.median(w for w, _ in pairs):>15.2f}'
          f'{overhead:>14.3f} ({min(overheads):.3f}-{max(overheads):.3f})'
          f'{"":>3}{overhead / trial_s:>8.2%}')
  print(f'median trial process lifetime {trial_s:.2f} s; wall-time cross-check '
        f'(median wall - direct median wall): ' + ', '.join(
            f'{name} {statistics.median(w for w, _ in runs[name]) - direct_wall:+.2f} s'
            for name in ('local', 'ray')))
  print('targets: overhead under 1 s and under 5% of the trial')
  print(json.dumps(figures))


if __name__ == '__main__':
  main()
