"""The report page: stage sections, tables and charts, with its CSS and JS.

Everything the page needs is inline (style, a few lines of script to sort
tables, charts as SVG), so `report.html` opens offline, from a copy or an
e-mail.
"""

import base64
import math
import os
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import search_spaces
from proxy_tasks import kendall
from trainer import artifacts
from trainer import compound_scaling
from trainer import design_space
from trainer import fileio
from trainer import objective
from trainer.controller import leaderboard
from trainer.controller import store as store_lib
from trainer.report.charts import Point, Series, esc, pareto_front, svg_chart
from trainer.report.data import (FLOPS, LATENCY, MEMORY, STAGE_TITLES,
                                 StageView, accuracy, architecture_summaries,
                                 is_number, read_job, read_result)
from trainer.report.drawings import architecture_html
from trainer.report import design_space as design_space_section
from trainer.report import compound_scaling as compound_scaling_section

REPORT_FILE = 'report.html'
# Written by `--mode=augment_preview` with its default --output_path.
AUGMENT_PREVIEW_FILE = 'augment_preview.png'
# Costs an architecture's accuracy is traded against: metric -> axis label.
PARETO_COSTS = {FLOPS: 'multiply-adds (billions)', LATENCY: 'latency (ms)'}
# Kendall's tau needs this many (proxy, full) pairs to say anything.
MIN_RANK_PAIRS = 3


def _fmt(value: Optional[float], spec: str) -> str:
  return format(value, spec) if is_number(value) else '–'


def _status_counts(trials: Sequence[store_lib.Trial]) -> str:
  counts: Dict[str, int] = {}
  for t in trials:
    counts[t.status] = counts.get(t.status, 0) + 1
  return ', '.join(f'{n} {status}' for status, n in sorted(counts.items()))


def _duration(trial: store_lib.Trial) -> Optional[float]:
  return trial.finished_at - trial.created_at if trial.finished_at else None


class Column(NamedTuple):
  header: str
  numeric: bool
  cell: Callable[[store_lib.Trial], Tuple[str, Any]]  # (shown, sort value)


def _number_column(header: str, value: Callable[[store_lib.Trial], Any],
                   spec: str) -> Column:
  def cell(trial):
    v = value(trial)
    return (_fmt(v, spec), v) if is_number(v) else ('–', '')
  return Column(header, True, cell)


def _metric(name: str) -> Callable[[store_lib.Trial], Any]:
  return lambda t: (t.metrics or {}).get(name)


def _columns(view: StageView, summaries: Dict[int, str]) -> List[Column]:
  def has(metric):
    return any(is_number((t.metrics or {}).get(metric)) for t in view.trials)

  def error_cell(trial):
    text = trial.error or ''
    shown = text if len(text) <= 120 else text[:117] + '…'
    return (f'<span title="{esc(text)}">{esc(shown)}</span>', text)

  def summary_cell(trial):
    return f'<code>{esc(summaries[trial.id])}</code>', summaries[trial.id]

  columns = [
      _number_column('trial', lambda t: t.id, '.0f'),
      Column('status', False, lambda t: (esc(t.status), t.status)),
  ]
  if view.stage == 'train':
    columns.append(_number_column('search trial', _metric('search_trial_id'), '.0f'))
  columns += [
      _number_column('reward', lambda t: t.reward, '.4f'),
      _number_column(view.quality_metric,
                     lambda t: accuracy(t, view.quality_metric), '.4f'),
      _number_column('MAdds (B)', _metric(FLOPS), '.4g'),
      _number_column('params', _metric('params'), ',.0f'),
  ]
  if has(LATENCY):
    columns.append(_number_column('latency (ms)', _metric(LATENCY), '.2f'))
  if has(MEMORY):
    columns.append(_number_column('memory (MB)', _metric(MEMORY), '.1f'))
  if any(leaderboard.device(t) for t in view.trials):
    columns.append(Column('device', False, lambda t: (
        esc(leaderboard.device(t)), leaderboard.device(t))))
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
                 f'title="sort by {esc(c.header)}">{esc(c.header)}</th>'
                 for c in columns)
  rows = []
  for t in view.trials:
    cells = []
    for c in columns:
      shown, value = c.cell(t)
      cells.append(f'<td data-value="{esc(value)}">{shown}</td>')
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
      Series(view.quality_metric, 'accuracy', [
          Point(t.id, accuracy(t, view.quality_metric), t.id,
                f'trial {t.id}: {view.quality_metric} '
                f'{accuracy(t, view.quality_metric):.4f}')
          for t in view.trials if accuracy(t, view.quality_metric) is not None]),
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
  return svg_chart(f'{view.stage}-progress', 'trial', 'value', series,
                   integer_x=True)


def _pareto_charts(view: StageView) -> str:
  """Accuracy against each measured cost; the front is marked."""
  charts = []
  for cost, label in PARETO_COSTS.items():
    points = [Point(t.metrics[cost], accuracy(t, view.quality_metric), t.id,
                    f'trial {t.id}: {view.quality_metric} '
                    f'{accuracy(t, view.quality_metric):.4f}, {label} '
                    f'{t.metrics[cost]:.4g}')
              for t in view.trials if t.status == store_lib.COMPLETED and
              accuracy(t, view.quality_metric) is not None and
              is_number(t.metrics.get(cost))]
    if not points:
      if cost == FLOPS:
        charts.append('<p class="note">No completed trial with an accuracy and '
                      'a FLOPs count yet.</p>')
      continue
    front = [p._replace(note=str(p.trial_id)) for p in pareto_front(points)]
    front_ids = {p.trial_id for p in front}
    charts.append(svg_chart(
        f'{view.stage}-pareto-{cost}', label, view.quality_metric, [
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
  rows = ''.join(f'<tr><th>{esc(k)}</th><td><code>{esc(v)}</code></td></tr>'
                 for k, v in sorted(identity.items()) if k != 'config')
  config = (f'<details><summary>config file</summary><pre>'
            f'{esc(identity["config"])}</pre></details>'
            if identity.get('config') else '')
  return (f'<details><summary>settings</summary><table class="settings">{rows}'
          f'</table>{config}</details>')


def _reward_text(identity: Dict[str, Any], quality_metric: str) -> str:
  """E.g. `reward = top_1_accuracy × hard targets multi_add_flops_billion 0.0008`
  (the stage's objective.Objective identity)."""
  targets = [f'{cost} {identity[flag]:g}'
             for flag, cost in objective.TARGET_FLAGS.items()
             if is_number(identity.get(flag)) and identity[flag]]
  text = f'reward = {quality_metric}'
  if targets:
    text += (f' scaled by {identity.get("reward_mode", "hard")} targets '
             f'{", ".join(targets)} (exponent {identity.get("reward_exponent", 1)})')
  budget = identity.get('max_flops_multi_adds_billion')
  if is_number(budget) and budget:
    text += f'; over {budget:g} B multiply-adds: infeasible, not trained'
  return text


def _stage_card(view: StageView) -> str:
  """The header's lines about one stage: what ran, how it went, the best."""
  identity = view.identity
  facts = [f'{label} <b>{esc(identity[key])}</b>' for label, key in (
      ('space', 'search_space'), ('algorithm', 'algorithm'), ('seed', 'seed'),
      ('fixed architecture from', 'base_search_space')) if key in identity]
  if view.stage == 'train' and view.architectures:
    facts.append(f'retrains <b>{esc(view.architectures.space_name)}</b> '
                 'architectures of the search')
  lines = [f'<p>{" · ".join(facts)}</p>' if facts else '',
           f'<p>{esc(_reward_text(identity, view.quality_metric))}</p>'
           if identity else '',
           f'<p>{len(view.trials)} trials: {esc(_status_counts(view.trials))}</p>']
  best = view.best
  if best is None:
    lines.append('<p class="best-line-text">No completed trial yet.</p>')
  else:
    acc = accuracy(best, view.quality_metric)
    source = (best.metrics or {}).get('search_trial_id')
    retrains = f' (search trial {esc(source)})' if source is not None else ''
    lines.append(
        f'<p class="best-line-text">Best trial <strong class="best-id" '
        f'id="{view.stage}-best">{best.id}</strong>{retrains}: reward '
        f'<b>{best.reward:.4f}</b>, {esc(view.quality_metric)} '
        f'<b>{_fmt(acc, ".4f")}</b>, MAdds '
        f'{_fmt((best.metrics or {}).get(FLOPS), ".4g")} B</p>'
        f'<p>nas_params_str:</p><pre class="params" id="{view.stage}-best-params">'
        f'{esc(best.nas_params_str)}</pre>')
  return (f'<div class="card"><h3><a href="#{view.stage}">'
          f'{esc(STAGE_TITLES[view.stage])}</a></h3>{"".join(lines)}'
          f'{_identity_html(identity)}</div>')


def _best_architecture(view: StageView) -> str:
  if view.best is None:
    return '<p class="note">No completed trial yet.</p>'
  if view.architectures is None:
    return (f'<p class="note">Cannot read architectures: '
            f'{esc(view.space_error)}</p>')
  try:
    spec = view.architectures.spec(view.best.nas_params_str)
  except search_spaces.SearchSpaceError as e:
    return f'<p class="note">Cannot read trial {view.best.id}: {esc(e)}</p>'
  return f'<p>Trial {view.best.id}:</p>{architecture_html(spec)}'


def _proxy_vs_full(views: Dict[str, StageView]) -> str:
  """How well the search's proxy accuracy ranks the retrained models."""
  search, train = views.get('search'), views.get('train')
  by_id = {t.id: t for t in search.trials} if search else {}
  pairs = []
  for t in train.trials if train else []:
    proxy_trial = by_id.get((t.metrics or {}).get('search_trial_id'))
    if proxy_trial is None:
      continue
    proxy = accuracy(proxy_trial, search.quality_metric)
    full = accuracy(t, train.quality_metric)
    if proxy is not None and full is not None:
      pairs.append((proxy_trial, t, proxy, full))
  if not pairs:
    return ('<p class="note" id="proxy-none">No retrained trials yet: once '
            'chosen search trials are fully trained (stage <code>train</code>), '
            'this compares their proxy accuracy with their full accuracy.</p>')
  if len(pairs) >= MIN_RANK_PAIRS:
    tau = kendall.kendall_tau([p[2] for p in pairs], [p[3] for p in pairs])
    verdict = (f'Kendall τ = <b id="kendall-tau">{tau:.3f}</b> over {len(pairs)} '
               'pairs (1: the proxy ranks architectures exactly as full '
               'training does).' if tau is not None else
               'Kendall τ is undefined: all proxy or all full accuracies are equal.')
  else:
    verdict = (f'{len(pairs)} pair{"s" if len(pairs) > 1 else ""}: Kendall τ '
               f'needs at least {MIN_RANK_PAIRS}.')
  chart = svg_chart('proxy-vs-full', f'proxy {search.quality_metric} (search)',
                    f'full {train.quality_metric} (train)', [
                        Series('retrained architecture', 'reward', [
                            Point(proxy, full, t.id,
                                  f'search trial {s.id} → train trial {t.id}: '
                                  f'{proxy:.4f} → {full:.4f}', f'search {s.id}')
                            for s, t, proxy, full in pairs])])
  return f'<p>{verdict}</p><div class="charts">{chart}</div>'


def _augment_preview(job_dir: str) -> str:
  path = os.path.join(job_dir, AUGMENT_PREVIEW_FILE)
  if not fileio.exists(path):
    return ''
  data = base64.b64encode(fileio.read_bytes(path)).decode('ascii')
  return ('<h3>Augmentation preview</h3><img class="preview" alt="augmented '
          f'images" src="data:image/png;base64,{data}">')


def _stage_section(view: StageView, job_dir: str, views: Dict[str, StageView]) -> str:
  """A stage's table, then the charts and drawings that suit it."""
  summaries = architecture_summaries(view)
  parts = [f'<section id="{view.stage}"><h2>{esc(STAGE_TITLES[view.stage])}</h2>',
           '<h3>Trials</h3>']
  if view.architectures is None:
    parts.append(f'<p class="note">Architectures not shown: '
                 f'{esc(view.space_error)}</p>')
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
table.cell{border-collapse:collapse;font-size:13px;margin:8px 0}
table.cell th,table.cell td{padding:3px 8px;border-bottom:1px solid #e3e6eb;
text-align:left}table.cell caption{text-align:left;font-weight:600}
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
.x-block{fill:#9ecae1}.y-block{fill:#fdb97d}
.swatch{display:inline-block;width:14px;height:14px;border-radius:3px;
 vertical-align:-2px;margin:0 4px 0 12px;border:1px solid #3d4a60}
.swatch.stem,.swatch.input,.swatch.init{background:#d9dde4}
.swatch.conv,.swatch.residual,.swatch.sum{background:#9ecae1}
.swatch.mbconv,.swatch.bottleneck{background:#fdb97d}
.swatch.fused_mbconv{background:#a1d99b}.swatch.attention{background:#c5b0e0}
.swatch.x-block{background:#9ecae1}.swatch.y-block{background:#fdb97d}
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
  nav = ' '.join(f'<a href="#{v.stage}">{esc(STAGE_TITLES[v.stage])}</a>'
                 for v in views)
  cards = ''.join(_stage_card(v) for v in views)
  sections = ''.join(_stage_section(v, job_dir, by_stage) for v in views)
  design = read_result(job_dir, design_space.RESULT_FILE)
  if design is not None:
    nav += (f' <a href="#{design_space_section.SECTION_ID}">'
            f'{design_space_section.TITLE}</a>')
    cards += design_space_section.card(design)
    sections += design_space_section.section(job_dir, design)
  scaling = read_result(job_dir, compound_scaling.RESULT_FILE)
  if scaling is not None:
    nav += (f' <a href="#{compound_scaling_section.SECTION_ID}">'
            f'{compound_scaling_section.TITLE}</a>')
    sections += compound_scaling_section.section(scaling)
  cards = cards or (
      '<p class="note" id="no-trials">This job has no trials yet.</p>')
  written = time.strftime('%Y-%m-%d %H:%M:%S %Z')
  return (
      '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
      '<meta name="viewport" content="width=device-width, initial-scale=1">'
      '<link rel="icon" href="data:,">'
      f'<title>nas-garden report: {esc(os.path.basename(job_dir.rstrip("/")))}'
      f'</title><style>{STYLE}</style></head><body>'
      f'<header><h1>nas-garden report</h1><p class="meta">job dir '
      f'<code id="job-dir">{esc(fileio.absolute(job_dir))}</code> · written '
      f'{esc(written)}</p><nav>{nav}</nav><div class="cards">{cards}</div>'
      f'</header>{sections}<script>{SCRIPT}</script></body></html>\n')


def write_report(job_dir: str) -> str:
  """Writes `<job_dir>/report.html` atomically; returns its path."""
  views = read_job(job_dir)
  path = os.path.join(job_dir, REPORT_FILE)
  fileio.write_text(path, render(job_dir, views))
  return path
