"""Design-space analysis (Radosavovic et al. 2020, "Designing Network Design
Spaces"): error EDFs of models sampled from each space, the KS statistic
between spaces, their FLOPs/params distributions, and the quantised linear
width rule fitted to the best models.

Light (numpy; matplotlib only where the PNG is drawn): the analysis is a
function of the trials' numbers, unit-tested without training.
"""

import io
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

import search_spaces
from trainer import fileio
from trainer.objective import FLOPS

RESULT_FILE = 'design_space.json'
PLOT_FILE = 'design_space.png'
PARAMS = 'params'
# The RegNet spaces' grid (search_spaces.regnet_search_space), searched for
# the quantised fit.
W0_GRID = search_spaces.REGNET_W0S
WA_GRID = search_spaces.REGNET_WAS
WM_GRID = search_spaces.REGNET_WMS


# --- EDFs and the KS statistic

def edf(errors: Sequence[float], at: Sequence[float]) -> np.ndarray:
  """The error EDF, F(x) = fraction of `errors` below x, at each x of `at`."""
  values = np.sort(np.asarray(errors, dtype=float))
  if not len(values):
    return np.zeros(len(at))
  return np.searchsorted(values, np.asarray(at, dtype=float),
                         side='left') / len(values)


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
  """Two-sample Kolmogorov-Smirnov statistic sup_x |F_a(x) - F_b(x)|: the
  EDFs (fraction <= x, right-continuous) compared at every pooled value,
  where the supremum is reached."""
  edfs = _pooled_edfs(a, b)
  if edfs is None:
    return float('nan')
  fa, fb = edfs
  return float(np.max(np.abs(fa - fb)))


def _pooled_edfs(a: Sequence[float], b: Sequence[float]
                 ) -> Optional[Tuple[np.ndarray, np.ndarray]]:
  """Both EDFs (fraction <= x, right-continuous) at every pooled value, where
  their differences are extreme; None when either sample is empty."""
  a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
  if not len(a) or not len(b):
    return None
  pooled = np.concatenate([a, b])
  return (np.searchsorted(a, pooled, side='right') / len(a),
          np.searchsorted(b, pooled, side='right') / len(b))


def dominant(a: Sequence[float], b: Sequence[float]) -> Optional[int]:
  """0 when a's error EDF is nowhere below b's and somewhere above (at every
  error, at least as large a share of a's models do better: the paper's
  sense of a better design space), 1 for the reverse, None when the EDFs
  cross, are equal, or one is empty."""
  edfs = _pooled_edfs(a, b)
  if edfs is None:
    return None
  fa, fb = edfs
  if np.all(fa >= fb) and np.any(fa > fb):
    return 0
  if np.all(fb >= fa) and np.any(fb > fa):
    return 1
  return None


def edf_curve(errors: Sequence[float]) -> Dict[str, List[float]]:
  """The EDF's steps: after the i-th smallest error x_i it reaches i/n."""
  values = sorted(float(e) for e in errors)
  n = len(values)
  return {'error': values, 'fraction': [(i + 1) / n for i in range(n)]}


def _distribution(values: Sequence[float]) -> Dict[str, Any]:
  values = [float(v) for v in values]
  if not values:
    return {'n': 0}
  array = np.asarray(values)
  return {'n': len(values), 'min': float(array.min()),
          'median': float(np.median(array)), 'mean': float(array.mean()),
          'max': float(array.max()), 'values': values}


# --- Widths and the quantised linear rule

def block_widths(architecture: Any) -> Optional[List[int]]:
  """Per-block widths of an architecture with stages (AnyNet/RegNet specs):
  each stage's width repeated `depth` times; None for any other."""
  stage_specs = getattr(architecture, 'stage_specs', None)
  if not callable(stage_specs):
    return None
  try:
    stages = stage_specs()
    return [int(s.width) for s in stages for _ in range(int(s.depth))]
  except (AttributeError, TypeError, ValueError):
    return None


def fit_linear(widths: Sequence[float]) -> Tuple[float, float]:
  """Least squares (numpy) of u_j = w0 + wa * j over the block widths."""
  widths = np.asarray(widths, dtype=float)
  j = np.arange(len(widths), dtype=float)
  if len(widths) == 1:
    return float(widths[0]), 0.0
  wa, w0 = np.polyfit(j, widths, 1)
  return float(w0), float(wa)


def quantised_widths(depth: int, w0: Any, wa: Any, wm: Any) -> np.ndarray:
  """The paper's rule as search_spaces.RegNetSpec builds it, vectorised
  (w0, wa, wm may be broadcastable arrays; blocks on the last axis):
  u_j = w0 + wa * j, s_j = round(log(u_j / w0) / log(wm)), w_j = w0 * wm^s_j
  rounded to a multiple of 8."""
  quantum = search_spaces.REGNET_QUANTUM
  j = np.arange(depth, dtype=float)
  u = w0 + wa * j
  s = np.round(np.log(u / w0) / np.log(wm))
  return np.round(w0 * np.power(wm, s) / quantum) * quantum


def fit_error(widths: Sequence[float], predicted: Sequence[float]) -> float:
  """e_fit: the mean |log ratio| of observed to predicted block widths."""
  widths = np.maximum(np.asarray(widths, float), 1e-9)
  predicted = np.maximum(np.asarray(predicted, float), 1e-9)
  return float(np.mean(np.abs(np.log(widths / predicted))))


def fit_quantised_linear(widths: Sequence[int]) -> Dict[str, Any]:
  """Fits the quantised linear rule to per-block widths.

  Linear part by least squares (`linear_w0`, `linear_wa`, its e_fit
  `linear_e_fit` against the unquantised line). Then (w0, wa, wm): the
  paper's grid search, the triple on the grid (w0 in 8..256 step 8, wa in
  8..256 step 8, wm in 1.5..3.0 step 0.05) whose quantised widths have the
  smallest e_fit; ties go to the triple whose line is closest (least
  squares) to the widths, then to the smallest wm. Many triples give the
  same network, so the widths, not the triple, are what a fit recovers.
  """
  widths = np.asarray(widths, dtype=float)
  depth = len(widths)
  linear_w0, linear_wa = fit_linear(widths)
  line = linear_w0 + linear_wa * np.arange(depth)
  w0 = np.asarray(W0_GRID, float)[:, None, None, None]
  wa = np.asarray(WA_GRID, float)[None, :, None, None]
  wm = np.asarray(WM_GRID, float)[None, None, :, None]
  u = w0 + wa * np.arange(depth, dtype=float)
  q = np.maximum(quantised_widths(depth, w0, wa, wm),
                 search_spaces.REGNET_QUANTUM)
  errors = np.mean(np.abs(np.log(widths / q)), axis=-1)
  line_error = np.broadcast_to(np.mean((u - widths) ** 2, axis=-1),
                               errors.shape)
  best = np.min(errors)
  candidates = np.argwhere(errors <= best + 1e-12)
  i, k, m = min(map(tuple, candidates),
                key=lambda c: (line_error[c], WM_GRID[c[2]]))
  return {'depth': depth, 'w0': float(W0_GRID[i]), 'wa': float(WA_GRID[k]),
          'wm': float(WM_GRID[m]), 'e_fit': float(errors[i, k, m]),
          'linear_w0': linear_w0, 'linear_wa': linear_wa,
          'linear_e_fit': fit_error(widths, np.maximum(line, 1e-9)),
          'widths': [int(w) for w in widths]}


# --- The whole analysis

def analyse(spaces: Sequence[Dict[str, Any]], top: float = 0.1,
            max_top: int = 5) -> Dict[str, Any]:
  """The analysis of sampled spaces. Each of `spaces`: {'name', 'stage',
  'quality_metric', 'trials': [{'id', 'status', 'metrics', 'nas_params_str',
  'widths' (block widths or None)}]}. A trial counts with a finite quality
  metric; its error is 1 - metric. The best ceil(top * n) models (at most
  `max_top`, at least 1) get the width fit."""
  result: Dict[str, Any] = {'spaces': [], 'ks': [], 'top_fraction': top,
                            'max_top_models': max_top}
  errors_by_space = {}
  for space in spaces:
    metric = space['quality_metric']
    models = []
    for t in space['trials']:
      value = (t.get('metrics') or {}).get(metric)
      if t.get('status') == 'completed' and _finite(value):
        models.append({**t, 'error': 1.0 - float(value)})
    models.sort(key=lambda m: (m['error'], m['id']))
    errors = [m['error'] for m in models]
    errors_by_space[space['name']] = errors
    count = min(max_top, max(1, math.ceil(top * len(models)))) if models else 0
    entry = {
        'name': space['name'], 'stage': space['stage'],
        'quality_metric': metric, 'trials': len(space['trials']),
        'n': len(models),
        'failed': sum(t.get('status') != 'completed' for t in space['trials']),
        'min_error': min(errors) if errors else None,
        'median_error': float(np.median(errors)) if errors else None,
        'edf': edf_curve(errors),
        'flops': _distribution(_metric_values(models, FLOPS)),
        'params': _distribution(_metric_values(models, PARAMS)),
        'models': [{'trial_id': m['id'], 'error': m['error'],
                    FLOPS: (m.get('metrics') or {}).get(FLOPS),
                    PARAMS: (m.get('metrics') or {}).get(PARAMS)}
                   for m in models],
    }
    entry['width_fit'] = _width_fit(models[:count])
    result['spaces'].append(entry)
  names = [s['name'] for s in spaces]
  for a in range(len(names)):
    for b in range(a + 1, len(names)):
      errors_a, errors_b = errors_by_space[names[a]], errors_by_space[names[b]]
      ks = ks_statistic(errors_a, errors_b)
      better = dominant(errors_a, errors_b)
      result['ks'].append({'a': names[a], 'b': names[b],
                           'statistic': ks if math.isfinite(ks) else None,
                           'dominant': None if better is None
                                       else (names[a], names[b])[better]})
  return result


def _finite(value: Any) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool) and
          math.isfinite(value))


def _metric_values(models, name: str) -> List[float]:
  return [float(m['metrics'][name]) for m in models
          if _finite((m.get('metrics') or {}).get(name))]


def _width_fit(best: List[Dict[str, Any]]) -> Dict[str, Any]:
  """The fit of each best model's block widths, and their medians."""
  if not best:
    return {'skipped': 'no completed model to fit'}
  if any(m.get('widths') is None for m in best):
    return {'skipped': 'the space\'s architectures have no stages with '
                       'widths (only AnyNet/RegNet-like specs do)'}
  fits = [{'trial_id': m['id'], 'error': m['error'],
           **fit_quantised_linear(m['widths'])} for m in best]
  summary = {key: float(np.median([f[key] for f in fits]))
             for key in ('w0', 'wa', 'wm', 'e_fit', 'linear_w0', 'linear_wa',
                         'linear_e_fit')}
  return {'models': len(fits), 'median': summary, 'fits': fits}


def write(job_dir: str, result: Dict[str, Any]) -> Tuple[str, str]:
  """design_space.json and design_space.png in the job dir; their paths."""
  json_path = os.path.join(job_dir, RESULT_FILE)
  png_path = os.path.join(job_dir, PLOT_FILE)
  fileio.write_text(json_path, json.dumps(result, indent=2, sort_keys=True) +
                    '\n')
  plot(png_path, result)
  return json_path, png_path


def plot(path: str, result: Dict[str, Any]) -> None:
  """The paper's figure: error EDFs side by side (one curve per space, n and
  min error in the legend), then the FLOPs and params distributions (their
  EDFs, log scale)."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (slow)
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  edf_ax, flops_ax, params_ax = axes
  for space in result['spaces']:
    curve = space['edf']
    label = (f'{space["name"]} [n={space["n"]}' +
             (f', min {space["min_error"]:.3f}]' if space['n'] else ']'))
    if curve['error']:
      edf_ax.step([curve['error'][0]] + curve['error'],
                  [0.0] + curve['fraction'], where='post', label=label)
    else:
      edf_ax.plot([], [], label=label)
    for ax, key in ((flops_ax, 'flops'), (params_ax, 'params')):
      values = sorted(space[key].get('values') or [])
      if values:
        ax.step([values[0]] + values,
                [0.0] + [(i + 1) / len(values) for i in range(len(values))],
                where='post', label=f'{space["name"]} [n={len(values)}]')
  ks = ', '.join(f'{k["a"]}/{k["b"]} {k["statistic"]:.3f}'
                 for k in result['ks'] if k['statistic'] is not None)
  edf_ax.set_title('error EDF' + (f' (KS {ks})' if ks else ''), fontsize=10)
  edf_ax.set_xlabel('error (1 - quality metric)')
  edf_ax.set_ylabel('cumulative prob.')
  edf_ax.set_ylim(0, 1.02)
  edf_ax.legend(fontsize=8, loc='lower right')
  flops_ax.set_xlabel('multiply-adds (billions)')
  params_ax.set_xlabel('parameters')
  for ax, title in ((flops_ax, 'FLOPs EDF'), (params_ax, 'params EDF')):
    ax.set_title(title, fontsize=10)
    ax.set_ylabel('cumulative prob.')
    ax.set_ylim(0, 1.02)
    if ax.has_data():
      ax.set_xscale('log')
      ax.legend(fontsize=8, loc='lower right')
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=100)
  fileio.write_text(path, buffer.getvalue())  # Atomic; URLs too.
  plt.close(figure)

