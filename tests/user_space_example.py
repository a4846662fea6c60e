"""A user-defined search space, loaded by `get_search_space('module:fn')`."""

import pyglove as pg


def tiny_space():
  return pg.Dict(width=pg.oneof([8, 16]), depth=pg.oneof([1, 2, 3]))


def deterministic_value():
  return pg.Dict(width=8)
