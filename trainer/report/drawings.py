"""Drawings of architectures as inline SVG, looked up by spec class.

A best architecture reads faster as a picture than as its summary line. Each
search space's spec class registers its own drawing (`register_drawing`), so
adding a space adds a drawing without editing a dispatch chain; specs with
none get their summary only.
"""

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import search_spaces
from trainer.report.charts import esc

# The MnasNet, EfficientNetV2 and RegNet stem, before filter_size_scale.
STEM_FILTERS = 32
BLOCK_WIDTH, BLOCK_GAP = 118, 26


class BlockGroup(NamedTuple):
  kind: str  # Colours the box: 'stem' or the block function.
  lines: List[str]
  filters: int
  strides: int


# The stride-2 3x3 conv every block-group backbone starts with.
STEM = BlockGroup('stem', ['stem', 'conv 3×3', f'{STEM_FILTERS} ch', 'stride 2'],
                  STEM_FILTERS, 2)


def _block_groups(spec: Any, describe: Callable[[Any], Tuple[str, str, str]]
                  ) -> List[BlockGroup]:
  """The stem, then each block group; `describe(block)` gives a group's
  (kind, details line, width line), which differ between the spaces."""
  groups = [STEM]
  for b in spec.blocks:
    kind, details, width = describe(b)
    groups.append(BlockGroup(kind, [f'{kind} ×{b.num_repeats}', details, width,
                                    f'stride {b.strides}'],
                             b.output_filters, b.strides))
  return groups


def _squeeze(block: Any) -> str:
  return f' · SE {block.se_ratio:g}' if block.se_ratio else ''


def _mnasnet_block(b: Any) -> Tuple[str, str, str]:
  # A conv block has no expansion or squeeze-excite (inert decisions).
  details = (f'k{b.kernel_size} · e{b.expand_ratio}{_squeeze(b)}'
             if b.block_fn == 'mbconv' else f'k{b.kernel_size}')
  return b.block_fn, details, f'{b.output_filters} ch'


def _efficientnet_v2_block(b: Any) -> Tuple[str, str, str]:
  return (b.block_type, f'k{b.kernel_size} · e{b.expand_ratio}{_squeeze(b)}',
          f'{b.output_filters} ch · {b.act_fn}')


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
    parts.append(f'<rect class="block {esc(group.kind)}" x="{x}" y="{y:.1f}" '
                 f'width="{BLOCK_WIDTH}" height="{box_height:.1f}" rx="6"/>')
    for j, line in enumerate(group.lines):
      title = ' class="block-title"' if j == 0 else ''
      parts.append(f'<text{title} x="{x + BLOCK_WIDTH / 2}" '
                   f'y="{middle - 22 + 16 * j}" text-anchor="middle">'
                   f'{esc(line)}</text>')
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


def _nasfpn_nodes(spec: Any, input_levels: Sequence[int]) -> List[GraphNode]:
  """The backbone's features at `input_levels`, then the merge cells;
  offsets index both."""
  nodes = [GraphNode(f'C{level}', level, 'input', [],
                     f'input {i}: backbone level {level}')
           for i, level in enumerate(input_levels)]
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
        f'<g><title>{esc(n.tip)}</title><rect class="node {esc(n.kind)}'
        f'{" output" if n.is_output else ""}" x="{x - NODE_WIDTH / 2:.1f}" '
        f'y="{y - NODE_HEIGHT / 2:.1f}" width="{NODE_WIDTH}" '
        f'height="{NODE_HEIGHT}" rx="5"/><text x="{x:.1f}" y="{y + 4:.1f}" '
        f'text-anchor="middle">{esc(n.label)}</text></g>')
  parts.append('</svg>')
  return ''.join(parts)


def _legend(kinds: Sequence[str]) -> str:
  return '<p class="legend-row">' + ' '.join(
      f'<span class="swatch {esc(k)}"></span>{esc(k)}' for k in kinds) + '</p>'


# Registered drawings: spec class -> spec -> the drawing's HTML (without the
# summary, which every architecture gets).
_DRAWINGS: Dict[type, Callable[[Any], str]] = {}


def register_drawing(spec_type: type) -> Callable[[Callable[[Any], str]],
                                                  Callable[[Any], str]]:
  """Decorator: draw specs of `spec_type` (and its subclasses) with the
  decorated function, spec -> HTML. A new search space gets a drawing by
  registering one here, without touching `architecture_html`."""
  def register(draw: Callable[[Any], str]) -> Callable[[Any], str]:
    _DRAWINGS[spec_type] = draw
    return draw
  return register


def drawing_for(spec: Any) -> Optional[Callable[[Any], str]]:
  """The drawing registered for the spec's class, or for its nearest
  registered base class; None when there is none."""
  matches = [t for t in _DRAWINGS if isinstance(spec, t)]
  if not matches:
    return None
  return _DRAWINGS[max(matches, key=lambda t: len(t.__mro__))]


def architecture_html(spec: Any) -> str:
  """An architecture's summary, and a drawing of the specs that have one."""
  summary = (f'<pre class="summary">'
             f'{esc(search_spaces.architecture_summary(spec))}</pre>')
  draw = drawing_for(spec)
  return summary + draw(spec) if draw else summary


BLOCK_NOTE = ('<p class="note">Box height grows with output filters (widths '
              'before the config\'s filter_size_scale); a group\'s first block '
              'has its stride, the others stride 1.</p>')
GRAPH_NOTE = ('<p class="note">Blocks in build order, one row per feature '
              'level; lines join each block to its two inputs. Numbers are '
              'the offsets <code>input_offsets</code> refer to; P<i>n</i> '
              'marks the output at level <i>n</i>. Hover a block for '
              'details.</p>')


def _block_groups_html(groups: Sequence[BlockGroup]) -> str:
  return (_block_groups_svg(groups) +
          _legend(list(dict.fromkeys(g.kind for g in groups))) + BLOCK_NOTE)


def _graph_html(nodes: Sequence[GraphNode]) -> str:
  return (_graph_svg(nodes) + _legend(sorted({n.kind for n in nodes})) +
          GRAPH_NOTE)


@register_drawing(search_spaces.MnasNetSpec)
def _draw_mnasnet(spec: search_spaces.MnasNetSpec) -> str:
  return _block_groups_html(_block_groups(spec, _mnasnet_block))


@register_drawing(search_spaces.EfficientNetV2Spec)
def _draw_efficientnet_v2(spec: search_spaces.EfficientNetV2Spec) -> str:
  return _block_groups_html(_block_groups(spec, _efficientnet_v2_block))


@register_drawing(search_spaces.AnyNetSpec)
@register_drawing(search_spaces.RegNetSpec)
def _draw_anynet(spec: Any) -> str:
  """A RegNet as the stages it builds, like an AnyNet."""
  kind = f'{spec.block_type}-block'
  groups = [STEM]
  for stage in spec.stage_specs():
    groups.append(BlockGroup(kind, [
        f'{spec.block_type.upper()} ×{stage.depth}',
        f'b{stage.bottleneck_ratio} · g{stage.group_width}',
        f'{stage.width} ch', 'stride 2'], stage.width, 2))
  return _block_groups_html(groups)


@register_drawing(search_spaces.SpineNetSpec)
def _draw_spinenet(spec: search_spaces.SpineNetSpec) -> str:
  return _graph_html(_spinenet_nodes(spec))


@register_drawing(search_spaces.NasFpnSpec)
def _draw_nasfpn(spec: search_spaces.NasFpnSpec) -> str:
  return _graph_html(_nasfpn_nodes(spec, search_spaces.NASFPN_LEVELS))


@register_drawing(search_spaces.UNetNasFpnSpec)
def _draw_unet_nasfpn(spec: search_spaces.UNetNasFpnSpec) -> str:
  return _graph_html(_nasfpn_nodes(spec, search_spaces.UNET_LEVELS))


@register_drawing(search_spaces.TunableUNetEncoderSpec)
def _draw_unet_encoder(spec: search_spaces.TunableUNetEncoderSpec) -> str:
  """One box per encoder level (3D blocks; each level after the first
  starts with a 2x max pooling)."""
  groups = []
  for level, b in enumerate(spec.blocks, start=1):
    kind = b.block_type.split('_')[0]
    details = (f'k{b.kernel_size}³{_squeeze(b)}'
               f'{" · id skip" if b.id_skip else ""}')
    groups.append(BlockGroup(kind, [
        f'{kind} ×{b.num_repeats}', details, f'{b.num_filters} ch',
        'pool 2' if level > 1 else 'level 1'], b.num_filters,
        2 if level > 1 else 1))
  return _block_groups_html(groups)


@register_drawing(search_spaces.PointPillarsSpec)
def _draw_pointpillars(spec: search_spaces.PointPillarsSpec) -> str:
  """The pillar feature net, the backbone's block groups (a group at a
  higher level than the one before strides 2) and one decoder group per
  level."""
  groups = [BlockGroup('stem', [
      'pillar net', f'×{f.block_repeats} {f.activation_fn}',
      f'{f.output_filters} ch', 'BEV grid'], f.output_filters, 1)
            for f in spec.featurizer_blocks]

  def group(b: Any, strides: int, role: str) -> BlockGroup:
    expansion = ('' if b.block_fn == 'conv'
                 else f' · e{b.expand_ratio}{_squeeze(b)}')
    return BlockGroup(b.block_fn, [
        f'{b.block_fn} ×{b.block_repeats}', f'k{b.kernel_size}{expansion}',
        f'{b.output_filters} ch', f'L{b.level} · {role}'],
        b.output_filters, strides)

  level = 1
  for b in spec.backbone_blocks:
    strides = 2 if b.level > level else 1
    level = b.level
    groups.append(group(b, strides, f'stride {strides}'))
  groups.extend(group(b, 1, 'decoder') for b in spec.decoder_blocks)
  return _block_groups_html(groups)


def _state_name(state: int) -> str:
  """A NASNet cell's hidden state as the cell table names it."""
  if state < search_spaces.NASNET_NUM_CELL_INPUTS:
    return f'{state}: {("previous cell", "cell before")[state]}'
  return f'{state}: block {state - search_spaces.NASNET_NUM_CELL_INPUTS}'


@register_drawing(search_spaces.NasNetSpec)
def _draw_nasnet(spec: search_spaces.NasNetSpec) -> str:
  """Each cell as a table: per block its two inputs, their operations and
  how they are joined, then the states the cell concatenates."""
  parts = []
  for name, cell in (('normal', spec.normal_cell),
                     ('reduction', spec.reduction_cell)):
    rows = ''.join(
        f'<tr class="block"><td>{b}</td><td>{esc(_state_name(block.left_input))}'
        f'</td><td>{esc(block.left_op)}</td><td>'
        f'{esc(_state_name(block.right_input))}</td><td>{esc(block.right_op)}'
        f'</td><td>{esc(block.combination)}</td></tr>'
        for b, block in enumerate(cell.blocks))
    outputs = ', '.join(_state_name(s) for s in cell.concatenated_states())
    parts.append(
        f'<table class="cell"><caption>{name} cell (hidden state '
        f'{search_spaces.NASNET_NUM_CELL_INPUTS + len(cell.blocks) - 1} is the '
        'last block)</caption><tr><th>block</th><th>input</th><th>op</th>'
        f'<th>input</th><th>op</th><th>joined by</th></tr>{rows}'
        f'<tr class="output"><td colspan="6">output: concatenation of '
        f'{esc(outputs)}</td></tr></table>')
  return ''.join(parts) + ('<p class="note">Ops on a reduction cell\'s two '
                           'inputs stride 2.</p>')
