"""What a nas-garden trial costs beyond Model Garden's own training loop.

Trains the same tiny MnasNet on the same built-in digits for the same steps
(a) as a nas-garden trial, in its own process exactly as the controller runs
it, and (b) directly with Model Garden's `train_lib.run_experiment` in this
process. Prints both steady train speeds, their ratio (target >= 0.95), and
the trial's fixed cost (process start, imports, config, model build, graph
trace, evaluation) as a share of the whole tiny proxy trial.
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
from trainer.training import trial  # pylint: disable=wrong-import-position
import _smoke  # pylint: disable=wrong-import-position  (bench/)
import tiny_trial  # pylint: disable=wrong-import-position  (bench/)

# --smoke's settings (flags given explicitly still win).
SMOKE = {'steps': tiny_trial.SMOKE_STEPS,
         'steps_per_loop': tiny_trial.SMOKE_STEPS_PER_LOOP, 'repeats': 1}


def run_as_trial(job_dir: str, steps: int, steps_per_loop: int) -> dict:
  """(a) The controller's path: a fresh `--mode=trial` process."""
  trial_dir = artifacts.trial_dir(job_dir, 'search', 1)
  started = time.perf_counter()
  outcome = executors.LocalExecutor().run(
      tiny_trial.trial_args(job_dir, 1, steps, steps_per_loop), trial_dir)
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
  trials, directs = [], []
  for _ in range(args.repeats):
    job_dir = tempfile.mkdtemp(prefix='nas_garden_bench_')
    trials.append(run_as_trial(job_dir, args.steps, args.steps_per_loop))
    directs.append(run_model_garden_directly(job_dir, args.steps,
                                             args.steps_per_loop))

  def median(runs, key):
    return statistics.median(r[key] for r in runs)

  ours_speed = median(trials, 'steady_steps_per_s')
  direct_speed = median(directs, 'steady_steps_per_s')
  ratio = ours_speed / direct_speed
  wall = median(trials, 'wall_s')
  fixed_s = wall - args.steps / ours_speed
  share = fixed_s / wall
  print(f'{"(medians)":28}{"nas-garden trial":>18}{"Model Garden direct":>22}')
  print(f'{"steady steps/s":28}{ours_speed:>18.2f}{direct_speed:>22.2f}')
  print(f'{"top-1 accuracy":28}{median(trials, "accuracy"):>18.4f}'
        f'{median(directs, "accuracy"):>22.4f}')
  print(f'{"wall time (s)":28}{wall:>18.1f}{median(directs, "wall_s"):>22.1f}'
        '   (direct: no process start, imports or config)')
  print(f'speed ratio trial/direct: {ratio:.3f} (target >= 0.95)')
  print(f'trial fixed cost: {fixed_s:.1f} s of {wall:.1f} s = {share:.1%} '
        f'(process start + imports + config: {median(trials, "setup_s"):.1f} s; '
        'model build, graph trace, eval, FLOPs count, checkpoints: the rest)')
  print(json.dumps({'trial_steps_per_s': round(ours_speed, 3),
                    'model_garden_steps_per_s': round(direct_speed, 3),
                    'ratio': round(ratio, 4),
                    'fixed_cost_share': round(share, 4)}))


if __name__ == '__main__':
  main()
