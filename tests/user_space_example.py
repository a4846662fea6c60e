"""A user-defined search space, loaded by `get_search_space('module:fn')`."""

import pyglove as pg


def tiny_space():
  return pg.Dict(width=pg.oneof([8, 16]), depth=pg.oneof([1, 2, 3]))


def deterministic_value():
  return pg.Dict(width=8)


def narrow_mnasnet():
  """The README's example: MnasNet with only 3x3 kernels and no squeeze-excite."""
  import search_spaces  # pylint: disable=g-import-not-at-top
  space = search_spaces.mnasnet_search_space()
  for block in space.blocks:
    block.rebind(kernel_size=3, se_ratio=pg.oneof([0.0]))
  return space
