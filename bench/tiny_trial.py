"""The tiny trial the overhead benches run: a fixed MnasNet architecture
(the first Vertex AI NAS fixture sample), a fixed seed, and the shipped tiny
CPU proxy config shortened or lengthened to a number of steps."""

import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 7


def architecture() -> str:
  with open(os.path.join(REPO, 'tests', 'fixtures', 'vertex_nas_params',
                         'mnasnet.json')) as f:
    return json.load(f)['nas_params_str_samples'][0]


def override(steps: int) -> str:
  """--params_override training `steps` steps with one evaluation at the end."""
  return (f'trainer.train_steps={steps},trainer.validation_interval={steps},'
          f'trainer.checkpoint_interval={steps}')
