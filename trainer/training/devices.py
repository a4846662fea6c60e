"""Which accelerator a trial trains on, and the shipped config it defaults to.

Pure functions of the devices a trial process sees (no TensorFlow here), so
the choice is tested without hardware; trial.py asks TensorFlow for the
device list and applies the result.
"""

import os
from typing import Optional, Sequence

ACCELERATORS = ('auto', 'cpu', 'gpu', 'tpu')
# Environment variables through which Cloud TPU VMs and Vertex jobs name a TPU.
TPU_ENV = ('TPU_NAME', 'TPU_ACCELERATOR_TYPE')


def resolve(requested: str, tpu: str = '', visible_gpus: int = 0,
            environ: Optional[dict] = None) -> str:
  """'cpu', 'gpu' or 'tpu' for --accelerator=`requested`. `auto`: TPU when
  --tpu or the environment names one, GPU when the process sees one, else
  CPU. Asking for a GPU the process does not see is a ValueError."""
  environ = os.environ if environ is None else environ
  if requested not in ACCELERATORS:
    raise ValueError(f'--accelerator must be one of {", ".join(ACCELERATORS)}'
                     f' (got {requested!r})')
  if requested == 'auto':
    if tpu or any(environ.get(name) for name in TPU_ENV):
      return 'tpu'
    return 'gpu' if visible_gpus else 'cpu'
  if requested == 'gpu' and not visible_gpus:
    raise ValueError('--accelerator=gpu but this trial process sees no GPU '
                     '(CUDA_VISIBLE_DEVICES, drivers, or a CPU-only '
                     'TensorFlow)')
  return requested


def default_config(space: str, config_space: str, task: str, stage: str,
                   accelerator: str, shipped: Sequence[str]) -> str:
  """The shipped config a trial loads without --config_file:
  `<space>_<task>_<stage>_<accelerator>`, or the spec family's
  (`config_space`) for a user space. Full training ships cpu and gpu
  configs only: on a TPU it needs a --config_file."""
  for name in (space, config_space):
    candidate = f'{name}_{task}_{stage}_{accelerator}'
    if candidate in shipped:
      return candidate
  raise ValueError(f'no shipped {stage}_{accelerator} config for {space} '
                   f'{task}; give --config_file (shipped for it: '
                   f'{", ".join(n for n in shipped if n.startswith(f"{config_space}_{task}_")) or "none"})')


def num_gpus(accelerator: str, visible_gpus: int) -> int:
  """Model Garden's runtime.num_gpus for the devices the process sees."""
  return visible_gpus if accelerator == 'gpu' else 0
