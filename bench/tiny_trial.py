"""The tiny trial the overhead benches run: a fixed MnasNet architecture
(the first Vertex AI NAS fixture sample), a fixed seed, and the shipped tiny
CPU proxy config shortened or lengthened to a number of steps.

Run as a script, it trains that trial once as the controller runs a trial (a
`--mode=trial` process started by the local executor) and ends with one line
of JSON: the trial's steady train speed, accuracy, setup and wall time.

Usage: python bench/tiny_trial.py [--steps=200] [--steps_per_loop=N] [--smoke]

--smoke: SMOKE_STEPS steps of SMOKE_STEPS_PER_LOOP per loop, the fewest that
still time a steady train loop; seconds of training, figures that mean
nothing.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from typing import List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from trainer import spec as spec_lib  # pylint: disable=wrong-import-position  (no TensorFlow)

SEED = 7
SEARCH_SPACE = 'mnasnet'
# The built-in digits at 32 px, by name (the default is generated shapes).
DIGITS = 'task.builtin_data=digits,task.model.input_size=[32,32,3]'
# The metric the tiny (classification) trial reports its accuracy under.
QUALITY_METRIC = 'top_1_accuracy'
# --smoke of the benches that train it: two train loops, since a trial's
# steady speed leaves out the first (which traces the graph).
SMOKE_STEPS, SMOKE_STEPS_PER_LOOP = 4, 2


def architecture() -> str:
  with open(os.path.join(REPO, 'tests', 'fixtures', 'vertex_nas_params',
                         'mnasnet.json')) as f:
    return json.load(f)['nas_params_str_samples'][0]


def override(steps: int, steps_per_loop: int = 0) -> str:
  """--params_override training `steps` steps on 32 px digits (the overhead
  benches' figures are on them) with one evaluation at the end;
  `steps_per_loop` (and the summary interval) replace the config's 50."""
  text = (f'{DIGITS},trainer.train_steps={steps},'
          f'trainer.validation_interval={steps},'
          f'trainer.checkpoint_interval={steps}')
  if steps_per_loop:
    text += (f',trainer.steps_per_loop={steps_per_loop},'
             f'trainer.summary_interval={steps_per_loop}')
  return text


def spec(steps: int, steps_per_loop: int = 0) -> spec_lib.TrialSpec:
  """The tiny trial of `steps` steps."""
  return spec_lib.TrialSpec(SEARCH_SPACE, nas_params_str=architecture(),
                            seed=SEED,
                            params_override=override(steps, steps_per_loop))


def trial_args(job_dir: str, trial_id: int, steps: int,
               steps_per_loop: int = 0) -> List[str]:
  """Interpreter arguments of the tiny trial's process (`python -m
  trainer.task --mode=trial ...`) as trial `trial_id` of `job_dir`'s search."""
  return spec(steps, steps_per_loop).to_argv(job_dir, trial_id)


def add_step_flags(parser: argparse.ArgumentParser) -> None:
  """--steps and --steps_per_loop of the benches that train the tiny trial."""
  parser.add_argument('--steps', type=int, default=200,
                      help='train steps (multiple of --steps_per_loop); the '
                           'shipped tiny CPU proxy uses 200')
  parser.add_argument('--steps_per_loop', type=int, default=0,
                      help="train steps per loop (0: the config's 50)")


def main() -> None:
  parser = argparse.ArgumentParser(description='Trains the tiny trial once.')
  add_step_flags(parser)
  # pylint: disable=g-import-not-at-top  (the benches importing this need not)
  import _smoke
  args = _smoke.parse_args(parser, {'steps': SMOKE_STEPS,
                                    'steps_per_loop': SMOKE_STEPS_PER_LOOP})
  from trainer import artifacts
  from trainer.controller import executors
  job_dir = tempfile.mkdtemp(prefix='nas_garden_bench_')
  trial_dir = artifacts.trial_dir(job_dir, 'search', 1)
  print(f'tiny trial: mnasnet at 32 px, batch 64, {args.steps} steps, digits; '
        f'{trial_dir}', flush=True)
  started = time.perf_counter()
  outcome = executors.LocalExecutor().run(
      trial_args(job_dir, 1, args.steps, args.steps_per_loop), trial_dir)
  wall = time.perf_counter() - started
  if outcome.error:
    raise SystemExit(f'trial failed: {outcome.error.message} (see '
                     f'{os.path.join(trial_dir, artifacts.LOG_FILE)})')
  metrics = outcome.metrics
  print(f'steady {metrics["steady_steps_per_s"]:.2f} steps/s, '
        f'{QUALITY_METRIC} {metrics[QUALITY_METRIC]:.4f}, setup '
        f'{metrics["setup_s"]:.1f} s, wall {wall:.1f} s')
  print(json.dumps({'steady_steps_per_s': round(metrics['steady_steps_per_s'], 3),
                    'accuracy': round(metrics[QUALITY_METRIC], 4),
                    'setup_s': round(metrics['setup_s'], 2),
                    'wall_s': round(wall, 2)}))


if __name__ == '__main__':
  main()
