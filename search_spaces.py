"""Prebuilt NAS search spaces: Vertex AI NAS's, decision for decision, and
the seed papers' spaces (NASNet's cells; RegNet's AnyNetX, RegNetX and
RegNetY).

Pure PyGlove: importing this module never imports TensorFlow, so a controller,
a notebook or a CI job can enumerate, sample and validate architectures cheaply.
Each Vertex space is a symbolic value whose decision points (paths, candidates
and literal values) equal the Vertex platform's, so a `nas_params_str` written
for that platform materialises here unchanged.

User spaces: `get_search_space("package.module:function")` calls `function()`
and uses the symbolic value it returns.
"""

import importlib
import json
import math
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pyglove as pg


class SearchSpaceError(ValueError):
  """A search space name, definition or parameter string is unusable."""


_REGISTRY: Dict[str, Callable[[], Any]] = {}
_KINDS: Dict[str, str] = {}
_VERTEX: set = set()  # The platform's prebuilt spaces (the others: papers').

# What a space's architecture describes, so a trainer knows where it plugs in.
SEARCH_SPACE_KIND_NAMES = ('backbone', 'decoder', 'scaling', 'augmentation')


def register_search_space(name: str, kind: str, vertex: bool = True):
  """Decorator: registers a zero-argument factory of a symbolic space;
  `vertex`: one of Vertex AI NAS's prebuilt spaces, decision for decision."""
  if kind not in SEARCH_SPACE_KIND_NAMES:
    raise SearchSpaceError(
        f'kind {kind!r} of {name!r} is not one of {SEARCH_SPACE_KIND_NAMES}')

  def decorator(factory):
    _REGISTRY[name] = factory
    _KINDS[name] = kind
    if vertex:
      _VERTEX.add(name)
    return factory

  return decorator


def search_space_kind(name: str) -> str:
  """'backbone', 'decoder', 'scaling' or 'augmentation' for a registered name."""
  if name not in _KINDS:
    raise SearchSpaceError(
        f'no kind known for search space {name!r}; registered: '
        f'{", ".join(list_search_spaces())}')
  return _KINDS[name]


def augmentation_task(name: str) -> Optional[str]:
  """'detection' or 'segmentation' for a registered augmentation space (its
  op table), None for any other space."""
  if _KINDS.get(name) != 'augmentation':
    return None
  return name.rsplit('_', 1)[1]


def list_search_spaces() -> List[str]:
  """Names of the registered spaces, sorted."""
  return sorted(_REGISTRY)


def vertex_search_spaces() -> List[str]:
  """Names of the registered Vertex AI NAS spaces, sorted."""
  return sorted(_VERTEX)


def get_search_space(name: str) -> Any:
  """Returns a fresh symbolic search space for a registered name or `module:fn`."""
  if name in _REGISTRY:
    return _REGISTRY[name]()
  if ':' in name:
    module_name, _, fn_name = name.partition(':')
    try:
      module = importlib.import_module(module_name)
    except ImportError as e:
      raise SearchSpaceError(
          f'cannot import search space module {module_name!r}: {e}') from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
      raise SearchSpaceError(
          f'{module_name!r} has no callable {fn_name!r} to build a search space')
    space = fn()
    if not isinstance(space, pg.Symbolic) or pg.is_deterministic(space):
      raise SearchSpaceError(
          f'{name!r} must return a PyGlove symbolic value with at least one '
          'decision point (pg.oneof, pg.manyof, ...)')
    return space
  raise SearchSpaceError(
      f'unknown search space {name!r}; valid: {", ".join(list_search_spaces())} '
      'or package.module:function')


def dna_spec(space: Any) -> pg.DNASpec:
  """The DNA spec (decision points) of a symbolic search space.

  A DNASpec is returned as is: computing one takes up to a second for the
  larger spaces, so callers that parse many strings pass it in place of the
  space.
  """
  if isinstance(space, pg.DNASpec):
    return space
  return pg.dna_spec(space)


# A Vertex decision value: "index/count (literal)", e.g. "1/3 (16)".
_NAS_PARAM_VALUE = re.compile(r'(\d+)/(\d+) \((.*)\)', re.DOTALL)


def dna_from_nas_params(space: Any, nas_params_str: str) -> pg.DNA:
  """Parses a Vertex `nas_params_str` (JSON: path -> "index/count (literal)").

  `space` is the symbolic search space or its `dna_spec`.

  Raises SearchSpaceError naming the first problem: malformed JSON, a path the
  space does not have, a missing decision, or a value that is malformed, out of
  range or names another literal than this space's candidate.
  """
  try:
    params = json.loads(nas_params_str)
  except json.JSONDecodeError as e:
    raise SearchSpaceError(f'nas_params_str is not valid JSON: {e}') from e
  if not isinstance(params, dict) or not params:
    raise SearchSpaceError('nas_params_str must be a non-empty JSON object')
  spec = dna_spec(space)
  decision_points = {str(dp.id): dp for dp in spec.decision_points}
  unknown = sorted(set(params) - set(decision_points))
  if unknown:
    raise SearchSpaceError(
        f'nas_params_str names decision point(s) not in this search space: '
        f'{", ".join(unknown[:3])}{" ..." if len(unknown) > 3 else ""}')
  missing = [p for p in sorted(decision_points) if p not in params]
  if missing:
    raise SearchSpaceError(
        f'nas_params_str lacks decision point(s): {", ".join(missing[:3])}'
        f'{" ..." if len(missing) > 3 else ""}')
  for path, value in params.items():
    _check_nas_param(path, value, decision_points[path])
  try:
    return pg.DNA.from_dict(params, spec)
  except (ValueError, KeyError, TypeError, IndexError) as e:
    # E.g. "Child values [3, 2] are not sorted.", minus PyGlove's spec dump.
    reason = str(e).split(' Spec: ')[0].splitlines()[0]
    raise SearchSpaceError(
        f'nas_params_str does not fit this search space: {reason}') from e


def _check_nas_param(path: str, value: Any, decision_point: Any) -> None:
  """Raises SearchSpaceError unless `value` is a valid choice at `path`."""
  match = isinstance(value, str) and _NAS_PARAM_VALUE.fullmatch(value)
  if not match:
    raise SearchSpaceError(
        f'nas_params_str value {value!r} of {path!r} is not '
        '"index/count (literal)"')
  index, count, literal = int(match[1]), int(match[2]), match[3]
  num_candidates = len(decision_point.candidates)
  if count != num_candidates:
    raise SearchSpaceError(
        f'nas_params_str gives {path!r} {count} candidates; this search space '
        f'has {num_candidates}')
  if index >= count:
    raise SearchSpaceError(
        f'nas_params_str index {index} of {path!r} is out of range '
        f'(0..{count - 1})')
  expected = str(decision_point.literal_values[index])
  if literal != expected:
    raise SearchSpaceError(
        f'nas_params_str names literal {literal} for {path!r} candidate '
        f'{index}; this search space has {expected}')


def nas_params_from_dna(dna: pg.DNA) -> str:
  """The Vertex `nas_params_str` for a DNA whose spec is attached."""
  return json.dumps(dna.to_dict(key_type='id', value_type='choice_and_literal'))


def materialize(space: Any, dna: pg.DNA) -> Any:
  """The concrete architecture (or policy) a DNA selects."""
  return pg.materialize(space, dna)


def architecture_key(space: Any, dna: pg.DNA) -> str:
  """Equal for two DNAs that build the same network: the materialised spec,
  through its `canonical()` where a spec class has decisions that are inert
  in some architectures, so a search does not train one network twice."""
  spec = materialize(space, dna)
  if callable(getattr(type(spec), 'canonical', None)):
    spec = spec.canonical()
  return pg.format(spec, compact=True)


# ---------------------------------------------------------------------------
# MnasNet (classification and detection backbone)
# ---------------------------------------------------------------------------

MNASNET_REPEATS = (1, 2, 3, 4, 3, 3, 1)
MNASNET_FILTERS = (16, 24, 32, 64, 96, 160, 320)
MNASNET_STRIDES = (1, 2, 2, 2, 1, 2, 1)


class MnasBlockSpec(pg.Object):
  """One MnasNet block group: `num_repeats` blocks, the first with `strides`."""

  num_repeats: int
  block_fn: str
  expand_ratio: int
  kernel_size: int
  se_ratio: float
  output_filters: int
  strides: int = 1


class MnasNetSpec(pg.Object):
  """A MnasNet architecture: a 32-filter stride-2 stem then these blocks."""

  blocks: list[MnasBlockSpec]

  def summary(self) -> str:
    """Per block group e.g. `m5x3e6se/40`: function, kernel, repeats, ...

    A conv block has no expansion or squeeze-excite: those decisions are inert
    there (as on the Vertex platform), so they are not shown.
    """
    return ' '.join(
        f'{b.block_fn[0]}{b.kernel_size}x{b.num_repeats}'
        f'{"e" + str(b.expand_ratio) if b.block_fn == "mbconv" else ""}'
        f'{"se" if b.se_ratio and b.block_fn == "mbconv" else ""}'
        f'/{b.output_filters}' for b in self.blocks)

  def canonical(self) -> 'MnasNetSpec':
    """This network with each conv block's inert decisions at their first
    candidates (expansion 1, no squeeze-excite)."""
    return MnasNetSpec(blocks=[
        b if b.block_fn == 'mbconv' else
        b.clone(override={'expand_ratio': 1, 'se_ratio': 0.0})
        for b in self.blocks])


def repeats_candidates(r: int) -> List[int]:
  """Vertex's repeat choices: [r, r-1, r+1], or [1, 2] when r is 1."""
  return [1, 2] if r == 1 else [r, r - 1, r + 1]


def filters_candidates(f: int) -> List[int]:
  """Vertex's width choices: 0.75x, 1x and 1.25x of the base filters."""
  return [int(f * 0.75), f, int(f * 1.25)]


@register_search_space('mnasnet', kind='backbone')
def mnasnet_search_space() -> MnasNetSpec:
  """The MnasNet space: 7 MobileNetV2-based block groups, 6 decisions each."""
  return MnasNetSpec(blocks=[
      MnasBlockSpec(
          num_repeats=pg.oneof(repeats_candidates(r)),
          block_fn=pg.oneof(['conv', 'mbconv']),
          expand_ratio=pg.oneof([1, 3, 6]),
          kernel_size=pg.oneof([3, 5]),
          se_ratio=pg.oneof([0.0, 0.25]),
          output_filters=pg.oneof(filters_candidates(f)),
          strides=s,
      ) for r, f, s in zip(MNASNET_REPEATS, MNASNET_FILTERS, MNASNET_STRIDES)
  ])


# ---------------------------------------------------------------------------
# EfficientNetV2 (classification backbone)
# ---------------------------------------------------------------------------

EFFICIENTNET_V2_REPEATS = (1, 2, 2, 3, 5, 8)
EFFICIENTNET_V2_FILTERS = (16, 32, 48, 96, 112, 192)
EFFICIENTNET_V2_STRIDES = (1, 2, 2, 2, 1, 2)


class EfficientNetV2BlockSpec(pg.Object):
  """One EfficientNetV2 block group: `num_repeats` blocks, the first strided."""

  num_repeats: int
  block_type: str
  expand_ratio: int
  kernel_size: int
  se_ratio: float
  output_filters: int
  act_fn: str
  strides: int = 1


class EfficientNetV2Spec(pg.Object):
  """An EfficientNetV2 architecture: a stride-2 stem then these blocks."""

  blocks: list[EfficientNetV2BlockSpec]

  def summary(self) -> str:
    """Per block group e.g. `f3x2e4se-relu/32` (`f` fused, `m` MBConv)."""
    return ' '.join(
        f'{"f" if b.block_type == "fused_mbconv" else "m"}{b.kernel_size}'
        f'x{b.num_repeats}e{b.expand_ratio}{"se" if b.se_ratio else ""}'
        f'{"" if b.act_fn == "swish" else "-relu"}/{b.output_filters}'
        for b in self.blocks)


@register_search_space('efficientnet_v2', kind='backbone')
def efficientnet_v2_search_space() -> EfficientNetV2Spec:
  """The EfficientNetV2 space: 6 (fused) MBConv block groups, 7 decisions each."""
  return EfficientNetV2Spec(blocks=[
      EfficientNetV2BlockSpec(
          num_repeats=pg.oneof(repeats_candidates(r)),
          block_type=pg.oneof(['mbconv', 'fused_mbconv']),
          expand_ratio=pg.oneof([1, 2, 4, 6]),
          kernel_size=pg.oneof([3, 5]),
          se_ratio=pg.oneof([0.0, 0.25]),
          output_filters=pg.oneof(filters_candidates(f)),
          act_fn=pg.oneof(['swish', 'relu']),
          strides=s,
      ) for r, f, s in zip(EFFICIENTNET_V2_REPEATS, EFFICIENTNET_V2_FILTERS,
                           EFFICIENTNET_V2_STRIDES)
  ])


# ---------------------------------------------------------------------------
# NAS-FPN (detection decoder)
# ---------------------------------------------------------------------------

NASFPN_MIN_LEVEL = 3
NASFPN_MAX_LEVEL = 7
NASFPN_NUM_INTERMEDIATE_BLOCKS = 2
NASFPN_LEVELS = tuple(range(NASFPN_MIN_LEVEL, NASFPN_MAX_LEVEL + 1))


def _two_distinct_sorted(candidates: Sequence[int]) -> Any:
  """A choice of two different earlier features, in increasing order."""
  return pg.sublist_of(
      2, list(candidates), choices_distinct=True, choices_sorted=True)


def _permutation(candidates: Sequence[int]) -> Any:
  """A choice of an order of all `candidates` (repeated values allowed)."""
  return pg.sublist_of(
      len(candidates), list(candidates), choices_distinct=True,
      choices_sorted=False)


class NasFpnBlockSpec(pg.Object):
  """One NAS-FPN merge cell: resamples two earlier features to one level.

  `input_offsets` index the features built so far: the backbone's levels
  NASFPN_MIN_LEVEL..NASFPN_MAX_LEVEL first, then the blocks in build order.
  `level` is None for output blocks, whose level is in `output_block_levels`.
  """

  level: Optional[int]
  combine_fn: str
  input_offsets: list[int]


class MergeCellSpec(pg.Object):
  """A NAS-FPN-style cell: intermediate blocks, then one output block per
  level; offsets index the input levels first, then the blocks in build
  order. Subclasses name the levels in summaries (`LEVEL_PREFIX`)."""

  LEVEL_PREFIX = 'P'

  intermediate_blocks: list[NasFpnBlockSpec]
  output_blocks: list[NasFpnBlockSpec]
  output_block_levels: list[int]

  def block_sequence(self) -> List[Tuple[int, NasFpnBlockSpec]]:
    """(level, block) in build order; offset `<input levels> + k` is k-th."""
    return ([(b.level, b) for b in self.intermediate_blocks] +
            list(zip(self.output_block_levels, self.output_blocks)))

  def summary(self) -> str:
    """Per block e.g. `P4+1,3`: level, `+` sum or `@` attention, inputs."""
    return ' '.join(
        f'{self.LEVEL_PREFIX}{level}{"+" if b.combine_fn == "sum" else "@"}'
        f'{b.input_offsets[0]},{b.input_offsets[1]}'
        for level, b in self.block_sequence())


class NasFpnSpec(MergeCellSpec):
  """A NAS-FPN cell over the backbone's levels NASFPN_MIN_LEVEL..MAX_LEVEL."""


@register_search_space('nasfpn', kind='decoder')
def nasfpn_search_space() -> NasFpnSpec:
  """The NAS-FPN space: 2 free merge cells, then 5 cells that emit P3-P7."""
  num_inputs = len(NASFPN_LEVELS)
  num_outputs = len(NASFPN_LEVELS)
  return NasFpnSpec(
      intermediate_blocks=[
          NasFpnBlockSpec(
              level=pg.oneof(list(NASFPN_LEVELS[1:])),
              combine_fn=pg.oneof(['sum', 'attention']),
              input_offsets=_two_distinct_sorted(range(num_inputs + i)))
          for i in range(NASFPN_NUM_INTERMEDIATE_BLOCKS)
      ],
      output_blocks=[
          NasFpnBlockSpec(
              level=None,
              combine_fn=pg.oneof(['sum', 'attention']),
              input_offsets=_two_distinct_sorted(
                  range(num_inputs + NASFPN_NUM_INTERMEDIATE_BLOCKS + j)))
          for j in range(num_outputs)
      ],
      output_block_levels=_permutation(NASFPN_LEVELS))


# ---------------------------------------------------------------------------
# SpineNet family (scale-permuted detection backbones)
# ---------------------------------------------------------------------------

SPINENET_MIN_LEVEL = 3
SPINENET_MAX_LEVEL = 7
SPINENET_INIT_BLOCK_LEVEL = 2
SPINENET_INIT_BLOCK_FN = 'bottleneck'
SPINENET_NUM_INIT_BLOCKS = 2
# An intermediate block reads from at most this many immediately previous blocks.
SPINENET_SEARCH_WINDOW = 4


class SpineNetBlockSpec(pg.Object):
  """One SpineNet block: fuses two earlier blocks' features at one level.

  `input_offsets` index all blocks built so far, init blocks first (empty for
  the init blocks, which read the stem). The block's level is its base level
  from `SpineNetSpec` plus `level_offset`.
  """

  level_offset: int
  block_fn: str
  input_offsets: list[int]


class SpineNetSpec(pg.Object):
  """A SpineNet: init blocks, permuted intermediate blocks, then outputs.

  `intermediate_block_levels` orders `level_allocation` (the fixed multiset of
  base levels); `output_block_levels` orders min_level..max_level.
  """

  intermediate_blocks: list[SpineNetBlockSpec]
  intermediate_block_levels: list[int]
  output_blocks: list[SpineNetBlockSpec]
  output_block_levels: list[int]
  init_blocks: list[SpineNetBlockSpec]
  init_block_level: int
  level_allocation: list[int]
  min_level: int
  max_level: int

  def block_sequence(self) -> List[Tuple[int, SpineNetBlockSpec]]:
    """(level, block) of every block in build order, as `input_offsets` index."""
    return ([(self.init_block_level + b.level_offset, b)
             for b in self.init_blocks] +
            [(base + b.level_offset, b) for base, b in zip(
                self.intermediate_block_levels, self.intermediate_blocks)] +
            [(base + b.level_offset, b) for base, b in zip(
                self.output_block_levels, self.output_blocks)])

  def summary(self) -> str:
    """Per block after the init blocks e.g. `L4b0,1`: level, function, inputs."""
    blocks = self.block_sequence()[len(self.init_blocks):]
    return ' '.join(
        f'L{level}{b.block_fn[0]}{b.input_offsets[0]},{b.input_offsets[1]}'
        for level, b in blocks)


def spinenet_search_space(level_allocation: Dict[int, int],
                          level_offsets: Sequence[int],
                          block_fns: Sequence[str]) -> SpineNetSpec:
  """A SpineNet space over the blocks `level_allocation` ({level: count}) gives.

  Decisions, in Vertex's order: per intermediate block its level offset, block
  function and two inputs within the search window; the permutation of the
  intermediate base levels; per output block its function and two inputs from
  any earlier block; the permutation of the output levels.
  """
  allocation = [level for level, count in sorted(level_allocation.items())
                for _ in range(count)]
  output_levels = list(range(SPINENET_MIN_LEVEL, SPINENET_MAX_LEVEL + 1))
  num_before_outputs = SPINENET_NUM_INIT_BLOCKS + len(allocation)
  intermediate_blocks = []
  for i in range(len(allocation)):
    num_previous = SPINENET_NUM_INIT_BLOCKS + i
    intermediate_blocks.append(SpineNetBlockSpec(
        level_offset=pg.oneof(list(level_offsets)),
        block_fn=pg.oneof(list(block_fns)),
        input_offsets=_two_distinct_sorted(range(
            max(0, num_previous - SPINENET_SEARCH_WINDOW), num_previous))))
  return SpineNetSpec(
      intermediate_blocks=intermediate_blocks,
      intermediate_block_levels=_permutation(allocation),
      output_blocks=[
          SpineNetBlockSpec(
              level_offset=0,
              block_fn=pg.oneof(list(block_fns)),
              input_offsets=_two_distinct_sorted(range(num_before_outputs + j)))
          for j in range(len(output_levels))
      ],
      output_block_levels=_permutation(output_levels),
      init_blocks=[
          SpineNetBlockSpec(level_offset=0, block_fn=SPINENET_INIT_BLOCK_FN,
                            input_offsets=[])
          for _ in range(SPINENET_NUM_INIT_BLOCKS)
      ],
      init_block_level=SPINENET_INIT_BLOCK_LEVEL,
      level_allocation=allocation,
      min_level=SPINENET_MIN_LEVEL,
      max_level=SPINENET_MAX_LEVEL)


@register_search_space('spinenet', kind='backbone')
def spinenet_default_search_space() -> SpineNetSpec:
  """SpineNet with residual or bottleneck blocks, 11 intermediate blocks."""
  return spinenet_search_space({2: 1, 3: 3, 4: 5, 5: 2}, [-1, 0, 1, 2],
                               ['residual', 'bottleneck'])


@register_search_space('spinenet_v2', kind='backbone')
def spinenet_v2_search_space() -> SpineNetSpec:
  """SpineNet-v2: bottleneck blocks only, 10 intermediate blocks."""
  return spinenet_search_space({2: 1, 3: 3, 4: 5, 5: 1}, [-1, 0, 1],
                               ['bottleneck'])


@register_search_space('spinenet_mbconv', kind='backbone')
def spinenet_mbconv_search_space() -> SpineNetSpec:
  """Mobile SpineNet: MBConv blocks, 11 intermediate blocks."""
  return spinenet_search_space({2: 1, 3: 1, 4: 5, 5: 4}, [-1, 0, 1, 2],
                               ['mbconv'])


class SpineNetScalingSpec(pg.Object):
  """Compound scaling of a found SpineNet and its detection head."""

  image_size: int
  endpoints_num_filters: int
  filter_size_scale: float
  resample_alpha: float
  block_repeats: int
  head_num_convs: int
  head_num_filters: int

  def summary(self) -> str:
    return (f'{self.image_size}px filters={self.endpoints_num_filters} '
            f'scale={self.filter_size_scale} alpha={self.resample_alpha} '
            f'repeats={self.block_repeats} head={self.head_num_convs}'
            f'x{self.head_num_filters}')


@register_search_space('spinenet_scaling', kind='scaling')
def spinenet_scaling_search_space() -> SpineNetScalingSpec:
  """The scaling space: input size, widths, depth and head size."""
  return SpineNetScalingSpec(
      image_size=pg.oneof([512, 640]),
      endpoints_num_filters=pg.oneof([192, 256]),
      filter_size_scale=pg.oneof([0.8, 1.0, 1.2]),
      resample_alpha=pg.oneof([0.75, 1.0, 1.25]),
      block_repeats=pg.oneof([2, 3, 4]),
      head_num_convs=pg.oneof([4, 5]),
      head_num_filters=pg.oneof([192, 256]))


# ---------------------------------------------------------------------------
# RegNet design spaces (Radosavovic et al. 2020, "Designing Network Design
# Spaces"): AnyNetX, and RegNetX/RegNetY from the quantised linear rule
# ---------------------------------------------------------------------------

REGNET_NUM_STAGES = 4  # each stage halves the resolution (levels 2..5)
REGNET_QUANTUM = 8  # stage widths are multiples of 8
REGNET_SE_RATIO = 0.25  # of a Y block's input width
REGNET_BLOCK_TYPES = ('x', 'y')  # y: x with squeeze-excite


class AnyNetStageSpec(pg.Object):
  """One stage: `depth` blocks of output `width`, the first stride 2; each
  block's 3x3 conv is grouped over width / bottleneck_ratio channels in
  groups of `group_width`."""

  depth: int
  width: int
  bottleneck_ratio: int
  group_width: int

  def compatible(self) -> 'AnyNetStageSpec':
    """This stage with its group width at most its bottleneck width and the
    bottleneck width a multiple of it (the paper's adjustment)."""
    inner = max(1, self.width // self.bottleneck_ratio)
    group_width = min(self.group_width, inner)
    inner = max(group_width, round(inner / group_width) * group_width)
    return AnyNetStageSpec(depth=self.depth,
                           width=inner * self.bottleneck_ratio,
                           bottleneck_ratio=self.bottleneck_ratio,
                           group_width=group_width)


class AnyNetSpec(pg.Object):
  """An AnyNet: a 32-filter stride-2 stem, then these stages."""

  stages: list[AnyNetStageSpec]
  block_type: str = 'x'

  def stage_specs(self) -> List[AnyNetStageSpec]:
    """The stages as built: made group-compatible."""
    return [stage.compatible() for stage in self.stages]

  def summary(self) -> str:
    """Per stage e.g. `d4w152b1g8`; `Y` in front of a squeeze-excite net."""
    return ('Y ' if self.block_type == 'y' else '') + ' '.join(
        f'd{s.depth}w{s.width}b{s.bottleneck_ratio}g{s.group_width}'
        for s in self.stage_specs())

  def canonical(self) -> 'AnyNetSpec':
    return AnyNetSpec(stages=self.stage_specs(), block_type=self.block_type)


class RegNetSpec(pg.Object):
  """A RegNet: `depth` blocks whose widths follow w0 + wa * j, quantised to
  powers of wm times w0 and to multiples of 8; equal widths form a stage.
  The bottleneck ratio and group width are shared by every stage."""

  depth: int
  w0: int
  wa: float
  wm: float
  group_width: int
  bottleneck_ratio: int = 1
  block_type: str = 'x'

  def stage_specs(self) -> List[AnyNetStageSpec]:
    """The stages the quantised linear rule gives (made group-compatible)."""
    widths: List[int] = []
    for j in range(self.depth):
      power = round(math.log((self.w0 + self.wa * j) / self.w0) /
                    math.log(self.wm))
      width = self.w0 * self.wm ** power
      widths.append(int(round(width / REGNET_QUANTUM) * REGNET_QUANTUM))
    stages: List[AnyNetStageSpec] = []
    for width in widths:
      if stages and stages[-1].width == width:
        stages[-1] = stages[-1].clone(override={'depth': stages[-1].depth + 1})
      else:
        stages.append(AnyNetStageSpec(
            depth=1, width=width, bottleneck_ratio=self.bottleneck_ratio,
            group_width=self.group_width))
    return [stage.compatible() for stage in stages]

  def summary(self) -> str:
    return (f'd={self.depth} w0={self.w0} wa={self.wa} wm={self.wm} '
            f'g={self.group_width}: {self.canonical().summary()}')

  def canonical(self) -> AnyNetSpec:
    """The AnyNet it builds: many (d, w0, wa, wm) give the same network."""
    return AnyNetSpec(stages=self.stage_specs(), block_type=self.block_type)


def _grid(start: float, stop: float, step: float) -> List[float]:
  """start, start + step, ... up to stop inclusive, rounded to 2 decimals."""
  count = int(round((stop - start) / step)) + 1
  return [round(start + i * step, 2) for i in range(count)]


# The RegNet spaces' candidates of the quantised linear rule's parameters.
REGNET_DEPTHS = tuple(range(6, 41))
REGNET_W0S = tuple(range(16, 257, 8))
REGNET_WAS = tuple(float(w) for w in range(8, 257, 8))
REGNET_WMS = tuple(_grid(1.5, 3.0, 0.05))


@register_search_space('anynet_x', kind='backbone', vertex=False)
def anynet_x_search_space() -> AnyNetSpec:
  """AnyNetX: per stage a free depth (1-16), width (8-1024, multiples of 8),
  bottleneck ratio (1, 2, 4) and group width (1-32, powers of 2)."""
  return AnyNetSpec(stages=[
      AnyNetStageSpec(depth=pg.oneof(list(range(1, 17))),
                      width=pg.oneof(list(range(8, 1025, 8))),
                      bottleneck_ratio=pg.oneof([1, 2, 4]),
                      group_width=pg.oneof([1, 2, 4, 8, 16, 32]))
      for _ in range(REGNET_NUM_STAGES)])


def regnet_search_space(block_type: str) -> RegNetSpec:
  """The RegNet space of one block type: depth 6-40, w0 16-256 and wa 8-256
  (steps of 8), wm 1.5-3.0 (steps of 0.05), group width 1-32; bottleneck
  ratio 1, as the paper's best models have."""
  return RegNetSpec(
      depth=pg.oneof(list(REGNET_DEPTHS)),
      w0=pg.oneof(list(REGNET_W0S)),
      wa=pg.oneof(list(REGNET_WAS)),
      wm=pg.oneof(list(REGNET_WMS)),
      group_width=pg.oneof([1, 2, 4, 8, 16, 32]),
      block_type=block_type)


@register_search_space('regnet_x', kind='backbone', vertex=False)
def regnet_x_search_space() -> RegNetSpec:
  return regnet_search_space('x')


@register_search_space('regnet_y', kind='backbone', vertex=False)
def regnet_y_search_space() -> RegNetSpec:
  return regnet_search_space('y')


# ---------------------------------------------------------------------------
# NASNet cells (Zoph et al. 2018, "Learning Transferable Architectures for
# Scalable Image Recognition"): a normal and a reduction cell of B=5 blocks
# ---------------------------------------------------------------------------

NASNET_NUM_BLOCKS = 5
# The paper's operations (its Section 3 list).
NASNET_OPS = ('identity', 'conv_1x3_3x1', 'conv_1x7_7x1', 'dilated_conv_3x3',
              'avg_pool_3x3', 'max_pool_3x3', 'max_pool_5x5', 'max_pool_7x7',
              'conv_1x1', 'conv_3x3', 'sep_conv_3x3', 'sep_conv_5x5',
              'sep_conv_7x7')
# How a block joins its two operations' outputs: the paper's add, or the
# concatenation of its ablation.
NASNET_COMBINATIONS = ('add', 'concat')
# Hidden states a cell's blocks pick from: 0 is the previous cell's output,
# 1 the one before it (as the authors' released cells number them), 2 + b
# the output of block b.
NASNET_NUM_CELL_INPUTS = 2


class NasNetBlockSpec(pg.Object):
  """One block: an operation on each of two earlier hidden states, joined."""

  left_input: int
  left_op: str
  right_input: int
  right_op: str
  combination: str = 'add'


class NasNetCellSpec(pg.Object):
  """A cell: its blocks in order, and the hidden states its output
  concatenates (None: every state no block takes as input, the paper's
  rule)."""

  blocks: list[NasNetBlockSpec]
  output_states: Optional[list[int]] = None

  def _on_bound(self):
    super()._on_bound()
    for b, block in enumerate(self.blocks):
      # A space's blocks hold hyper values; only chosen values are checked.
      for state in (block.left_input, block.right_input):
        if isinstance(state, int) and not (
            0 <= state < NASNET_NUM_CELL_INPUTS + b):
          raise ValueError(f'block {b} of a NASNet cell takes hidden state '
                           f'{state}; it can take 0 to '
                           f'{NASNET_NUM_CELL_INPUTS + b - 1}')
      for op in (block.left_op, block.right_op):
        if isinstance(op, str) and op not in NASNET_OPS:
          raise ValueError(f'unknown NASNet operation {op!r}; valid: '
                           f'{", ".join(NASNET_OPS)}')

  def concatenated_states(self) -> List[int]:
    """The hidden states the cell's output concatenates."""
    if self.output_states is not None:
      return list(self.output_states)
    taken = {s for b in self.blocks for s in (b.left_input, b.right_input)}
    return [s for s in range(NASNET_NUM_CELL_INPUTS + len(self.blocks))
            if s not in taken]

  def summary(self) -> str:
    """Per block e.g. `0:sep_conv_5x5+1:sep_conv_3x3`; `|` joins a concat."""
    return ' '.join(
        f'{b.left_input}:{b.left_op}{"+" if b.combination == "add" else "|"}'
        f'{b.right_input}:{b.right_op}' for b in self.blocks)


class NasNetSpec(pg.Object):
  """A NASNet: its normal and reduction cell."""

  normal_cell: NasNetCellSpec
  reduction_cell: NasNetCellSpec

  def summary(self) -> str:
    return (f'normal [{self.normal_cell.summary()}] '
            f'reduction [{self.reduction_cell.summary()}]')


def nasnet_cell_search_space() -> NasNetCellSpec:
  """A cell of the NASNet space: for each block two inputs among the earlier
  hidden states, an operation for each, and the combination."""
  return NasNetCellSpec(blocks=[
      NasNetBlockSpec(
          left_input=pg.oneof(list(range(NASNET_NUM_CELL_INPUTS + b))),
          left_op=pg.oneof(list(NASNET_OPS)),
          right_input=pg.oneof(list(range(NASNET_NUM_CELL_INPUTS + b))),
          right_op=pg.oneof(list(NASNET_OPS)),
          combination=pg.oneof(list(NASNET_COMBINATIONS)))
      for b in range(NASNET_NUM_BLOCKS)])


@register_search_space('nasnet', kind='backbone', vertex=False)
def nasnet_search_space() -> NasNetSpec:
  """The NASNet search space: a normal and a reduction cell searched
  independently (50 decisions)."""
  return NasNetSpec(normal_cell=nasnet_cell_search_space(),
                    reduction_cell=nasnet_cell_search_space())


# ---------------------------------------------------------------------------
# PointPillars (lidar 3D detection): the searched featurizer, 3-level
# backbone and decoder of the platform's twelfth prebuilt space
# ---------------------------------------------------------------------------

POINTPILLARS_FEATURIZER_FILTERS = 64
# Backbone blocks as (level, base filters): level 1 keeps the bird's-eye-view
# grid, each next level halves it in its first block.
POINTPILLARS_BACKBONE_BLOCKS = ((1, 64), (2, 128), (2, 128), (3, 256),
                                (3, 256))
POINTPILLARS_DECODER_FILTERS = 128  # Fixed: one decoder block per level.
POINTPILLARS_LEVELS = (1, 2, 3)


class PointPillarsFeaturizerSpec(pg.Object):
  """The pillar feature net: `block_repeats` point-wise layers."""

  block_repeats: int
  activation_fn: str
  output_filters: int


class PointPillarsBlockSpec(pg.Object):
  """A block group of the backbone (at `level`) or decoder (output_filters
  fixed): `block_repeats` blocks of `block_fn`."""

  block_fn: str
  block_repeats: int
  kernel_size: int
  expand_ratio: int
  se_ratio: float
  activation_fn: str
  output_filters: int = POINTPILLARS_DECODER_FILTERS
  level: int = 1


class PointPillarsSpec(pg.Object):
  """A PointPillars detector's featurizer, backbone and decoder."""

  featurizer_blocks: list[PointPillarsFeaturizerSpec]
  backbone_blocks: list[PointPillarsBlockSpec]
  decoder_blocks: list[PointPillarsBlockSpec]

  def summary(self) -> str:
    """e.g. `feat x2-relu/64 | r5x2e3se/48@1 ... | c3x1/128@1 ...`: function
    (conv, residual, bottleneck, mbconv), kernel, repeats, expansion,
    squeeze-excite, filters and level of each block group."""

    def block(b):  # A decoder's plain conv has no expansion or SE.
      return (f'{b.block_fn[0]}{b.kernel_size}x{b.block_repeats}'
              f'{"" if b.block_fn == "conv" else "e" + str(b.expand_ratio)}'
              f'{"se" if b.se_ratio and b.block_fn != "conv" else ""}'
              f'{"" if b.activation_fn == "swish" else "-relu"}'
              f'/{b.output_filters}@{b.level}')

    featurizer = ' '.join(
        f'x{f.block_repeats}{"" if f.activation_fn == "swish" else "-relu"}'
        f'/{f.output_filters}' for f in self.featurizer_blocks)
    return (f'feat {featurizer} | '
            f'{" ".join(block(b) for b in self.backbone_blocks)} | '
            f'{" ".join(block(b) for b in self.decoder_blocks)}')


def _pointpillars_block(output_filters: Any, level: int,
                        block_fns: Sequence[str]) -> PointPillarsBlockSpec:
  return PointPillarsBlockSpec(
      block_fn=pg.oneof(list(block_fns)),
      block_repeats=pg.oneof([1, 2, 3]),
      kernel_size=pg.oneof([3, 5]),
      expand_ratio=pg.oneof([1, 3, 6]),
      se_ratio=pg.oneof([0.0, 0.25]),
      activation_fn=pg.oneof(['swish', 'relu']),
      output_filters=output_filters,
      level=level)


@register_search_space('pointpillars', kind='backbone')
def pointpillars_search_space() -> PointPillarsSpec:
  """The PointPillars space: a featurizer block, 5 backbone block groups
  over 3 levels and one decoder block group per level (56 decisions)."""
  return PointPillarsSpec(
      featurizer_blocks=[PointPillarsFeaturizerSpec(
          block_repeats=pg.oneof([1, 2, 3]),
          activation_fn=pg.oneof(['swish', 'relu']),
          output_filters=pg.oneof(
              filters_candidates(POINTPILLARS_FEATURIZER_FILTERS)))],
      backbone_blocks=[
          _pointpillars_block(pg.oneof(filters_candidates(f)), level,
                              ('residual', 'bottleneck', 'mbconv'))
          for level, f in POINTPILLARS_BACKBONE_BLOCKS],
      decoder_blocks=[
          _pointpillars_block(POINTPILLARS_DECODER_FILTERS, level,
                              ('conv', 'residual', 'bottleneck', 'mbconv'))
          for level in POINTPILLARS_LEVELS])


# ---------------------------------------------------------------------------
# 3D UNet (medical volume segmentation): the platform's baseline, searched
# encoder and searched NAS-FPN-style decoder
# ---------------------------------------------------------------------------

UNET_ENCODER_FILTERS = (32, 64, 128, 256)  # Levels 1-4, each halving.
UNET_LEVELS = (1, 2, 3, 4)
UNET_NASFPN_NUM_INTERMEDIATE_BLOCKS = 2


class StaticUNetSpec(pg.Object):
  """The fixed baseline 3D UNet; `dummy_param` is the platform's single
  one-candidate decision, so the space can run as a (one-trial) search."""

  dummy_param: int

  def summary(self) -> str:
    return 'static 3D UNet ' + '/'.join(map(str, UNET_ENCODER_FILTERS))


@register_search_space('static_unet', kind='backbone')
def static_unet_search_space() -> StaticUNetSpec:
  return StaticUNetSpec(dummy_param=pg.oneof([1]))


class UNetEncoderBlockSpec(pg.Object):
  """An encoder level: `num_repeats` 3D residual blocks of `block_type`."""

  block_type: str
  num_filters: int
  num_repeats: int
  kernel_size: int
  id_skip: bool
  se_ratio: float


class TunableUNetEncoderSpec(pg.Object):
  """A 3D UNet encoder: one block group per level, one activation."""

  blocks: list[UNetEncoderBlockSpec]
  activation: str

  def summary(self) -> str:
    """Per level e.g. `b5x2se0.25id/64` (`b` basic, `n` bottleneck)."""
    return ' '.join(
        f'{"b" if b.block_type == "basic_block" else "n"}{b.kernel_size}'
        f'x{b.num_repeats}{f"se{b.se_ratio}" if b.se_ratio else ""}'
        f'{"id" if b.id_skip else ""}/{b.num_filters}'
        for b in self.blocks) + f' {self.activation}'


@register_search_space('tunable_unet_encoder', kind='backbone')
def tunable_unet_encoder_search_space() -> TunableUNetEncoderSpec:
  """The 3D UNet encoder space: 4 levels of 6 decisions, and the activation."""
  return TunableUNetEncoderSpec(
      blocks=[UNetEncoderBlockSpec(
          block_type=pg.oneof(['basic_block', 'bottleneck_block']),
          num_filters=pg.oneof(filters_candidates(f)),
          num_repeats=pg.oneof([1, 2, 3]),
          kernel_size=pg.oneof([3, 5]),
          id_skip=pg.oneof([False, True]),
          se_ratio=pg.oneof([0.0, 0.25, 0.5])) for f in UNET_ENCODER_FILTERS],
      activation=pg.oneof(['relu', 'swish']))


class UNetNasFpnSpec(MergeCellSpec):
  """A NAS-FPN cell over the 3D UNet encoder's levels 1-4 (`L1`..`L4` in
  summaries)."""

  LEVEL_PREFIX = 'L'


@register_search_space('tunable_unet_nasfpn', kind='decoder')
def tunable_unet_nasfpn_search_space() -> UNetNasFpnSpec:
  """The 3D UNet decoder space: 2 free merge cells at any level, then 4
  cells that emit levels 1-4 in a searched order (24 decisions)."""
  num_inputs = len(UNET_LEVELS)
  return UNetNasFpnSpec(
      intermediate_blocks=[
          NasFpnBlockSpec(
              level=pg.oneof(list(UNET_LEVELS)),
              combine_fn=pg.oneof(['sum', 'attention']),
              input_offsets=_two_distinct_sorted(range(num_inputs + i)))
          for i in range(UNET_NASFPN_NUM_INTERMEDIATE_BLOCKS)
      ],
      output_blocks=[
          NasFpnBlockSpec(
              level=None,
              combine_fn=pg.oneof(['sum', 'attention']),
              input_offsets=_two_distinct_sorted(
                  range(num_inputs + UNET_NASFPN_NUM_INTERMEDIATE_BLOCKS + j)))
          for j in range(len(UNET_LEVELS))
      ],
      output_block_levels=_permutation(UNET_LEVELS))


# ---------------------------------------------------------------------------
# Augmentation policies (detection and segmentation)
# ---------------------------------------------------------------------------

AUGMENTATION_TASKS = ('detection', 'segmentation')
RANDAUGMENT_NUM_OPS = (1, 2)
RANDAUGMENT_MAGNITUDES = tuple(range(1, 11))


class RandAugmentSpec(pg.Object):
  """RandAugment: `num_ops` random ops per image at one `magnitude`.

  `task` ('detection' or 'segmentation') picks the op table, since boxes and
  masks must be transformed along with the image.
  """

  num_ops: int
  magnitude: int
  task: str

  def summary(self) -> str:
    return (f'randaugment[{self.task}] num_ops={self.num_ops} '
            f'magnitude={self.magnitude}')


def randaugment_search_space(task: str) -> RandAugmentSpec:
  """The RandAugment space for one task's op table."""
  return RandAugmentSpec(
      num_ops=pg.oneof(list(RANDAUGMENT_NUM_OPS)),
      magnitude=pg.oneof(list(RANDAUGMENT_MAGNITUDES)),
      task=task)


@register_search_space('randaugment_detection', kind='augmentation')
def randaugment_detection_search_space() -> RandAugmentSpec:
  """RandAugment over the detection op table (box-aware ops)."""
  return randaugment_search_space('detection')


@register_search_space('randaugment_segmentation', kind='augmentation')
def randaugment_segmentation_search_space() -> RandAugmentSpec:
  """RandAugment over the segmentation op table (mask-aware ops)."""
  return randaugment_search_space('segmentation')


AUTOAUGMENT_NUM_SUB_POLICIES = 5
AUTOAUGMENT_OPS_PER_SUB_POLICY = 2
AUTOAUGMENT_NUM_OPS = {'detection': 21, 'segmentation': 13}
AUTOAUGMENT_MAGNITUDES = tuple(range(11))
# round() so the literals are exactly 0.3, 1.0, ... as Vertex prints them.
AUTOAUGMENT_PROBABILITIES = tuple(round(i / 10, 1) for i in range(11))


def autoaugment_search_space(task: str) -> pg.List:
  """An AutoAugment policy: [op_indices, magnitudes, probabilities].

  Each is a list of AUTOAUGMENT_NUM_SUB_POLICIES sub-policies of
  AUTOAUGMENT_OPS_PER_SUB_POLICY values, so op k of sub-policy s is
  (policy[0][s][k], policy[1][s][k], policy[2][s][k]). Op indices refer to the
  task's op table (`AUTOAUGMENT_NUM_OPS[task]` ops).
  """

  def per_sub_policy(candidates):
    return pg.List([
        pg.manyof(AUTOAUGMENT_OPS_PER_SUB_POLICY, list(candidates),
                  choices_distinct=False, choices_sorted=False)
        for _ in range(AUTOAUGMENT_NUM_SUB_POLICIES)
    ])

  return pg.List([
      per_sub_policy(range(AUTOAUGMENT_NUM_OPS[task])),
      per_sub_policy(AUTOAUGMENT_MAGNITUDES),
      per_sub_policy(AUTOAUGMENT_PROBABILITIES),
  ])


@register_search_space('autoaugment_detection', kind='augmentation')
def autoaugment_detection_search_space() -> pg.List:
  """AutoAugment over the 21 detection ops."""
  return autoaugment_search_space('detection')


@register_search_space('autoaugment_segmentation', kind='augmentation')
def autoaugment_segmentation_search_space() -> pg.List:
  """AutoAugment over the 13 segmentation ops."""
  return autoaugment_search_space('segmentation')


def is_autoaugment_policy(spec: Any) -> bool:
  """Whether `spec` has the [op_indices, magnitudes, probabilities] shape:
  three lists with one entry per sub-policy (>= 1 of them), each a list."""
  return (isinstance(spec, (list, tuple)) and len(spec) == 3 and
          all(isinstance(part, (list, tuple)) and part for part in spec) and
          len({len(part) for part in spec}) == 1 and
          all(isinstance(sub, (list, tuple)) for part in spec for sub in part))


def architecture_summary(spec: Any) -> str:
  """A one-line human summary of a materialised spec, for progress output.

  A spec class carries its own one-line `summary()` (so a new space's spec
  class brings its summary with it); an AutoAugment policy (plain lists) is
  summarised here; anything else is its compact `pg.format`, cut to 120
  characters.
  """
  # Looked up on the type: a pg.Dict reads attributes as its keys.
  if callable(getattr(type(spec), 'summary', None)):
    return spec.summary()
  if is_autoaugment_policy(spec):
    ops, magnitudes, probabilities = spec
    return ' | '.join(
        ' '.join(f'op{o}@m{m}p{p}' for o, m, p in zip(*sub_policy))
        for sub_policy in zip(ops, magnitudes, probabilities))
  return pg.format(spec, compact=True)[:120]


# ---------------------------------------------------------------------------
# Published reference architectures, as specs of the spaces above
# ---------------------------------------------------------------------------

# SpineNet-49 (Du et al. 2020, Model Garden's default SpineNet): its blocks
# after the two init blocks as (level, block_fn, input_offsets).
SPINENET49_INTERMEDIATE_BLOCKS = (
    (2, 'bottleneck', (0, 1)), (4, 'residual', (0, 1)),
    (3, 'bottleneck', (2, 3)), (4, 'bottleneck', (2, 4)),
    (6, 'residual', (3, 5)), (4, 'bottleneck', (3, 5)),
    (5, 'residual', (6, 7)), (7, 'residual', (6, 8)),
    (5, 'bottleneck', (8, 9)), (5, 'bottleneck', (8, 10)))
SPINENET49_OUTPUT_BLOCKS = (
    (4, 'bottleneck', (5, 10)), (3, 'bottleneck', (4, 10)),
    (5, 'bottleneck', (7, 12)), (7, 'bottleneck', (5, 14)),
    (6, 'bottleneck', (12, 14)), (2, 'bottleneck', (2, 13)))


def spinenet49_reference_spec() -> SpineNetSpec:
  """SpineNet-49 as a SpineNetSpec, e.g. the base network to scale.

  Not a member of the `spinenet` space (10 intermediate blocks, 6 outputs):
  as published, its last output block is at level 2, below min_level, so no
  endpoint reads it.
  """

  def blocks(table):
    return [SpineNetBlockSpec(level_offset=0, block_fn=fn,
                              input_offsets=list(offsets))
            for _, fn, offsets in table]

  intermediate_levels = [level for level, _, _ in SPINENET49_INTERMEDIATE_BLOCKS]
  return SpineNetSpec(
      intermediate_blocks=blocks(SPINENET49_INTERMEDIATE_BLOCKS),
      intermediate_block_levels=intermediate_levels,
      output_blocks=blocks(SPINENET49_OUTPUT_BLOCKS),
      output_block_levels=[level for level, _, _ in SPINENET49_OUTPUT_BLOCKS],
      init_blocks=[
          SpineNetBlockSpec(level_offset=0, block_fn=SPINENET_INIT_BLOCK_FN,
                            input_offsets=[])
          for _ in range(SPINENET_NUM_INIT_BLOCKS)
      ],
      init_block_level=SPINENET_INIT_BLOCK_LEVEL,
      level_allocation=sorted(intermediate_levels),
      min_level=SPINENET_MIN_LEVEL,
      max_level=SPINENET_MAX_LEVEL)


# NAS-FPN (Ghiasi et al. 2019, Model Garden's default NAS-FPN cell) as
# (level, combine_fn, input_offsets); a member of the `nasfpn` space.
NASFPN_REFERENCE_INTERMEDIATE_BLOCKS = (
    (4, 'attention', (1, 3)), (4, 'sum', (1, 5)))
NASFPN_REFERENCE_OUTPUT_BLOCKS = (
    (3, 'sum', (0, 6)), (4, 'sum', (6, 7)), (5, 'attention', (7, 8)),
    (7, 'attention', (6, 9)), (6, 'attention', (9, 10)))


def nasfpn_reference_spec() -> NasFpnSpec:
  """The published NAS-FPN cell as a NasFpnSpec, e.g. a baseline trial."""
  return NasFpnSpec(
      intermediate_blocks=[
          NasFpnBlockSpec(level=level, combine_fn=fn,
                          input_offsets=list(offsets))
          for level, fn, offsets in NASFPN_REFERENCE_INTERMEDIATE_BLOCKS
      ],
      output_blocks=[
          NasFpnBlockSpec(level=None, combine_fn=fn,
                          input_offsets=list(offsets))
          for _, fn, offsets in NASFPN_REFERENCE_OUTPUT_BLOCKS
      ],
      output_block_levels=[
          level for level, _, _ in NASFPN_REFERENCE_OUTPUT_BLOCKS])


# NASNet-A (Zoph et al. 2018, Fig. 4), as the authors released its cells:
# per block (left input, left op, right input, right op), all added, and the
# hidden states each cell's output concatenates. The release concatenates
# two states its blocks also take (state 1 of the normal cell, state 3 of
# the reduction cell), where the paper's rule concatenates only unused ones.
NASNET_A_NORMAL_BLOCKS = (
    (0, 'sep_conv_5x5', 1, 'sep_conv_3x3'),
    (1, 'sep_conv_5x5', 1, 'sep_conv_3x3'),
    (0, 'avg_pool_3x3', 1, 'identity'),
    (1, 'avg_pool_3x3', 1, 'avg_pool_3x3'),
    (0, 'sep_conv_3x3', 0, 'identity'))
NASNET_A_NORMAL_OUTPUT_STATES = (1, 2, 3, 4, 5, 6)
NASNET_A_REDUCTION_BLOCKS = (
    (0, 'sep_conv_5x5', 1, 'sep_conv_7x7'),
    (0, 'max_pool_3x3', 1, 'sep_conv_7x7'),
    (0, 'avg_pool_3x3', 1, 'sep_conv_5x5'),
    (3, 'identity', 2, 'avg_pool_3x3'),
    (2, 'sep_conv_3x3', 0, 'max_pool_3x3'))
NASNET_A_REDUCTION_OUTPUT_STATES = (3, 4, 5, 6)


def nasnet_a_spec(released_outputs: bool = False) -> NasNetSpec:
  """NASNet-A as a NasNetSpec of the `nasnet` space; `released_outputs`
  concatenates the states the authors' released cells do (as
  tf_keras.applications.NASNetMobile) instead of the paper's unused ones."""

  def cell(blocks, output_states):
    return NasNetCellSpec(
        blocks=[NasNetBlockSpec(left_input=l, left_op=lo, right_input=r,
                                right_op=ro) for l, lo, r, ro in blocks],
        output_states=list(output_states) if released_outputs else None)

  return NasNetSpec(
      normal_cell=cell(NASNET_A_NORMAL_BLOCKS, NASNET_A_NORMAL_OUTPUT_STATES),
      reduction_cell=cell(NASNET_A_REDUCTION_BLOCKS,
                          NASNET_A_REDUCTION_OUTPUT_STATES))
