"""A small SVG chart library: scatter and step plots drawn as inline SVG.

The report is one offline page, so charts are markup written here rather
than images or a plotting library's script; markers carry `data-trial` so
the page can link them to table rows.
"""

import html
import math
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple


def esc(value: Any) -> str:
  """`value` as text safe in HTML/SVG content and quoted attributes."""
  return html.escape(str(value), quote=True)


def number(value: Any, spec: str) -> str:
  """`value` formatted by `spec`; a dash for a missing (non-numeric) one."""
  return '–' if not isinstance(value, (int, float)) else format(value, spec)


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


def ticks(low: float, high: float, integer: bool = False) -> Tuple[List[float], int]:
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


def svg_chart(chart_id: str, x_label: str, y_label: str,
              series: Sequence[Series], integer_x: bool = False) -> str:
  """An SVG chart of the series; markers carry `data-trial` and a tooltip."""
  points = [p for s in series for p in s.points]
  x_ticks, x_decimals = ticks(min(p.x for p in points),
                              max(p.x for p in points), integer_x)
  y_ticks, y_decimals = ticks(min(p.y for p in points), max(p.y for p in points))
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

  parts = [f'<svg id="{esc(chart_id)}" class="chart" viewBox="0 0 '
           f'{CHART_WIDTH} {CHART_HEIGHT}" role="img" '
           f'aria-label="{esc(y_label)} against {esc(x_label)}">']
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
      f'y="{CHART_HEIGHT - 10}" text-anchor="middle">{esc(x_label)}</text>'
      f'<text class="axis" transform="translate(16 {PLOT_TOP + plot_height / 2}) '
      f'rotate(-90)" text-anchor="middle">{esc(y_label)}</text>')
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
                     f'cy="{sy(p.y):.1f}" r="4.5"><title>{esc(p.tip)}</title>'
                     '</circle>')
        if p.note:
          parts.append(f'<text class="note" x="{sx(p.x) + 7:.1f}" '
                       f'y="{sy(p.y) - 6:.1f}">{esc(p.note)}</text>')
      swatch = (f'<circle class="{s.css_class}" cx="{legend_x + 8}" cy="18" '
                'r="4.5"/>')
    parts.append(f'{swatch}<text class="legend" x="{legend_x + 22}" y="22">'
                 f'{esc(s.label)}</text>')
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
