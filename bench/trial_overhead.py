"""What a nas-garden trial costs beyond Model Garden's own training loop.

Trains the same tiny MnasNet on the same built-in digits for the same steps
(a) as a nas-garden trial, in its own process exactly as the controller runs
it: warm (a fork of a process with TensorFlow imported, the default) and
cold (a fresh Python, --nowarm_trials), and (b) directly with Model Garden's
`train_lib.run_experiment` in this process. Prints the steady train speeds,
their ratio (target >= 0.95), and each trial's fixed cost (process start,
imports, config, model build, graph trace, evaluation: wall time less the
steps at steady speed), side by side (target <= 5 s warm).
Last line: JSON with the figures.

Usage: python bench/trial_overhead.py [--steps=200] [--repeats=3]
                                      [--steps_per_loop=N] [--smoke]

--smoke: seconds of training, not minutes (SMOKE: one run each way of the
fewest steps that still time a steady train loop), to check the bench still
runs; its figures mean nothing.
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

from official.common import distribute_utils  # pylint: disable=g-import-not-at-top,wrong-import-position
from official.core import task_factory  # pylint: disable=wrong-import-position
from official.core import train_lib  # pylint: disable=wrong-import-position
from official.vision.utils import summary_manager  # pylint: disable=wrong-import-position
import tf_keras  # pylint: disable=wrong-import-position

from trainer import artifacts  # pylint: disable=wrong-import-position
from trainer.controller import executors  # pylint: disable=wrong-import-position
from trainer.controller import warm  # pylint: disable=wrong-import-position
from trainer.training import trial  # pylint: disable=wrong-import-position
import _smoke  # pylint: disable=wrong-import-position  (bench/)
import tiny_trial  # pylint: disable=wrong-import-position  (bench/)

# --smoke's settings (flags given explicitly still win).
SMOKE = {'steps': tiny_trial.SMOKE_STEPS,
         'steps_per_loop': tiny_trial.SMOKE_STEPS_PER_LOOP, 'repeats': 1}


def run_as_trial(job_dir: str, steps: int, steps_per_loop: int,
                 warm_trials: bool) -> dict:
  """(a) The controller's path: a `--mode=trial` process, warm or cold."""
  trial_id = 2 if warm_trials else 1
  trial_dir = artifacts.trial_dir(job_dir, 'search', trial_id)
  started = time.perf_counter()
  outcome = executors.LocalExecutor(warm_trials=warm_trials).run(
      tiny_trial.trial_args(job_dir, trial_id, steps, steps_per_loop),
      trial_dir)
  wall = time.perf_counter() - started
  if outcome.error:
    raise SystemExit(f'trial failed: {outcome.error.message} (see '
                     f'{os.path.join(trial_dir, artifacts.LOG_FILE)})')
  return dict(outcome.metrics, wall_s=wall,
              accuracy=outcome.metrics[tiny_trial.QUALITY_METRIC])


def run_model_garden_directly(job_dir: str, steps: int,
                              steps_per_loop: int) -> dict:
  """(b) The same config through Model Garden alone, in this process."""
  prepared = trial.prepare(tiny_trial.spec(steps, steps_per_loop),
                           artifacts.data_dir(job_dir))
  params = prepared.params
  tf_keras.utils.set_random_seed(prepared.seed)
  strategy = distribute_utils.get_distribution_strategy(
      distribution_strategy=params.runtime.distribution_strategy,
      num_gpus=params.runtime.num_gpus)
  model_dir = os.path.join(job_dir, 'direct')
  with strategy.scope():
    task = task_factory.get_task(params.task, logging_dir=model_dir)
  os.makedirs(model_dir, exist_ok=True)
  timer = trial.LoopTimer()
  evals = trial.EvalRecorder(
      os.path.join(model_dir, artifacts.EVALUATIONS_FILE), prepared.experiment,
      params, first_step=0)
  started = time.perf_counter()
  train_lib.run_experiment(
      distribution_strategy=strategy, task=task, mode='train_and_eval',
      params=params, model_dir=model_dir, train_actions=[timer],
      eval_actions=[evals],
      eval_summary_manager=summary_manager.maybe_build_eval_summary_manager(
          params=params, model_dir=model_dir))
  return {'steady_steps_per_s': timer.steady_steps_per_s(
              params.trainer.steps_per_loop),
          'wall_s': time.perf_counter() - started,
          'accuracy': evals.records[-1][prepared.quality_metric]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  tiny_trial.add_step_flags(parser)
  parser.add_argument('--repeats', type=int, default=3,
                      help='alternating runs of each side; medians reported')
  args = _smoke.parse_args(parser, SMOKE)
  print(f'tiny proxy: mnasnet at 32 px, batch 64, {args.steps} steps, digits; '
        f'{args.repeats} alternating runs each', flush=True)
  warm.server(executors.trial_env())
  warms, colds, directs = [], [], []
  for _ in range(args.repeats):
    job_dir = tempfile.mkdtemp(prefix='nas_garden_bench_')
    # Cold first: the warm trials' fork server (spawned below) has imported
    # by the time the first one starts.
    colds.append(run_as_trial(job_dir, args.steps, args.steps_per_loop, False))
    warms.append(run_as_trial(job_dir, args.steps, args.steps_per_loop, True))
    directs.append(run_model_garden_directly(job_dir, args.steps,
                                             args.steps_per_loop))

  def median(runs, key):
    return statistics.median(r[key] for r in runs)

  def fixed_cost(runs):
    """Median wall time less the steps at the median steady speed."""
    return median(runs, 'wall_s') - args.steps / median(
        runs, 'steady_steps_per_s')

  ours_speed = median(warms, 'steady_steps_per_s')
  direct_speed = median(directs, 'steady_steps_per_s')
  ratio = ours_speed / direct_speed
  fixed_s, fixed_cold_s = fixed_cost(warms), fixed_cost(colds)
  share = fixed_s / median(warms, 'wall_s')
  print(f'{"(medians)":24}{"warm trial":>14}{"cold trial":>14}'
        f'{"Model Garden direct":>22}')
  for label, key, form in (('steady steps/s', 'steady_steps_per_s', '.2f'),
                           ('top-1 accuracy', 'accuracy', '.4f'),
                           ('wall time (s)', 'wall_s', '.1f'),
                           ('start to first step (s)', 'setup_s', '.1f')):
    direct = (f'{median(directs, key):>22{form}}' if key in directs[0]
              else f'{"-":>22}')
    print(f'{label:24}{median(warms, key):>14{form}}'
          f'{median(colds, key):>14{form}}{direct}')
  print(f'{"fixed cost (s)":24}{fixed_s:>14.1f}{fixed_cold_s:>14.1f}'
        f'{"-":>22}   (target warm <= 5 s)')
  print(f'speed ratio warm trial/direct: {ratio:.3f} (target >= 0.95)')
  print(f'warm trial fixed cost: {fixed_s:.1f} s of '
        f'{median(warms, "wall_s"):.1f} s = {share:.1%}; cold '
        f'{fixed_cold_s:.1f} s')
  print(json.dumps({'trial_steps_per_s': round(ours_speed, 3),
                    'model_garden_steps_per_s': round(direct_speed, 3),
                    'ratio': round(ratio, 4),
                    'fixed_cost_s': round(fixed_s, 2),
                    'fixed_cost_s_cold': round(fixed_cold_s, 2),
                    'fixed_cost_share': round(share, 4)}))


if __name__ == '__main__':
  main()
