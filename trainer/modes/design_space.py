"""--mode=design_space: the RegNet paper's comparison of design spaces.

Samples --design_space_samples architectures of each of --design_spaces
(seeded by --seed and the space's name), trains them under the proxy
(search) config, each space a resumable stage `design_space:<space>` of the
job's store, then writes design_space.json and design_space.png beside the
store (trainer/design_space.py: error EDFs, KS statistics, FLOPs/params,
the quantised linear width fit of the best models).
"""

import contextlib
import random
from typing import Any, Dict, List

import pyglove as pg

import search_spaces
from trainer import artifacts
from trainer import design_space as analysis
from trainer.controller import store as store_lib
from trainer.modes import common
from trainer.modes.common import UsageError


def spaces_flag(value: str) -> List[str]:
  """--design_spaces: two or more distinct spaces, each resolvable."""
  names = [n.strip() for n in (value or '').split(',') if n.strip()]
  if len(names) < 2:
    raise UsageError('--design_spaces: give two or more spaces to compare, '
                     f'comma-separated (got {value!r})')
  if len(set(names)) != len(names):
    raise UsageError(f'--design_spaces names a space twice: {value}')
  folders = [artifacts.design_space_dir(n) for n in names]
  if len(set(folders)) != len(folders):
    raise UsageError(f'--design_spaces: {value} has names that differ only '
                     'in characters a folder name cannot hold')
  for name in names:
    search_spaces.get_search_space(name)  # SearchSpaceError: one line.
  return names


def sample(space_name: str, count: int, seed: int) -> List[str]:
  """`count` random architectures of the space (nas_params_str), the same
  for the same seed and name: a resume retrains none and changes none, and a
  larger count extends the list."""
  space = search_spaces.get_search_space(space_name)
  spec = pg.dna_spec(space)
  rng = random.Random(f'design_space:{seed}:{space_name}')
  return [search_spaces.nas_params_from_dna(pg.random_dna(spec, rng))
          for _ in range(count)]


def run_design_space(args) -> None:
  job_dir = common.job_dir(args)
  count = args.design_space_samples
  if count < 1:
    raise UsageError(f'--design_space_samples={count}: sample at least one '
                     'architecture per space')
  if not 0 < args.design_space_top <= 1:
    raise UsageError(f'--design_space_top={args.design_space_top}: a '
                     'fraction in (0, 1]')
  names = spaces_flag(args.design_spaces)
  from trainer.training import trial as trial_lib  # pylint: disable=g-import-not-at-top  (TensorFlow)
  plans = []
  for name in names:
    stage = artifacts.design_space_stage(name)
    plans.append((name, common.stage_spec(args, {}, name, stage),
                  sample(name, count, args.seed)))
  # Every space's config, flags and data checked before a stage starts.
  store_lib.check_writable(job_dir)
  for _, template, proposals in plans:
    trial_lib.prepare(template.replace(nas_params_str=proposals[0]),
                      artifacts.data_dir(job_dir))
  for index, (name, template, proposals) in enumerate(plans, 1):
    print(f'design space {index}/{len(plans)}: {name}, {count} sampled '
          f'architectures (seed {args.seed}), stage {template.stage}',
          flush=True)
    common.run_stage(args, job_dir, template, 'fixed', count,
                     proposals=proposals,
                     identity_extra={'design_space': name})
  result = analyse_job(job_dir, names, args.design_space_top)
  for space in result['spaces']:
    best = ('' if space['min_error'] is None
            else f', min error {space["min_error"]:.4f}, median '
                 f'{space["median_error"]:.4f}')
    print(f'design space {space["name"]}: {space["n"]} models'
          f'{best}', flush=True)
  for ks in result['ks']:
    value = ('n/a' if ks['statistic'] is None
             else f'{ks["statistic"]:.4f}')
    order = (f'{ks["dominant"]}\'s EDF dominates' if ks['dominant']
             else 'neither EDF dominates')
    print(f'KS {ks["a"]} vs {ks["b"]}: {value} ({order})', flush=True)
  json_path, png_path = analysis.write(job_dir, result)
  print(f'wrote {json_path} and {png_path}', flush=True)


def analyse_job(job_dir: str, names: List[str], top: float) -> Dict[str, Any]:
  """The analysis of the job's design-space stages of `names`."""
  store = store_lib.Store.open(job_dir, read_only=True)
  spaces = []
  with contextlib.closing(store):
    for name in names:
      stage = artifacts.design_space_stage(name)
      identity = store.job_identity(stage) or {}
      space = search_spaces.get_search_space(name)
      spec = pg.dna_spec(space)
      trials = []
      for t in store.trials(stage):
        trials.append({'id': t.id, 'status': t.status,
                       'metrics': t.metrics or {},
                       'nas_params_str': t.nas_params_str,
                       'widths': _widths(space, spec, t.nas_params_str)})
      spaces.append({'name': name, 'stage': stage, 'trials': trials,
                     'quality_metric': identity.get('quality_metric',
                                                    'top_1_accuracy')})
  return analysis.analyse(spaces, top=top)


def _widths(space, spec, nas_params_str: str):
  try:
    architecture = search_spaces.materialize(
        space, search_spaces.dna_from_nas_params(spec, nas_params_str))
  except (ValueError, TypeError):
    return None
  return analysis.block_widths(architecture)
