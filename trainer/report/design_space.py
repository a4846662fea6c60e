"""The report's design-space section: `--mode=design_space`'s result
(design_space.json and its PNG, embedded) when the job dir has one."""

import base64
import os
from typing import Any, Dict

from trainer import design_space
from trainer import fileio
from trainer.report.charts import esc, number

SECTION_ID = 'design_space'
TITLE = 'Design-space comparison'


def card(result: Dict[str, Any]) -> str:
  """The header's lines: the spaces, n and min error, the KS statistics."""
  spaces = ', '.join(
      f'{esc(s["name"])} (n={s["n"]}, min error {number(s["min_error"], ".4f")})'
      for s in result.get('spaces', []))
  ks = ', '.join(f'{esc(k["a"])}/{esc(k["b"])} {number(k["statistic"], ".3f")}'
                 for k in result.get('ks', []))
  return (f'<div class="card"><h3><a href="#{SECTION_ID}">{TITLE}</a></h3>'
          f'<p>{spaces}</p><p>KS: {ks}</p></div>')


def section(job_dir: str, result: Dict[str, Any]) -> str:
  """The figure, the per-space table, the KS table and the width fits."""
  parts = [f'<section id="{SECTION_ID}"><h2>{TITLE}</h2>']
  png = os.path.join(job_dir, design_space.PLOT_FILE)
  if fileio.exists(png):
    data = base64.b64encode(fileio.read_bytes(png)).decode('ascii')
    parts.append('<img class="preview" id="design-space-plot" alt="error '
                 f'EDFs of the design spaces" src="data:image/png;base64,{data}">')
  rows = []
  for s in result.get('spaces', []):
    flops, params = s.get('flops', {}), s.get('params', {})
    rows.append(
        f'<tr><td>{esc(s["name"])}</td><td>{s["n"]}</td><td>{s["failed"]}</td>'
        f'<td>{number(s["min_error"], ".4f")}</td>'
        f'<td>{number(s["median_error"], ".4f")}</td>'
        f'<td>{number(flops.get("median"), ".4g")}</td>'
        f'<td>{number(params.get("median"), ",.0f")}</td></tr>')
  parts.append(
      '<h3>Spaces</h3><div class="scroll"><table class="design-space" '
      'id="design-space-spaces"><thead><tr><th>space</th><th>models</th>'
      '<th>failed</th><th>min error</th><th>median error</th>'
      '<th>median MAdds (B)</th><th>median params</th></tr></thead><tbody>'
      + ''.join(rows) + '</tbody></table></div>')
  ks_rows = ''.join(
      f'<tr><td>{esc(k["a"])}</td><td>{esc(k["b"])}</td>'
      f'<td>{number(k["statistic"], ".4f")}</td>'
      f'<td>{esc(k.get("dominant") or "neither")}</td></tr>'
      for k in result.get('ks', []))
  parts.append(
      '<h3>KS statistic (sup |F<sub>a</sub> − F<sub>b</sub>| of the error '
      'EDFs)</h3><table class="design-space" id="design-space-ks"><thead><tr>'
      '<th>space a</th><th>space b</th><th>KS</th>'
      '<th>dominant EDF (at or above the other at every error)</th></tr>'
      '</thead><tbody>'
      f'{ks_rows}</tbody></table>')
  fit_rows = []
  for s in result.get('spaces', []):
    fit = s.get('width_fit', {})
    if 'skipped' in fit:
      fit_rows.append(f'<tr><td>{esc(s["name"])}</td><td colspan="6" '
                      f'class="note">{esc(fit["skipped"])}</td></tr>')
      continue
    median = fit['median']
    fit_rows.append(
        f'<tr><td>{esc(s["name"])}</td><td>{fit["models"]}</td>'
        + ''.join(f'<td>{number(median[k], ".3g")}</td>'
                  for k in ('w0', 'wa', 'wm', 'e_fit', 'linear_wa'))
        + '</tr>')
  parts.append(
      '<h3>Quantised linear fit of the best models\' block widths</h3>'
      '<p class="note">Medians over each space\'s best models: w0, wa, wm '
      'of u<sub>j</sub> = w0 + wa·j quantised to w0·wm<sup>s</sup> '
      '(grid search for the smallest e<sub>fit</sub>, the mean |log| ratio '
      'of observed to fitted widths); linear wa: the least-squares slope.'
      '</p><table class="design-space" id="design-space-fit"><thead><tr>'
      '<th>space</th><th>models</th><th>w0</th><th>wa</th><th>wm</th>'
      '<th>e<sub>fit</sub></th><th>linear wa</th></tr></thead><tbody>'
      + ''.join(fit_rows) + '</tbody></table></section>')
  return ''.join(parts)
