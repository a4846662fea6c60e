"""PNG charts of the proxy-task tools (matplotlib's Agg backend: no display)."""

import math
from typing import Any, Dict, List, Optional

import matplotlib
matplotlib.use('Agg')
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

from trainer import objective  # pylint: disable=g-import-not-at-top

COST_LABELS = {objective.LATENCY: 'latency (ms)',
               objective.FLOPS: 'multiply-adds (billions)'}


def model_selection(path: str, rounds: List[Dict[str, Any]],
                    cost_metric: str) -> None:
  """One panel per round: each model's accuracy at the round's budget
  against its cost, the models kept apart from those pruned."""
  columns = min(3, len(rounds))
  rows = math.ceil(len(rounds) / columns)
  figure, axes = plt.subplots(rows, columns, squeeze=False,
                              figsize=(4.5 * columns, 3.8 * rows))
  for ax in axes.flat[len(rounds):]:
    ax.set_visible(False)
  for ax, round_ in zip(axes.flat, rounds):
    for kept, style in ((True, dict(c='tab:blue', marker='o', label='kept')),
                        (False, dict(c='tab:red', marker='x', label='pruned'))):
      models = [m for m in round_['models']
                if m['accuracy'] is not None and m['kept'] == kept]
      ax.scatter([m['cost'] for m in models], [m['accuracy'] for m in models],
                 **style)
    ax.set_title(f'round {round_["round"]}: {len(round_["models"])} models, '
                 f'{round_["train_steps"]} steps', fontsize=10)
    ax.set_xlabel(COST_LABELS.get(cost_metric, cost_metric))
    ax.locator_params(axis='x', nbins=4)  # Long tick labels stay apart.
    ax.set_ylabel('accuracy')
    ax.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def proxy_search(path: str, results: Dict[str, Dict[str, Any]],
                 threshold: float, best: Optional[str]) -> None:
  """Kendall τ against training compute for each candidate, the
  threshold, and the chosen candidate's crossing."""
  figure, ax = plt.subplots(figsize=(7, 4.5))
  for name, result in results.items():
    points = [(row['train_compute'], row['kendall_tau'])
              for row in result['kendall_tau_by_step']
              if None not in (row['train_compute'], row['kendall_tau'])]
    if points:
      ax.plot(*zip(*points), marker='o', label=name)
  ax.axhline(threshold, color='grey', linestyle='--',
             label=f'threshold {threshold:g}')
  crossing = best and next(row for row in results[best]['kendall_tau_by_step']
                          if row['step'] == results[best]['pass_step'])
  if crossing and crossing['train_compute'] is not None:
    ax.scatter([crossing['train_compute']], [crossing['kendall_tau']], s=160,
               facecolors='none', edgecolors='black', zorder=3,
               label=f'chosen: {best} at step {crossing["step"]}')
  ax.set_xlabel('training compute per model (billion multiply-adds, '
                'median)')
  ax.set_ylabel('Kendall τ vs full training')
  ax.set_ylim(-1.05, 1.05)
  ax.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)
