"""Search cost: multi-trial evolution against the one-shot (TuNAS) search.

In one run, on the built-in classification task (the shipped
`mnasnet_classification_search_cpu` proxy on generated shapes), with the
same space (`mnasnet`) and FLOPs target:

(a) `--mode=search` (evolution) of `--trials` real trials through the CLI;
(b) `--mode=oneshot_search` through the CLI, for as many supernet steps as
    make its compute `--compute_fraction` of (a)'s, ranking
    `--rank_samples` random architectures with the supernet's weights.

The best of each is retrained with the full-training config
(`mnasnet_classification_train_cpu`) under `--seeds` seeds, and the ranked
architectures are trained stand-alone on the proxy: Kendall τ between their
supernet accuracy (inherited weights, recalibrated batch norm) and their
stand-alone accuracy says how well the supernet ranks.

Compute is examples through the network: for (a) each completed trial's
train steps × batch; for (b) the supernet's train steps × batch plus the
policy's validation examples (forward passes only, counted in full).

Usage: python bench/search_cost.py [--trials=16] [--target_flops=0.006]
  [--compute_fraction=0.1] [--rank_samples=16] [--seeds=3] [--seed=0]
  [--params_override=...] [--train_params_override=...] [--job_dir=DIR]
  [--smoke]

--smoke: 2 trials, 4-step proxies of half depth on digits, 2 ranked
samples, 1 seed: figures that mean nothing.

Ends with one line of JSON: multi_trial_compute, oneshot_compute,
compute_ratio, multi_trial_accuracy, oneshot_accuracy (means over seeds;
`_std` beside each), supernet_kendall_tau, the supernet's final training
loss beside a uniform prediction's (at chance, its ranking means nothing),
and wall times.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import yaml  # pylint: disable=wrong-import-position

from architecture_spread import Runner, summary  # pylint: disable=wrong-import-position
from proxy_tasks import kendall  # pylint: disable=wrong-import-position
from trainer import artifacts  # pylint: disable=wrong-import-position
from trainer import spec as spec_lib  # pylint: disable=wrong-import-position
from trainer.controller import leaderboard  # pylint: disable=wrong-import-position
from trainer.controller import store as store_lib  # pylint: disable=wrong-import-position
from trainer.modes import oneshot as oneshot_mode  # pylint: disable=wrong-import-position

SMOKE_OVERRIDE = ('task.builtin_data=digits,task.model.input_size=[32,32,3],'
                  'trainer.train_steps=4,trainer.steps_per_loop=2,'
                  'trainer.summary_interval=2,trainer.validation_interval=4,'
                  'trainer.checkpoint_interval=4,'
                  # Half the repeats: half the supernet's graph to trace.
                  'task.model.backbone.tunable_mnasnet.depth_multiplier=0.5')
# The one-shot search's policy steps draw validation batches of the training
# batch's size (the config's 128 would double its compute).
VALIDATION_BATCH = 'task.validation_data.global_batch_size'
TRAIN_BATCH = 'task.train_data.global_batch_size'
# The one-shot search's warm-up (uniform paths, no policy steps), passed as
# its flag so that oneshot_steps() counts the compute it runs with.
WARMUP_FRACTION = 0.25


def cli(*flags: str) -> float:
  """Runs `python -m trainer.task` with flags, its output passed through;
  returns its wall time. Exits if it fails."""
  started = time.perf_counter()
  env = dict(os.environ, PYTHONPATH=REPO,
             TF_CPP_MIN_LOG_LEVEL=os.environ.get('TF_CPP_MIN_LOG_LEVEL', '3'))
  result = subprocess.run([sys.executable, '-m', 'trainer.task', *flags],
                          cwd=REPO, env=env, check=False)
  if result.returncode:
    raise SystemExit(f'{flags[0]} failed ({result.returncode})')
  return time.perf_counter() - started


def trained_batch(job_dir: str, stage: str, trial_id: int) -> int:
  """The training batch a trial ran with (its params.yaml)."""
  path = os.path.join(artifacts.trial_dir(job_dir, stage, trial_id),
                      'params.yaml')
  with open(path) as f:
    # FullLoader: Model Garden writes tuples as python/tuple.
    config = yaml.load(f, Loader=yaml.FullLoader)
  return int(config['task']['train_data']['global_batch_size'])


def multi_trial(args, job_dir: str) -> Dict[str, object]:
  print(f'(a) evolution search of {args.trials} trials in {job_dir}',
        flush=True)
  wall = cli('--mode=search', f'--job_dir={job_dir}', '--search_space=mnasnet',
             '--algorithm=evolution', f'--max_trials={args.trials}',
             f'--target_flops_multi_adds_billion={args.target_flops}',
             f'--params_override={args.params_override}',
             f'--seed={args.seed}')
  trials = store_lib.Store.open(job_dir, read_only=True).trials('search')
  done = [t for t in trials if t.status == store_lib.COMPLETED]
  compute = sum(t.metrics['train_steps'] * trained_batch(job_dir, 'search', t.id)
                for t in done)
  best = leaderboard.best(trials)
  return {'nas_params_str': best.nas_params_str, 'compute': compute,
          'wall_s': wall, 'trials': len(done),
          'search_accuracy': best.metrics['top_1_accuracy'],
          'flops': best.metrics['multi_add_flops_billion'],
          'batch': trained_batch(job_dir, 'search', best.id)}


def oneshot_steps(compute: float, fraction: float, batch: int,
                  warmup: float) -> int:
  """Supernet steps whose compute (a train batch each, and a validation
  batch of the same size each after the warm-up) is `fraction` of
  `compute`."""
  return max(4, math.floor(fraction * compute / (batch * (2 - warmup))))


def oneshot(args, job_dir: str, steps: int, batch: int) -> Dict[str, object]:
  print(f'(b) one-shot search, {steps} supernet steps, in {job_dir}',
        flush=True)
  override = ','.join(filter(None, [
      args.params_override, f'trainer.train_steps={steps}',
      f'{VALIDATION_BATCH}={batch}', f'{TRAIN_BATCH}={batch}',
      # The shipped cosine schedule decays over the new length.
      f'trainer.optimizer_config.learning_rate.cosine.decay_steps={steps}']))
  wall = cli('--mode=oneshot_search', f'--job_dir={job_dir}',
             '--search_space=mnasnet',
             f'--target_flops_multi_adds_billion={args.target_flops}',
             f'--params_override={override}', f'--seed={args.seed}',
             f'--oneshot_rank_samples={args.rank_samples}',
             f'--oneshot_warmup_fraction={WARMUP_FRACTION}',
             f'--oneshot_checkpoint_steps={max(1, steps // 5)}')
  with open(os.path.join(job_dir, oneshot_mode.ONESHOT_DIR,
                         oneshot_mode.RESULT_FILE)) as f:
    result = json.load(f)
  figures = result['metrics']['oneshot']
  return {'nas_params_str': result['nas_params_str'],
          'compute': figures['train_examples'] + figures['validation_examples'],
          'wall_s': wall, 'supernet_steps': steps,
          'search_s': figures['search_s_this_run'],
          'final_train_loss': figures['final_train_loss'],
          'chance_loss': figures['chance_loss'],
          'search_accuracy': result['metrics']['top_1_accuracy'],
          'flops': result['metrics']['multi_add_flops_billion'],
          'ranked': result['ranked_samples']}


def retrained(runner: Runner, name: str, nas_params_str: str, seeds: int,
              base_seed: int) -> List[float]:
  accuracies = []
  for s in range(1, seeds + 1):
    accuracies.append(runner.accuracy(
        nas_params_str, spec_lib.trial_seed(base_seed, s))['accuracy'])
    print(f'  {name}, seed {s}/{seeds}: top-1 {accuracies[-1]:.4f}',
          flush=True)
  return accuracies


def std(values: List[float]) -> float:
  return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--trials', type=int, default=16)
  # Below the median of random architectures' (0.0065 at 64 px), so binding.
  parser.add_argument('--target_flops', type=float, default=0.006,
                      help='multiply-adds (billions) both searches aim at')
  parser.add_argument('--compute_fraction', type=float, default=0.1)
  parser.add_argument('--rank_samples', type=int, default=16)
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--params_override', default='',
                      help='after the shipped search config, for both')
  parser.add_argument('--train_params_override', default='',
                      help='after the shipped full-training config')
  parser.add_argument('--job_dir', default='',
                      help='where the jobs go (default: a temp dir)')
  import _smoke  # pylint: disable=g-import-not-at-top
  args = _smoke.parse_args(parser, {
      'trials': 2, 'rank_samples': 2, 'seeds': 1,
      'params_override': SMOKE_OVERRIDE,
      'train_params_override': SMOKE_OVERRIDE})
  root = args.job_dir or tempfile.mkdtemp(prefix='nas_garden_search_cost_')
  started = time.perf_counter()

  multi = multi_trial(args, os.path.join(root, 'multi_trial'))
  steps = oneshot_steps(multi['compute'], args.compute_fraction,
                        multi['batch'], WARMUP_FRACTION)
  shot = oneshot(args, os.path.join(root, 'oneshot'), steps, multi['batch'])

  print(f'stand-alone proxy training of the {len(shot["ranked"])} ranked '
        'architectures', flush=True)
  alone = Runner(os.path.join(root, 'standalone'), args.params_override)
  for i, sample in enumerate(shot['ranked'], 1):
    sample['standalone_accuracy'] = alone.accuracy(
        sample['nas_params_str'], args.seed)['accuracy']
    print(f'  {i}/{len(shot["ranked"])}: top-1 '
          f'{sample["standalone_accuracy"]:.4f}', flush=True)
  tau = kendall.kendall_tau([s['supernet_accuracy'] for s in shot['ranked']],
                            [s['standalone_accuracy'] for s in shot['ranked']])

  print(f'retraining each best under {args.seeds} seeds (full-training '
        'config)', flush=True)
  train = Runner(os.path.join(root, 'retrain'), args.train_params_override,
                 stage='train')
  for name, result in (('multi-trial', multi), ('one-shot', shot)):
    result['accuracies'] = retrained(train, name, result['nas_params_str'],
                                     args.seeds, args.seed)

  print(f'\n{"":>12}  {"compute":>9}  {"wall s":>7}  {"MFLOPs":>7}  '
        f'{"retrained top-1":>17}  architecture')
  for name, r in (('multi-trial', multi), ('one-shot', shot)):
    accuracy = (f'{statistics.mean(r["accuracies"]):.3f} ± '
                f'{std(r["accuracies"]):.3f}')
    print(f'{name:>12}  {r["compute"]:>9}  {r["wall_s"]:7.0f}  '
          f'{r["flops"] * 1e3:7.2f}  {accuracy:>17}  '
          f'{summary(r["nas_params_str"])}')
  print(f'\nsupernet training loss at the end {shot["final_train_loss"]:.4f}'
        f' (a uniform prediction\'s: {shot["chance_loss"]:.4f})')
  print(f'supernet accuracy vs stand-alone proxy accuracy '
        f'({len(shot["ranked"])} architectures), Kendall τ = {tau}')
  for s in shot['ranked']:
    print(f'  {s["supernet_accuracy"]:.3f}  {s["standalone_accuracy"]:.3f}  '
          f'{summary(s["nas_params_str"])}')
  print(json.dumps({
      'multi_trial_compute': multi['compute'],
      'oneshot_compute': shot['compute'],
      'compute_ratio': round(shot['compute'] / multi['compute'], 4),
      'multi_trial_accuracy': round(statistics.mean(multi['accuracies']), 4),
      'multi_trial_accuracy_std': round(std(multi['accuracies']), 4),
      'oneshot_accuracy': round(statistics.mean(shot['accuracies']), 4),
      'oneshot_accuracy_std': round(std(shot['accuracies']), 4),
      'supernet_kendall_tau': None if tau is None else round(tau, 4),
      'multi_trial_wall_s': round(multi['wall_s'], 1),
      'oneshot_wall_s': round(shot['wall_s'], 1),
      'oneshot_supernet_s': round(shot['search_s'], 1),
      'supernet_final_train_loss': round(shot['final_train_loss'], 4),
      'supernet_chance_loss': round(shot['chance_loss'], 4),
      'wall_ratio': round(shot['wall_s'] / multi['wall_s'], 4),
      'multi_trial_flops': round(multi['flops'], 5),
      'oneshot_flops': round(shot['flops'], 5),
      'trials': multi['trials'], 'supernet_steps': steps,
      'seeds': args.seeds, 'wall_s': round(time.perf_counter() - started, 1)}))


if __name__ == '__main__':
  main()
