"""A job's results for people: one self-contained HTML page, and HParams runs.

`write_report(job_dir)` reads the store and writes `<job_dir>/report.html`:
plain HTML with its own CSS, a few lines of script to sort tables and charts
drawn here as inline SVG, so it opens offline, from a copy or an e-mail.
`write_hparams_summaries(job_dir)` writes one TensorBoard run per trial so
trials compare in TensorBoard's HParams dashboard.

Both only read the store, so they can run while a search is going on.
"""

import base64
import html
import json
import math
import os
import shutil
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import pyglove as pg

import search_spaces
from trainer import artifacts
from trainer.controller import leaderboard
from trainer.controller import reward as reward_lib
from trainer.controller import store as store_lib

REPORT_FILE = 'report.html'
HPARAMS_DIR = 'hparams'
# Written by `--mode=augment_preview` with its default --output_path.
AUGMENT_PREVIEW_FILE = 'augment_preview.png'

# Stages in the order the page shows them, with their headings.
STAGE_TITLES = {
    'search': 'Architecture search',
    'train': 'Full training of chosen architectures',
    'augment_search': 'Augmentation policy search',
}
FLOPS = 'multi_add_flops_billion'
LATENCY = 'latency_ms'
MEMORY = 'memory_mb'
# Costs an architecture's accuracy is traded against: metric -> axis label.
PARETO_COSTS = {FLOPS: 'multiply-adds (billions)', LATENCY: 'latency (ms)'}
# Kendall's tau needs this many (proxy, full) pairs to say anything.
MIN_RANK_PAIRS = 3


# ---------------------------------------------------------------------------
# Reading a stage
# ---------------------------------------------------------------------------


class Architectures:
  """Materialises a stage's trials; parses its space's decision points once,
  which takes up to a second for the larger spaces."""

  def __init__(self, space_name: str):
    self.space_name = space_name
    self.space = search_spaces.get_search_space(space_name)
    self.dna_spec = pg.dna_spec(self.space)

  def spec(self, nas_params_str: str) -> Any:
    return search_spaces.materialize(self.space, search_spaces.dna_from_nas_params(
        self.dna_spec, nas_params_str))

  def summary(self, nas_params_str: str) -> str:
    try:
      return search_spaces.architecture_summary(self.spec(nas_params_str))
    except search_spaces.SearchSpaceError as e:
      return f'(unreadable: {e})'


class StageView(NamedTuple):
  """One stage's trials with what the page says about them."""
  stage: str
  identity: Dict[str, Any]
  trials: List[store_lib.Trial]
  accuracy_key: str
  best: Optional[store_lib.Trial]
  architectures: Optional[Architectures]
  space_error: str  # Why `architectures` is None, if it is.


def accuracy(trial: store_lib.Trial, key: str) -> Optional[float]:
  value = (trial.metrics or {}).get(key)
  return float(value) if _is_number(value) else None


def _is_number(value: Any) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool) and
          math.isfinite(value))


def _read_stages(store: store_lib.Store) -> List[StageView]:
  """The stages that have trials. A train stage's trials retrain search
  trials, so without a space of its own it reads the search stage's."""
  views = []
  search_identity = store.job_identity('search') or {}
  for stage in STAGE_TITLES:
    trials = store.trials(stage)
    if not trials:
      continue
    identity = store.job_identity(stage) or {}
    space_name = identity.get('search_space') or (
        search_identity.get('search_space') if stage == 'train' else None)
    architectures, space_error = None, 'the stage records no search space'
    if space_name:
      try:
        architectures, space_error = Architectures(space_name), ''
      except search_spaces.SearchSpaceError as e:
        space_error = str(e)
    keys = [t.metrics['accuracy_key'] for t in trials
            if t.metrics and 'accuracy_key' in t.metrics]
    views.append(StageView(
        stage, identity, trials,
        keys[0] if keys else identity.get('reward_metric') or 'accuracy',
        leaderboard.best(trials), architectures, space_error))
  return views


def _summaries(view: StageView) -> Dict[int, str]:
  if view.architectures is None:
    return {t.id: '' for t in view.trials}
  return {t.id: view.architectures.summary(t.nas_params_str) for t in view.trials}


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------


def _esc(value: Any) -> str:
  return html.escape(str(value), quote=True)


def _fmt(value: Optional[float], spec: str) -> str:
  return format(value, spec) if _is_number(value) else '–'


def _status_counts(trials: Sequence[store_lib.Trial]) -> str:
  counts: Dict[str, int] = {}
  for t in trials:
    counts[t.status] = counts.get(t.status, 0) + 1
  return ', '.join(f'{n} {status}' for status, n in sorted(counts.items()))


def _duration(trial: store_lib.Trial) -> Optional[float]:
  return trial.finished_at - trial.created_at if trial.finished_at else None


# ---------------------------------------------------------------------------
# Charts: inline SVG scatter and step plots
# ---------------------------------------------------------------------------

CHART_WIDTH, CHART_HEIGHT = 560, 340
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 72, 18, 40, 50


class Point(NamedTuple):
  x: float
  y: float
  trial_id: Optional[int] = None  # Set on markers: the page links them.
  tip: str = ''
  note: str = ''  # Written beside the marker.


class Series(NamedTuple):
  """One layer of a chart: markers, or a staircase through its points (for
  a best-so-far curve or a Pareto front)."""
  label: str
  css_class: str
  points: Sequence[Point]
  steps: bool = False


def _ticks(low: float, high: float, integer: bool = False) -> Tuple[List[float], int]:
  """Round tick values spanning [low, high], and the decimals to print."""
  if high <= low:
    pad = abs(low) * 0.1 or 1.0
    low, high = low - pad, high + pad
  raw_step = (high - low) / 5
  magnitude = 10 ** math.floor(math.log10(raw_step))
  step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw_step)
  if integer:
    step = max(1, round(step))
  first, last = math.floor(low / step), math.ceil(high / step)
  decimals = max(0, -math.floor(math.log10(step)))
  return [k * step for k in range(first, last + 1)], decimals


def _chart(chart_id: str, x_label: str, y_label: str, series: Sequence[Series],
           integer_x: bool = False) -> str:
  """An SVG chart of the series; markers carry `data-trial` and a tooltip."""
  points = [p for s in series for p in s.points]
  x_ticks, x_decimals = _ticks(min(p.x for p in points),
                               max(p.x for p in points), integer_x)
  y_ticks, y_decimals = _ticks(min(p.y for p in points), max(p.y for p in points))
  plot_width = CHART_WIDTH - PLOT_LEFT - PLOT_RIGHT
  plot_height = CHART_HEIGHT - PLOT_TOP - PLOT_BOTTOM
  # A margin around the ticks keeps markers off the frame.
  x_pad, y_pad = [(t[-1] - t[0]) * 0.04 for t in (x_ticks, y_ticks)]

  def sx(x: float) -> float:
    return PLOT_LEFT + (x - x_ticks[0] + x_pad) / (
        x_ticks[-1] - x_ticks[0] + 2 * x_pad) * plot_width

  def sy(y: float) -> float:
    return PLOT_TOP + plot_height - (y - y_ticks[0] + y_pad) / (
        y_ticks[-1] - y_ticks[0] + 2 * y_pad) * plot_height

  parts = [f'<svg id="{_esc(chart_id)}" class="chart" viewBox="0 0 '
           f'{CHART_WIDTH} {CHART_HEIGHT}" role="img" '
           f'aria-label="{_esc(y_label)} against {_esc(x_label)}">']
  for x in x_ticks:
    parts.append(f'<line class="grid" x1="{sx(x):.1f}" x2="{sx(x):.1f}" '
                 f'y1="{PLOT_TOP}" y2="{PLOT_TOP + plot_height}"/>'
                 f'<text class="tick" x="{sx(x):.1f}" '
                 f'y="{PLOT_TOP + plot_height + 16}" text-anchor="middle">'
                 f'{x:.{x_decimals}f}</text>')
  for y in y_ticks:
    parts.append(f'<line class="grid" x1="{PLOT_LEFT}" '
                 f'x2="{PLOT_LEFT + plot_width}" y1="{sy(y):.1f}" y2="{sy(y):.1f}"/>'
                 f'<text class="tick" x="{PLOT_LEFT - 6}" y="{sy(y) + 4:.1f}" '
                 f'text-anchor="end">{y:.{y_decimals}f}</text>')
  parts.append(
      f'<rect class="frame" x="{PLOT_LEFT}" y="{PLOT_TOP}" width="{plot_width}" '
      f'height="{plot_height}"/>'
      f'<text class="axis" x="{PLOT_LEFT + plot_width / 2}" '
      f'y="{CHART_HEIGHT - 10}" text-anchor="middle">{_esc(x_label)}</text>'
      f'<text class="axis" transform="translate(16 {PLOT_TOP + plot_height / 2}) '
      f'rotate(-90)" text-anchor="middle">{_esc(y_label)}</text>')
  legend_x = PLOT_LEFT
  for s in series:
    if s.steps:
      corners = []
      for previous, point in zip([None, *s.points], s.points):
        if previous is not None:
          corners.append(f'{sx(point.x):.1f},{sy(previous.y):.1f}')
        corners.append(f'{sx(point.x):.1f},{sy(point.y):.1f}')
      parts.append(f'<polyline class="{s.css_class}" points="{" ".join(corners)}"/>')
      swatch = (f'<line class="{s.css_class}" x1="{legend_x}" y1="18" '
                f'x2="{legend_x + 16}" y2="18"/>')
    else:
      for p in s.points:
        trial = f' data-trial="{p.trial_id}"' if p.trial_id is not None else ''
        parts.append(f'<circle class="{s.css_class}"{trial} cx="{sx(p.x):.1f}" '
                     f'cy="{sy(p.y):.1f}" r="4.5"><title>{_esc(p.tip)}</title>'
                     '</circle>')
        if p.note:
          parts.append(f'<text class="note" x="{sx(p.x) + 7:.1f}" '
                       f'y="{sy(p.y) - 6:.1f}">{_esc(p.note)}</text>')
      swatch = (f'<circle class="{s.css_class}" cx="{legend_x + 8}" cy="18" '
                'r="4.5"/>')
    parts.append(f'{swatch}<text class="legend" x="{legend_x + 22}" y="22">'
                 f'{_esc(s.label)}</text>')
    legend_x += 34 + 6.5 * len(s.label)
  parts.append('</svg>')
  return ''.join(parts)


def pareto_front(points: Sequence[Point]) -> List[Point]:
  """Points no other point beats on both accuracy (y, higher) and cost (x,
  lower), by increasing cost."""
  front: List[Point] = []
  for p in sorted(points, key=lambda p: (p.x, -p.y)):
    if not front or p.y > front[-1].y:
      front.append(p)
  return front


# ---------------------------------------------------------------------------
# Architecture drawings
# ---------------------------------------------------------------------------

# Model Garden's MnasNet and EfficientNetV2 stem, before filter_size_scale.
STEM_FILTERS = 32
BLOCK_WIDTH, BLOCK_GAP = 118, 26


class BlockGroup(NamedTuple):
  kind: str  # Colours the box: 'stem' or the block function.
  lines: List[str]
  filters: int
  strides: int


def _block_groups(spec: Any) -> List[BlockGroup]:
  """MnasNet / EfficientNetV2: the stem, then each block group."""
  groups = [BlockGroup('stem', ['stem', 'conv 3×3', f'{STEM_FILTERS} ch',
                                'stride 2'], STEM_FILTERS, 2)]
  for b in spec.blocks:
    squeeze = f' · SE {b.se_ratio:g}' if b.se_ratio else ''
    if isinstance(spec, search_spaces.MnasNetSpec):
      kind = b.block_fn
      # A conv block has no expansion or squeeze-excite (inert decisions).
      details = (f'k{b.kernel_size} · e{b.expand_ratio}{squeeze}'
                 if kind == 'mbconv' else f'k{b.kernel_size}')
      width = f'{b.output_filters} ch'
    else:
      kind = b.block_type
      details = f'k{b.kernel_size} · e{b.expand_ratio}{squeeze}'
      width = f'{b.output_filters} ch · {b.act_fn}'
    groups.append(BlockGroup(kind, [f'{kind} ×{b.num_repeats}', details, width,
                                    f'stride {b.strides}'],
                             b.output_filters, b.strides))
  return groups


def _block_groups_svg(groups: Sequence[BlockGroup]) -> str:
  """A box per group left to right, its height growing with its filters,
  and the resolution it outputs below it."""
  height, middle = 190, 80
  widest = max(g.filters for g in groups)
  width = len(groups) * (BLOCK_WIDTH + BLOCK_GAP)
  parts = [f'<svg class="arch" viewBox="0 0 {width} {height}" '
           f'style="max-width:{width}px" role="img" '
           'aria-label="block groups of the best architecture">']
  reduction = 1
  for i, group in enumerate(groups):
    box_height = 80 + 60 * group.filters / widest
    x, y = i * (BLOCK_WIDTH + BLOCK_GAP) + 4, middle - box_height / 2
    reduction *= group.strides
    parts.append(f'<rect class="block {_esc(group.kind)}" x="{x}" y="{y:.1f}" '
                 f'width="{BLOCK_WIDTH}" height="{box_height:.1f}" rx="6"/>')
    for j, line in enumerate(group.lines):
      title = ' class="block-title"' if j == 0 else ''
      parts.append(f'<text{title} x="{x + BLOCK_WIDTH / 2}" '
                   f'y="{middle - 22 + 16 * j}" text-anchor="middle">'
                   f'{_esc(line)}</text>')
    parts.append(f'<text class="tick" x="{x + BLOCK_WIDTH / 2}" y="{height - 8}" '
                 f'text-anchor="middle">1/{reduction} resolution</text>')
    if i:
      parts.append(f'<path class="arrow" d="M{x - BLOCK_GAP + 3} {middle} '
                   f'h{BLOCK_GAP - 6} m-6 -4 l6 4 l-6 4"/>')
  parts.append('</svg>')
  return ''.join(parts)


class GraphNode(NamedTuple):
  label: str
  level: int
  kind: str  # Colours the node: a block function, 'input' or 'init'.
  inputs: Sequence[int]  # Indices of earlier nodes.
  tip: str
  is_output: bool = False


COLUMN_WIDTH, ROW_HEIGHT, NODE_WIDTH, NODE_HEIGHT = 58, 46, 42, 24
GRAPH_LEFT = 84  # Room for the level labels.


def _spinenet_nodes(spec: search_spaces.SpineNetSpec) -> List[GraphNode]:
  """Blocks in build order; `input_offsets` index this same list."""
  sequence = spec.block_sequence()
  num_init = len(spec.init_blocks)
  num_outputs = len(spec.output_blocks)
  nodes = []
  for index, (level, block) in enumerate(sequence):
    is_output = index >= len(sequence) - num_outputs
    kind = 'init' if index < num_init else block.block_fn
    nodes.append(GraphNode(
        f'P{level}' if is_output else str(index), level, kind,
        list(block.input_offsets),
        f'block {index}: {block.block_fn} at level {level}' +
        (f', inputs {list(block.input_offsets)}' if block.input_offsets
         else ', reads the stem'), is_output))
  return nodes


def _nasfpn_nodes(spec: search_spaces.NasFpnSpec) -> List[GraphNode]:
  """The backbone's features, then the merge cells; offsets index both."""
  nodes = [GraphNode(f'C{level}', level, 'input', [],
                     f'input {i}: backbone level {level}')
           for i, level in enumerate(search_spaces.NASFPN_LEVELS)]
  num_intermediate = len(spec.intermediate_blocks)
  for k, (level, block) in enumerate(spec.block_sequence()):
    index = len(nodes)
    is_output = k >= num_intermediate
    nodes.append(GraphNode(
        f'P{level}' if is_output else str(index), level, block.combine_fn,
        list(block.input_offsets),
        f'{index}: {block.combine_fn} of {list(block.input_offsets)} at level '
        f'{level}', is_output))
  return nodes


def _graph_svg(nodes: Sequence[GraphNode]) -> str:
  """Nodes in build order left to right (inputs share the first column), one
  row per level (finest at the top), an edge from each input."""
  levels = [n.level for n in nodes]
  columns, column = [], 0
  for n in nodes:
    if n.kind != 'input' or not columns:
      column += 1
    columns.append(column)
  width = GRAPH_LEFT + column * COLUMN_WIDTH
  height = 20 + (max(levels) - min(levels) + 1) * ROW_HEIGHT

  def center(i: int) -> Tuple[float, float]:
    return (GRAPH_LEFT + (columns[i] - 1) * COLUMN_WIDTH + NODE_WIDTH / 2,
            20 + (nodes[i].level - min(levels)) * ROW_HEIGHT + NODE_HEIGHT / 2)

  parts = [f'<svg class="arch" viewBox="0 0 {width} {height}" '
           f'style="max-width:{width}px" role="img" '
           'aria-label="block graph of the best architecture">']
  for level in range(min(levels), max(levels) + 1):
    y = 20 + (level - min(levels)) * ROW_HEIGHT + NODE_HEIGHT / 2
    parts.append(f'<text class="tick" x="4" y="{y + 4:.1f}">L{level} '
                 f'(1/{2 ** level})</text>')
  for i, n in enumerate(nodes):
    x2, y2 = center(i)
    for source in n.inputs:
      x1, y1 = center(source)
      bend = max(COLUMN_WIDTH / 2, (x2 - x1) / 2)
      parts.append(f'<path class="edge{" to-output" if n.is_output else ""}" '
                   f'd="M{x1 + NODE_WIDTH / 2:.1f} {y1:.1f} C{x1 + bend:.1f} '
                   f'{y1:.1f} {x2 - bend:.1f} {y2:.1f} {x2 - NODE_WIDTH / 2:.1f} '
                   f'{y2:.1f}"/>')
  for i, n in enumerate(nodes):
    x, y = center(i)
    parts.append(
        f'<g><title>{_esc(n.tip)}</title><rect class="node {_esc(n.kind)}'
        f'{" output" if n.is_output else ""}" x="{x - NODE_WIDTH / 2:.1f}" '
        f'y="{y - NODE_HEIGHT / 2:.1f}" width="{NODE_WIDTH}" '
        f'height="{NODE_HEIGHT}" rx="5"/><text x="{x:.1f}" y="{y + 4:.1f}" '
        f'text-anchor="middle">{_esc(n.label)}</text></g>')
  parts.append('</svg>')
  return ''.join(parts)


def _legend(kinds: Sequence[str]) -> str:
  return '<p class="legend-row">' + ' '.join(
      f'<span class="swatch {_esc(k)}"></span>{_esc(k)}' for k in kinds) + '</p>'


def architecture_html(spec: Any) -> str:
  """An architecture's summary, and a drawing of the specs that have one."""
  summary = (f'<pre class="summary">'
             f'{_esc(search_spaces.architecture_summary(spec))}</pre>')
  if isinstance(spec, (search_spaces.MnasNetSpec, search_spaces.EfficientNetV2Spec)):
    groups = _block_groups(spec)
    return (summary + _block_groups_svg(groups) +
            _legend(list(dict.fromkeys(g.kind for g in groups))) +
            '<p class="note">Box height grows with output filters (widths '
            'before the config\'s filter_size_scale); a group\'s first block '
            'has its stride, the others stride 1.</p>')
  if isinstance(spec, (search_spaces.SpineNetSpec, search_spaces.NasFpnSpec)):
    nodes = (_spinenet_nodes(spec) if isinstance(spec, search_spaces.SpineNetSpec)
             else _nasfpn_nodes(spec))
    return (summary + _graph_svg(nodes) + _legend(sorted({n.kind for n in nodes})) +
            '<p class="note">Blocks in build order, one row per feature level; '
            'lines join each block to its two inputs. Numbers are the offsets '
            '<code>input_offsets</code> refer to; P<i>n</i> marks the output '
            'at level <i>n</i>. Hover a block for details.</p>')
  return summary


# ---------------------------------------------------------------------------
# Page sections
# ---------------------------------------------------------------------------


class Column(NamedTuple):
  header: str
  numeric: bool
  cell: Callable[[store_lib.Trial], Tuple[str, Any]]  # (shown, sort value)


def _number_column(header: str, value: Callable[[store_lib.Trial], Any],
                   spec: str) -> Column:
  def cell(trial):
    v = value(trial)
    return (_fmt(v, spec), v) if _is_number(v) else ('–', '')
  return Column(header, True, cell)


def _metric(name: str) -> Callable[[store_lib.Trial], Any]:
  return lambda t: (t.metrics or {}).get(name)


def _columns(view: StageView, summaries: Dict[int, str]) -> List[Column]:
  def has(metric):
    return any(_is_number((t.metrics or {}).get(metric)) for t in view.trials)

  def error_cell(trial):
    text = trial.error or ''
    shown = text if len(text) <= 120 else text[:117] + '…'
    return (f'<span title="{_esc(text)}">{_esc(shown)}</span>', text)

  def summary_cell(trial):
    return f'<code>{_esc(summaries[trial.id])}</code>', summaries[trial.id]

  columns = [
      _number_column('trial', lambda t: t.id, '.0f'),
      Column('status', False, lambda t: (_esc(t.status), t.status)),
  ]
  if view.stage == 'train':
    columns.append(_number_column('search trial', _metric('search_trial_id'), '.0f'))
  columns += [
      _number_column('reward', lambda t: t.reward, '.4f'),
      _number_column(view.accuracy_key,
                     lambda t: accuracy(t, view.accuracy_key), '.4f'),
      _number_column('MAdds (B)', _metric(FLOPS), '.4g'),
      _number_column('params', _metric('params'), ',.0f'),
  ]
  if has(LATENCY):
    columns.append(_number_column('latency (ms)', _metric(LATENCY), '.2f'))
  if has(MEMORY):
    columns.append(_number_column('memory (MB)', _metric(MEMORY), '.1f'))
  columns += [
      _number_column('time (s)', _duration, '.1f'),
      Column('policy' if view.stage == 'augment_search' else 'architecture',
             False, summary_cell),
      Column('error', False, error_cell),
  ]
  return columns


def _trials_table(view: StageView, summaries: Dict[int, str]) -> str:
  """Every trial, sortable by any column (click its header)."""
  columns = _columns(view, summaries)
  head = ''.join(f'<th data-type="{"num" if c.numeric else "text"}" '
                 f'title="sort by {_esc(c.header)}">{_esc(c.header)}</th>'
                 for c in columns)
  rows = []
  for t in view.trials:
    cells = []
    for c in columns:
      shown, value = c.cell(t)
      cells.append(f'<td data-value="{_esc(value)}">{shown}</td>')
    best = ' class="best"' if view.best and t.id == view.best.id else ''
    rows.append(f'<tr id="{view.stage}-trial-{t.id}" data-trial="{t.id}"'
                f'{best}>{"".join(cells)}</tr>')
  return (f'<div class="scroll"><table class="trials" id="{view.stage}-trials">'
          f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
          '</table></div>')


def _progress_chart(view: StageView) -> str:
  """Reward and accuracy by trial id, with the best reward so far."""
  rewarded = leaderboard.ranked(view.trials)
  if not rewarded:
    return '<p class="note">No rewarded trial yet: nothing to plot.</p>'
  series = [
      Series('reward', 'reward', [
          Point(t.id, t.reward, t.id, f'trial {t.id}: reward {t.reward:.4f}')
          for t in sorted(rewarded, key=lambda t: t.id)]),
      Series(view.accuracy_key, 'accuracy', [
          Point(t.id, accuracy(t, view.accuracy_key), t.id,
                f'trial {t.id}: {view.accuracy_key} '
                f'{accuracy(t, view.accuracy_key):.4f}')
          for t in view.trials if accuracy(t, view.accuracy_key) is not None]),
  ]
  best_so_far, best_reward = [], -math.inf
  for t in sorted(rewarded, key=lambda t: t.id):
    best_reward = max(best_reward, t.reward)
    best_so_far.append(Point(t.id, best_reward))
  series.append(Series('best so far', 'best-line', best_so_far, steps=True))
  infeasible = [t for t in view.trials
                if t.status == store_lib.INFEASIBLE and t.reward is not None]
  if infeasible:
    series.append(Series('infeasible', 'infeasible', [
        Point(t.id, t.reward, t.id, f'trial {t.id}: infeasible, {t.error}')
        for t in infeasible]))
  return _chart(f'{view.stage}-progress', 'trial', 'value', series,
                integer_x=True)


def _pareto_charts(view: StageView) -> str:
  """Accuracy against each measured cost; the front is marked."""
  charts = []
  for cost, label in PARETO_COSTS.items():
    points = [Point(t.metrics[cost], accuracy(t, view.accuracy_key), t.id,
                    f'trial {t.id}: {view.accuracy_key} '
                    f'{accuracy(t, view.accuracy_key):.4f}, {label} '
                    f'{t.metrics[cost]:.4g}')
              for t in view.trials if t.status == store_lib.COMPLETED and
              accuracy(t, view.accuracy_key) is not None and
              _is_number(t.metrics.get(cost))]
    if not points:
      if cost == FLOPS:
        charts.append('<p class="note">No completed trial with an accuracy and '
                      'a FLOPs count yet.</p>')
      continue
    front = [p._replace(note=str(p.trial_id)) for p in pareto_front(points)]
    front_ids = {p.trial_id for p in front}
    charts.append(_chart(
        f'{view.stage}-pareto-{cost}', label, view.accuracy_key, [
            Series('dominated', 'dominated',
                   [p for p in points if p.trial_id not in front_ids]),
            Series('Pareto front', 'front-line', front, steps=True),
            Series('on the front', 'front', front),
        ]))
  return f'<div class="charts">{"".join(charts)}</div>'


def _identity_html(identity: Dict[str, Any]) -> str:
  """What the stage ran with, the config file text folded away."""
  if not identity:
    return ''
  rows = ''.join(f'<tr><th>{_esc(k)}</th><td><code>{_esc(v)}</code></td></tr>'
                 for k, v in sorted(identity.items()) if k != 'config')
  config = (f'<details><summary>config file</summary><pre>'
            f'{_esc(identity["config"])}</pre></details>'
            if identity.get('config') else '')
  return (f'<details><summary>settings</summary><table class="settings">{rows}'
          f'</table>{config}</details>')


def _reward_text(identity: Dict[str, Any], accuracy_key: str) -> str:
  """E.g. `reward = top_1_accuracy × hard targets multi_add_flops_billion 0.0008`."""
  metric = identity.get('reward_metric') or accuracy_key
  targets = [f'{cost} {identity[flag]:g}'
             for flag, cost in reward_lib.COST_METRICS.items()
             if _is_number(identity.get(flag)) and identity[flag]]
  text = f'reward = {metric}'
  if targets:
    text += (f' scaled by {identity.get("reward_mode", "hard")} targets '
             f'{", ".join(targets)} (exponent {identity.get("reward_exponent", 1)})')
  budget = identity.get('max_flops_multi_adds_billion')
  if _is_number(budget) and budget:
    text += f'; over {budget:g} B multiply-adds: infeasible, not trained'
  return text


def _stage_card(view: StageView) -> str:
  """The header's lines about one stage: what ran, how it went, the best."""
  identity = view.identity
  facts = [f'{label} <b>{_esc(identity[key])}</b>' for label, key in (
      ('space', 'search_space'), ('algorithm', 'algorithm'), ('seed', 'seed'),
      ('fixed architecture from', 'base_search_space')) if key in identity]
  if view.stage == 'train' and view.architectures:
    facts.append(f'retrains <b>{_esc(view.architectures.space_name)}</b> '
                 'architectures of the search')
  lines = [f'<p>{" · ".join(facts)}</p>' if facts else '',
           f'<p>{_esc(_reward_text(identity, view.accuracy_key))}</p>'
           if identity else '',
           f'<p>{len(view.trials)} trials: {_esc(_status_counts(view.trials))}</p>']
  best = view.best
  if best is None:
    lines.append('<p class="best-line-text">No completed trial yet.</p>')
  else:
    acc = accuracy(best, view.accuracy_key)
    source = (best.metrics or {}).get('search_trial_id')
    retrains = f' (search trial {_esc(source)})' if source is not None else ''
    lines.append(
        f'<p class="best-line-text">Best trial <strong class="best-id" '
        f'id="{view.stage}-best">{best.id}</strong>{retrains}: reward '
        f'<b>{best.reward:.4f}</b>, {_esc(view.accuracy_key)} '
        f'<b>{_fmt(acc, ".4f")}</b>, MAdds '
        f'{_fmt((best.metrics or {}).get(FLOPS), ".4g")} B</p>'
        f'<p>nas_params_str:</p><pre class="params" id="{view.stage}-best-params">'
        f'{_esc(best.nas_params_str)}</pre>')
  return (f'<div class="card"><h3><a href="#{view.stage}">'
          f'{_esc(STAGE_TITLES[view.stage])}</a></h3>{"".join(lines)}'
          f'{_identity_html(identity)}</div>')


def _best_architecture(view: StageView) -> str:
  if view.best is None:
    return '<p class="note">No completed trial yet.</p>'
  if view.architectures is None:
    return (f'<p class="note">Cannot read architectures: '
            f'{_esc(view.space_error)}</p>')
  try:
    spec = view.architectures.spec(view.best.nas_params_str)
  except search_spaces.SearchSpaceError as e:
    return f'<p class="note">Cannot read trial {view.best.id}: {_esc(e)}</p>'
  return f'<p>Trial {view.best.id}:</p>{architecture_html(spec)}'


def kendall_tau(xs: Sequence[float], ys: Sequence[float]) -> float:
  """Kendall's tau-b of two rankings: 1 same order, -1 reversed; NaN when a
  side has no spread."""
  from scipy import stats  # pylint: disable=g-import-not-at-top  (slow import)
  return float(stats.kendalltau(xs, ys).statistic)


def _proxy_vs_full(views: Dict[str, StageView]) -> str:
  """How well the search's proxy accuracy ranks the retrained models."""
  search, train = views.get('search'), views.get('train')
  by_id = {t.id: t for t in search.trials} if search else {}
  pairs = []
  for t in train.trials if train else []:
    proxy_trial = by_id.get((t.metrics or {}).get('search_trial_id'))
    if proxy_trial is None:
      continue
    proxy = accuracy(proxy_trial, search.accuracy_key)
    full = accuracy(t, train.accuracy_key)
    if proxy is not None and full is not None:
      pairs.append((proxy_trial, t, proxy, full))
  if not pairs:
    return ('<p class="note" id="proxy-none">No retrained trials yet: once '
            'chosen search trials are fully trained (stage <code>train</code>), '
            'this compares their proxy accuracy with their full accuracy.</p>')
  if len(pairs) >= MIN_RANK_PAIRS:
    tau = kendall_tau([p[2] for p in pairs], [p[3] for p in pairs])
    verdict = (f'Kendall τ = <b id="kendall-tau">{tau:.3f}</b> over {len(pairs)} '
               'pairs (1: the proxy ranks architectures exactly as full '
               'training does).' if math.isfinite(tau) else
               'Kendall τ is undefined: all proxy or all full accuracies are equal.')
  else:
    verdict = (f'{len(pairs)} pair{"s" if len(pairs) > 1 else ""}: Kendall τ '
               f'needs at least {MIN_RANK_PAIRS}.')
  chart = _chart('proxy-vs-full', f'proxy {search.accuracy_key} (search)',
                 f'full {train.accuracy_key} (train)', [
                     Series('retrained architecture', 'reward', [
                         Point(proxy, full, t.id,
                               f'search trial {s.id} → train trial {t.id}: '
                               f'{proxy:.4f} → {full:.4f}', f'search {s.id}')
                         for s, t, proxy, full in pairs])])
  return f'<p>{verdict}</p><div class="charts">{chart}</div>'


def _augment_preview(job_dir: str) -> str:
  path = os.path.join(job_dir, AUGMENT_PREVIEW_FILE)
  if not os.path.exists(path):
    return ''
  with open(path, 'rb') as f:
    data = base64.b64encode(f.read()).decode('ascii')
  return ('<h3>Augmentation preview</h3><img class="preview" alt="augmented '
          f'images" src="data:image/png;base64,{data}">')


def _stage_section(view: StageView, job_dir: str, views: Dict[str, StageView]) -> str:
  """A stage's table, then the charts and drawings that suit it."""
  summaries = _summaries(view)
  parts = [f'<section id="{view.stage}"><h2>{_esc(STAGE_TITLES[view.stage])}</h2>',
           '<h3>Trials</h3>']
  if view.architectures is None:
    parts.append(f'<p class="note">Architectures not shown: '
                 f'{_esc(view.space_error)}</p>')
  parts.append(_trials_table(view, summaries))
  if view.stage == 'train':
    parts += ['<h3>Proxy vs full accuracy</h3>', _proxy_vs_full(views)]
  else:
    parts += ['<h3>Progress</h3>',
              f'<div class="charts">{_progress_chart(view)}</div>']
  if view.stage == 'search':
    parts += ['<h3>Accuracy vs cost</h3>', _pareto_charts(view),
              '<h3>Best architecture</h3>', _best_architecture(view)]
    if 'train' not in views:
      parts += ['<h3>Proxy vs full accuracy</h3>', _proxy_vs_full(views)]
  if view.stage == 'augment_search':
    parts += ['<h3>Best policy</h3>', _best_architecture(view),
              _augment_preview(job_dir)]
  parts.append('</section>')
  return ''.join(parts)


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;
 margin:0;color:#1d2330;background:#f6f7f9}
header,section{background:#fff;margin:16px auto;max-width:1280px;padding:16px 24px;
 border-radius:8px;box-shadow:0 1px 3px #0002}
h1{font-size:22px;margin:0 0 4px}h2{font-size:19px;margin:0 0 8px}
h3{font-size:15px;margin:20px 0 8px;color:#334}
nav a{margin-right:14px}a{color:#2458b3}
.meta{color:#667;margin:0 0 12px}.note{color:#667}
.cards{display:flex;flex-wrap:wrap;gap:16px}
.card{flex:1 1 420px;border:1px solid #dde2ea;border-radius:6px;padding:8px 14px}
.card p{margin:4px 0}.card h3{margin:6px 0}
pre{white-space:pre-wrap;word-break:break-all;background:#f2f4f7;padding:8px;
 border-radius:4px;font-size:12px;margin:4px 0;max-height:9em;overflow-y:auto}
.scroll{overflow-x:auto}
table.trials{border-collapse:collapse;font-size:13px;width:100%}
table.trials th,table.trials td{padding:4px 8px;border-bottom:1px solid #e3e6eb;
 text-align:right;white-space:nowrap}
table.trials td:nth-last-child(-n+2),table.trials th:nth-last-child(-n+2),
table.trials td:nth-child(2),table.trials th:nth-child(2){text-align:left}
table.trials td:last-child{white-space:normal;min-width:160px;color:#a12;
 overflow-wrap:anywhere}
table.trials td:nth-last-child(2){white-space:normal;min-width:280px;max-width:400px}
table.trials th{cursor:pointer;background:#eef1f5;position:sticky;top:0;
 user-select:none}
table.trials th:hover{background:#dfe5ee}
th[aria-sort=ascending]::after{content:' ▲'}
th[aria-sort=descending]::after{content:' ▼'}
table.trials tr.best td{background:#fff1b8;font-weight:600}
table.settings th{text-align:left;padding-right:12px;vertical-align:top}
.charts{display:flex;flex-wrap:wrap;gap:16px}
svg.chart{width:100%;max-width:560px;background:#fff;border:1px solid #e3e6eb;
 border-radius:6px}
svg.arch{width:100%}
svg text{font-size:12px;fill:#1d2330}svg .tick{font-size:11px;fill:#667}
svg .axis{font-size:12px;fill:#334}svg .legend{font-size:12px}
svg .note{font-size:10px;fill:#556}
.grid{stroke:#eceff3}.frame{fill:none;stroke:#b8c0cc}
circle.reward{fill:#2458b3}circle.accuracy{fill:none;stroke:#e07b00;stroke-width:2}
circle.infeasible{fill:#c62828}circle.dominated{fill:#9aa8bb}
circle.front{fill:#c62828;stroke:#fff;stroke-width:1.5}
.best-line{fill:none;stroke:#2e9d4f;stroke-width:2}
.front-line{fill:none;stroke:#c62828;stroke-width:1.5;stroke-dasharray:5 3}
.edge{fill:none;stroke:#8a94a6;stroke-width:1.3;opacity:.7}
.edge.to-output{stroke:#3d4a60;opacity:.9}
.arrow{fill:none;stroke:#3d4a60;stroke-width:2}
rect.block,rect.node{stroke:#3d4a60;stroke-width:1}
rect.node.output{stroke-width:2.5}
.block-title{font-weight:600}
.stem{fill:#d9dde4}.conv{fill:#9ecae1}.mbconv{fill:#fdb97d}.fused_mbconv{fill:#a1d99b}
.input{fill:#d9dde4}.init{fill:#d9dde4}.residual{fill:#9ecae1}
.bottleneck{fill:#fdb97d}.sum{fill:#9ecae1}.attention{fill:#c5b0e0}
.swatch{display:inline-block;width:14px;height:14px;border-radius:3px;
 vertical-align:-2px;margin:0 4px 0 12px;border:1px solid #3d4a60}
.swatch.stem,.swatch.input,.swatch.init{background:#d9dde4}
.swatch.conv,.swatch.residual,.swatch.sum{background:#9ecae1}
.swatch.mbconv,.swatch.bottleneck{background:#fdb97d}
.swatch.fused_mbconv{background:#a1d99b}.swatch.attention{background:#c5b0e0}
img.preview{max-width:100%}
"""

# Sorts a trials table by the clicked header; empty cells stay last.
SCRIPT = """
document.addEventListener('click', function (event) {
  var th = event.target.closest('table.trials th');
  if (!th) return;
  var ascending = th.getAttribute('aria-sort') !== 'ascending';
  Array.prototype.forEach.call(th.parentNode.cells, function (cell) {
    cell.removeAttribute('aria-sort');
  });
  th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
  var numeric = th.dataset.type === 'num', column = th.cellIndex;
  var body = th.closest('table').tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  function key(row) { return row.cells[column].dataset.value; }
  rows.sort(function (a, b) {
    var x = key(a), y = key(b);
    if (x === '' || y === '') return (x === '') - (y === '');
    var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
    return ascending ? order : -order;
  });
  rows.forEach(function (row) { body.appendChild(row); });
});
"""


def render(job_dir: str, views: Sequence[StageView]) -> str:
  """The whole page for a job's stages."""
  by_stage = {v.stage: v for v in views}
  nav = ' '.join(f'<a href="#{v.stage}">{_esc(STAGE_TITLES[v.stage])}</a>'
                 for v in views)
  cards = ''.join(_stage_card(v) for v in views) or (
      '<p class="note" id="no-trials">This job has no trials yet.</p>')
  sections = ''.join(_stage_section(v, job_dir, by_stage) for v in views)
  written = time.strftime('%Y-%m-%d %H:%M:%S %Z')
  return (
      '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
      '<meta name="viewport" content="width=device-width, initial-scale=1">'
      '<link rel="icon" href="data:,">'
      f'<title>nas-garden report: {_esc(os.path.basename(job_dir.rstrip("/")))}'
      f'</title><style>{STYLE}</style></head><body>'
      f'<header><h1>nas-garden report</h1><p class="meta">job dir '
      f'<code id="job-dir">{_esc(os.path.abspath(job_dir))}</code> · written '
      f'{_esc(written)}</p><nav>{nav}</nav><div class="cards">{cards}</div>'
      f'</header>{sections}<script>{SCRIPT}</script></body></html>\n')


def _read_job(job_dir: str):
  """Every stage's view, read from the store in one read-only session."""
  store = store_lib.Store.open(job_dir, read_only=True)
  try:
    return _read_stages(store)
  finally:
    store.close()


def write_report(job_dir: str) -> str:
  """Writes `<job_dir>/report.html` atomically; returns its path."""
  views = _read_job(job_dir)
  path = os.path.join(job_dir, REPORT_FILE)
  artifacts.write_text(path, render(job_dir, views))
  return path


# ---------------------------------------------------------------------------
# TensorBoard HParams
# ---------------------------------------------------------------------------

STATUS_HPARAM = 'trial_status'


def _hparam_domain(literal_values: Sequence[Any]) -> List[Any]:
  """A decision point's candidates as HParams values (one type): its
  literals unquoted, ints widened to float beside floats, else strings."""
  values = [v[1:-1] if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] and
            v[0] in '\'"' else v for v in literal_values]
  kinds = {type(v) for v in values}
  if kinds == {int, float}:
    return [float(v) for v in values]
  if len(kinds) == 1 and kinds <= {int, float, str, bool}:
    return values
  return [str(v) for v in values]


def _write_stage_hparams(stage_dir: str, view: StageView) -> None:
  """The experiment (decision points and metrics) in `stage_dir`, then one
  run per trial: its choices, status and metrics (accuracy per evaluation)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (slow import)
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
  if view.architectures is None:
    raise search_spaces.SearchSpaceError(
        f'cannot list the {view.stage} stage\'s decision points: '
        f'{view.space_error}')
  domains = {str(dp.id): _hparam_domain(dp.literal_values)
             for dp in view.architectures.dna_spec.decision_points}
  hparams = [hp.HParam(name, hp.Discrete(list(dict.fromkeys(values))))
             for name, values in domains.items()]
  hparams.append(hp.HParam(STATUS_HPARAM, hp.Discrete(
      [store_lib.RUNNING, *store_lib.FINISHED_STATES])))
  metric_names = [view.accuracy_key, 'reward', FLOPS] + [
      name for name in (LATENCY, MEMORY)
      if any(_is_number((t.metrics or {}).get(name)) for t in view.trials)]
  writer = tf.summary.create_file_writer(stage_dir)
  with writer.as_default():
    hp.hparams_config(hparams=hparams,
                      metrics=[hp.Metric(name) for name in metric_names])
  writer.close()
  for t in view.trials:
    metrics = dict(t.metrics or {}, reward=t.reward)
    choices = json.loads(t.nas_params_str)
    values = {name: domains[name][int(choice.split('/', 1)[0])]
              for name, choice in choices.items()}
    values[STATUS_HPARAM] = t.status
    evaluations = [e for e in metrics.get('evaluations') or []
                   if _is_number(e.get(view.accuracy_key))]
    final_step = int(evaluations[-1]['step']) if evaluations else 0
    writer = tf.summary.create_file_writer(os.path.join(stage_dir, str(t.id)))
    with writer.as_default():
      hp.hparams(values, trial_id=f'{view.stage}/{t.id}',
                 start_time_secs=t.created_at)
      for e in evaluations:
        tf.summary.scalar(view.accuracy_key, e[view.accuracy_key],
                          step=int(e['step']))
      for name in metric_names:
        if _is_number(metrics.get(name)) and not (
            name == view.accuracy_key and evaluations):
          tf.summary.scalar(name, metrics[name], step=final_step)
    writer.close()


def write_hparams_summaries(job_dir: str) -> str:
  """Writes `<job_dir>/hparams/<stage>/<trial id>` TensorBoard runs; returns
  `<job_dir>/hparams`. View a stage with
  `tensorboard --logdir <job_dir>/hparams/<stage>` (HPARAMS tab).

  The directory is rebuilt from the store each time (no duplicate events)
  and swapped in whole.
  """
  views = _read_job(job_dir)
  root = os.path.join(job_dir, HPARAMS_DIR)
  staging = f'{root}.tmp.{os.getpid()}'
  shutil.rmtree(staging, ignore_errors=True)
  os.makedirs(staging)
  try:
    for view in views:
      _write_stage_hparams(os.path.join(staging, view.stage), view)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  shutil.rmtree(root, ignore_errors=True)
  os.replace(staging, root)
  return root
