"""Model Garden's vision models, ops, losses and input parsers trace without
AutoGraph's source rewrite.

AutoGraph re-parses and rewrites the source of every Python function a
tf.function or tf.data map calls, in every new process: 7.4 s of a 42 s
SpineNet detection trial on two cores, 1.7 s of a 10 s MnasNet one. These
modules branch and loop over static values (configs, shapes, lists of
layers), which trace to the same graph unconverted; a branch or loop on a
tensor left in them fails at trace time (a symbolic tensor is refused as a
Python bool), so skipping the rewrite cannot change a result silently.
Orbit's loops and Model Garden's trainer and tasks (tf.range loops) stay
converted.
"""

from tensorflow.python.autograph.core import config as autograph_config
from tensorflow.python.autograph.core import config_lib

UNCONVERTED_MODULES = ('official.vision.modeling', 'official.vision.ops',
                       'official.vision.losses',
                       'official.vision.dataloaders')


def skip_model_garden_vision() -> None:
  """Adds AutoGraph's do-not-convert rules for UNCONVERTED_MODULES (once)."""
  rules = autograph_config.CONVERSION_RULES
  known = {str(rule) for rule in rules}
  added = tuple(rule for rule in map(config_lib.DoNotConvert,
                                     UNCONVERTED_MODULES)
                if str(rule) not in known)
  autograph_config.CONVERSION_RULES = added + rules
