"""The report's compound scaling section: compound_scaling.json (written by
`--mode=compound_scaling` beside the store) as a chart of accuracy against
multiply-adds and a table of the grid and the φ models."""

from typing import Any, Dict

from trainer.report.charts import Point, Series, esc, number, svg_chart

SECTION_ID = 'compound-scaling'
TITLE = 'Compound scaling'


def _row(name: str, phi: int, point: Dict[str, Any], trial: Dict[str, Any],
         ratio: str, best: bool) -> str:
  cells = [name, phi, point.get('alpha_depth', ''),
           point.get('beta_width', ''), point.get('gamma_resolution', ''),
           number(trial['accuracy'], '.4f'), number(trial['flops'], '.4g') + ratio,
           trial['sizes']['input_size'][0], trial['status']]
  return (('<tr class="best">' if best else '<tr>') +
          ''.join(f'<td data-value="{esc(c)}">{esc(c)}</td>' for c in cells) + '</tr>')


def section(result: Dict[str, Any]) -> str:
  metric = result['quality_metric']
  grid = [g for g in result['grid']
          if g['flops'] is not None and g['accuracy'] is not None]
  models = [m for m in result['models']
            if m['flops'] is not None and m['accuracy'] is not None]
  series = []
  if grid:
    series.append(Series('grid at φ=1 (proxy)', 'accuracy', [
        Point(g['flops'], g['accuracy'], None,
              f'α={g["alpha_depth"]} β={g["beta_width"]} '
              f'γ={g["gamma_resolution"]}: {g["accuracy"]:.4f}')
        for g in grid]))
  if models:
    series.append(Series('φ models (full training)', 'reward', [
        Point(m['flops'], m['accuracy'], None,
              f'φ={m["phi"]}: {m["accuracy"]:.4f}', f'φ={m["phi"]}')
        for m in models]))
  chart = (f'<div class="charts">{svg_chart(SECTION_ID + "-chart", "multiply-adds (billions)", metric, series)}</div>'
           if series else '<p class="note">No trial has finished yet.</p>')
  best = next((g for g in result['grid']
               if g['trial_id'] == result['best_grid_trial_id']), None)
  rows = ''.join(_row(
      f'grid {g["trial_id"]}', 1, g, g, '', g['trial_id'] == (
          result['best_grid_trial_id'])) for g in result['grid'])
  rows += ''.join(_row(
      f'φ model {m["trial_id"]}', m['phi'], best or {}, m,
      f' ({m["flops_ratio"]:.2f}x)' if m['flops_ratio'] else '', False)
                  for m in result['models'])
  return (f'<section id="{SECTION_ID}"><h2>{TITLE}</h2>'
          f'<p>{esc(result["base"]["search_space"])} scaled in depth α^φ, '
          'width β^φ and resolution γ^φ with α·β²·γ² ≈ 2: the grid at φ=1 '
          'on the proxy (stage <code>compound_scaling_grid</code>), then the '
          'best point\'s φ models in full training (stage '
          '<code>compound_scaling</code>).</p>'
          f'{chart}<div class="scroll"><table class="trials" id="{SECTION_ID}-table">'
          '<thead><tr><th>trial</th><th>φ</th><th>α depth</th><th>β width</th>'
          f'<th>γ resolution</th><th>{esc(metric)}</th><th>MAdds (B)</th>'
          '<th>image px</th><th>status</th></tr></thead>'
          f'<tbody>{rows}</tbody></table></div></section>')
