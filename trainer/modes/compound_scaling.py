"""--mode=compound_scaling: EfficientNet's compound scaling of a fixed
architecture (trainer/compound_scaling.py has the grid and the rounding).

Two resumable stages of the job's store train the same architecture at
different sizes, each trial's size a --params_override composed for it
(`scaled_spec`), so trials run as any other:
  compound_scaling_grid  each grid point (α, β, γ) at φ = 1, on the proxy
                         (the search config);
  compound_scaling       the φ = 1..K models of the best point, on the
                         full-training config.
Then compound_scaling.json and .png (accuracy against FLOPs) beside the
store; `--mode=report` shows them too.
"""

import json
import os
from typing import Any, Dict, List, NamedTuple, Optional

import search_spaces
from proxy_tasks import tools as proxy_tools
from trainer import artifacts
from trainer import compound_scaling as scaling
from trainer import fileio
from trainer import objective
from trainer import spec as spec_lib
from trainer.controller import leaderboard
from trainer.controller import search
from trainer.controller import store as store_lib
from trainer.modes import common
from trainer.modes import stages
from trainer.modes.common import UsageError

# Model Garden backbone types with width and depth multipliers, by the space
# whose architectures build them.
SCALABLE_BACKBONES = {'tunable_mnasnet': 'mnasnet',
                      'tunable_efficientnet_v2': 'efficientnet_v2'}
# Image sides of classification round to this; detection's to 2^max_level.
CLASSIFICATION_QUANTUM = 8


class BaseSize(NamedTuple):
  """The sizes of the base config that compound scaling multiplies."""
  backbone_type: str
  width: float        # filter_size_scale
  depth: float        # depth_multiplier
  head_filters: int   # endpoints_num_filters, 0 without a head conv
  input_size: List[int]
  quantum: int        # image sides are multiples of it


def _unsupported(space: str) -> UsageError:
  return UsageError(
      f'--mode=compound_scaling needs a space whose builder takes width, '
      f'depth and resolution multipliers; {space} has none (spaces that do: '
      f'{", ".join(sorted(set(SCALABLE_BACKBONES.values())))})')


def check_space(space: str, nas_params_str: str) -> None:
  """A one-line error for architectures of a space without multipliers."""
  from trainer.training import architectures  # pylint: disable=g-import-not-at-top  (TensorFlow)
  space_value = search_spaces.get_search_space(space)
  spec = search_spaces.materialize(
      space_value, search_spaces.dna_from_nas_params(space_value,
                                                     nas_params_str))
  binding = architectures.registry.lookup(spec)
  if binding is None or binding.config_space not in SCALABLE_BACKBONES.values():
    raise _unsupported(space)


def base_size(prepared, space: str) -> BaseSize:
  """What a prepared trial's config sets that compound scaling multiplies."""
  model = prepared.params.task.model
  backbone_type = model.backbone.type
  if backbone_type not in SCALABLE_BACKBONES:
    raise _unsupported(f'{space} (backbone {backbone_type})')
  if prepared.task_name == 'classification':
    quantum = CLASSIFICATION_QUANTUM
  elif prepared.task_name == 'detection':
    quantum = 2 ** model.max_level
  else:
    raise UsageError(f'--mode=compound_scaling scales classification and '
                     f'detection, not {prepared.task_name}')
  backbone = model.backbone.get()
  head = 0 if getattr(backbone, 'features_only', False) else (
      backbone.endpoints_num_filters)
  return BaseSize(backbone_type, backbone.filter_size_scale,
                  backbone.depth_multiplier, head, list(model.input_size),
                  quantum)


def scaled_override(base: BaseSize,
                    multipliers: scaling.ScalingPoint) -> Dict[str, Any]:
  """The config edit of a model scaled by (d, w, r) = `multipliers`: the
  backbone's filter_size_scale (each layer's filters then round to 8) and
  depth_multiplier (repeats round up), its head conv's filters, the image
  size."""
  from official.vision.modeling.layers import nn_layers  # pylint: disable=g-import-not-at-top  (TensorFlow)
  backbone = {'filter_size_scale': round(base.width * multipliers.width, 6),
              'depth_multiplier': round(base.depth * multipliers.depth, 6)}
  if base.head_filters > 0:
    backbone['endpoints_num_filters'] = nn_layers.round_filters(
        base.head_filters, multipliers.width)
  return {'task': {'model': {
      'backbone': {base.backbone_type: backbone},
      'input_size': scaling.scaled_input_size(
          base.input_size, multipliers.resolution, base.quantum)}}}


def scaled_spec(spec: spec_lib.TrialSpec, base: BaseSize,
                multipliers: scaling.ScalingPoint) -> spec_lib.TrialSpec:
  """`spec` with the scaled sizes after its own overrides."""
  return spec.replace(params_override=proxy_tools.merged_override(
      spec.params_override, scaled_override(base, multipliers)))


def _sizes(override: Dict[str, Any]) -> Dict[str, Any]:
  """A model's scaled sizes, as the JSON records them."""
  model = override['task']['model']
  backbone, = model['backbone'].values()
  return {**backbone, 'input_size': model['input_size']}


def run_compound_scaling(args) -> None:
  from trainer.training import trial as trial_lib  # pylint: disable=g-import-not-at-top  (TensorFlow)
  job_dir = common.job_dir(args)
  points = scaling.grid(args.compound_scaling_grid_points)
  phis = scaling.phis(args.compound_scaling_max_phi)
  space, params, base_identity = stages.base_architecture(
      args, job_dir, args.base_trial_id)
  check_space(space, params)
  data_dir = artifacts.data_dir(job_dir)

  def template_of(stage):
    template = common.stage_spec(args, base_identity, space, stage)
    prepared = trial_lib.prepare(template.replace(nas_params_str=params),
                                 data_dir)
    return template, prepared, base_size(prepared, space)

  def check_scaled(template, base, multipliers):
    # Every trial's config builds before the store is touched.
    trial_lib.prepare(scaled_spec(template, base, multipliers).replace(
        nas_params_str=params), data_dir)

  grid_template, _, grid_base = template_of(scaling.GRID_STAGE)
  for point in points:
    check_scaled(grid_template, grid_base, point.multipliers(1))
  models_template, models_prepared, models_base = template_of(
      scaling.MODELS_STAGE)
  base_identity_extra = {'compound_scaling_base': {
      'search_space': space, 'nas_params_str': params}}

  print(f'== 1/2 compound scaling grid: {len(points)} '
        f'point{"s" if len(points) > 1 else ""} (α depth, β '
        'width, γ resolution) with α·β²·γ² ≈ 2, at φ = 1 on the proxy',
        flush=True)
  for i, point in enumerate(points, 1):
    print(f'point {i}: {point.label()} (α·β²·γ² = '
          f'{point.flops_growth:.3f})', flush=True)
  grid_trials = common.run_stage(
      args, job_dir, grid_template, 'fixed', len(points),
      proposals=[params] * len(points),
      customize=lambda t, spec: scaled_spec(spec, grid_base,
                                            points[t.id - 1].multipliers(1)),
      identity_extra={**base_identity_extra, 'compound_scaling_grid': [
          p.to_json() for p in points]})
  best = leaderboard.best(grid_trials)
  result = _result(space, params, points, grid_trials, best, grid_base)
  _write(job_dir, result)
  if best is None:
    raise search.SearchFailed('no compound scaling grid trial completed')
  chosen = points[best.id - 1]
  print(f'best grid point: {chosen.label()} (trial {best.id}, reward '
        f'{best.reward:.4f})', flush=True)

  # Checks every φ model's config; the base's FLOPs are what φ multiplies.
  for phi in phis:
    check_scaled(models_template, models_base, chosen.multipliers(phi))
  base_flops = trial_lib.estimate_flops(models_prepared)
  print(f'== 2/2 compound scaling: the φ = {phis[0]}..{phis[-1]} models of '
        f'{chosen.label()} (base: {_fmt(base_flops, ".4g")} B multiply-adds)',
        flush=True)
  model_trials = common.run_stage(
      args, job_dir, models_template, 'fixed', len(phis),
      proposals=[params] * len(phis),
      customize=lambda t, spec: scaled_spec(
          spec, models_base, chosen.multipliers(phis[t.id - 1])),
      identity_extra={**base_identity_extra,
                      'compound_scaling_point': chosen.to_json(),
                      'compound_scaling_phis': phis})
  result['models'] = _models(models_base, chosen, phis, model_trials,
                             base_flops)
  result['base_flops_multi_adds_billion'] = base_flops
  path = _write(job_dir, result)
  for m in result['models']:
    print(f'φ={m["phi"]}: {_fmt(m["accuracy"], ".4f")} '
          f'{result["quality_metric"]}, {_fmt(m["flops"], ".4g")} B '
          f'multiply-adds ({_fmt(m["flops_ratio"], ".2f")}x the base; '
          f'2^φ = {2 ** m["phi"]}), input {m["sizes"]["input_size"][0]} px, '
          f'{m["status"]}', flush=True)
  print(f'wrote {path} and {os.path.join(job_dir, scaling.PLOT_FILE)}',
        flush=True)


def _fmt(value: Optional[float], spec: str) -> str:
  return '-' if value is None else format(value, spec)


def _trial_row(trial: store_lib.Trial, quality_metric: str) -> Dict[str, Any]:
  metrics = trial.metrics or {}
  return {'trial_id': trial.id, 'status': trial.status,
          'accuracy': metrics.get(quality_metric),
          'flops': metrics.get(objective.FLOPS), 'reward': trial.reward}


def _result(space, params, points, grid_trials, best, base) -> Dict[str, Any]:
  metric = _quality_metric(grid_trials)
  return {
      'base': {'search_space': space, 'nas_params_str': params},
      'quality_metric': metric,
      'grid': [{**point.to_json(), **_trial_row(t, metric),
                'sizes': _sizes(scaled_override(base, point.multipliers(1)))}
               for point, t in zip(points, grid_trials)],
      'best_grid_trial_id': best and best.id,
      'models': [],
  }


def _quality_metric(trials) -> str:
  for t in trials:
    if t.metrics and t.metrics.get('quality_metric'):
      return t.metrics['quality_metric']
  return 'accuracy'


def _models(base: BaseSize, chosen: scaling.ScalingPoint, phis: List[int],
            trials: List[store_lib.Trial],
            base_flops: Optional[float]) -> List[Dict[str, Any]]:
  metric = _quality_metric(trials)
  rows = []
  for phi, t in zip(phis, trials):
    row = {'phi': phi, **_trial_row(t, metric),
           'sizes': _sizes(scaled_override(base, chosen.multipliers(phi)))}
    row['flops_ratio'] = (row['flops'] / base_flops
                          if row['flops'] and base_flops else None)
    rows.append(row)
  return rows


def _write(job_dir: str, result: Dict[str, Any]) -> str:
  path = os.path.join(job_dir, scaling.RESULT_FILE)
  fileio.write_text(path, json.dumps(result, indent=1) + '\n')
  plot(os.path.join(job_dir, scaling.PLOT_FILE), result)
  return path


def plot(path: str, result: Dict[str, Any]) -> None:
  """Accuracy against multiply-adds: the grid points (φ = 1, proxy) and
  the φ models (full training)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, ax = plt.subplots(figsize=(7, 4.5))
  grid = [g for g in result['grid'] if None not in (g['flops'], g['accuracy'])]
  ax.scatter([g['flops'] for g in grid], [g['accuracy'] for g in grid],
             marker='x', c='tab:grey', label='grid at φ=1 (proxy)')
  for g in grid:
    ax.annotate(f'({g["alpha_depth"]:.2f}, {g["beta_width"]:.2f}, '
                f'{g["gamma_resolution"]:.2f})', (g['flops'], g['accuracy']),
                fontsize=7, textcoords='offset points', xytext=(4, 4))
  models = [m for m in result['models']
            if None not in (m['flops'], m['accuracy'])]
  if models:
    ax.plot([m['flops'] for m in models], [m['accuracy'] for m in models],
            marker='o', c='tab:blue', label='φ models (full training)')
    for m in models:
      ax.annotate(f'φ={m["phi"]}', (m['flops'], m['accuracy']),
                  textcoords='offset points', xytext=(4, -12))
  ax.set_xlabel('multiply-adds (billions)')
  ax.set_ylabel(result['quality_metric'])
  ax.set_title(f'compound scaling of {result["base"]["search_space"]}')
  ax.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)
