"""Which accelerator a trial trains on, the shipped config it defaults to,
and which GPUs the machine has for its trials.

Pure functions of the devices a process sees (no TensorFlow here), so the
choice is tested without hardware; trial.py asks TensorFlow for the device
list and applies the result, and the controller, which never loads
TensorFlow, finds the machine's GPUs with `machine_gpus`.
"""

import os
import shutil
import subprocess
from typing import List, Optional, Sequence

ACCELERATORS = ('auto', 'cpu', 'gpu', 'tpu')
# Environment variables through which Cloud TPU VMs and Vertex jobs name a TPU.
TPU_ENV = ('TPU_NAME', 'TPU_ACCELERATOR_TYPE')
CUDA_VISIBLE_DEVICES = 'CUDA_VISIBLE_DEVICES'
NVIDIA_SMI_TIMEOUT_S = 30


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


def device_label(gpu_names: Sequence[str]) -> str:
  """How metrics name the device a process ran on: `GPU:0 <name>` (with
  ` xN` for N GPUs) for the GPUs it used, `CPU` for none."""
  if not gpu_names:
    return 'CPU'
  return f'GPU:0 {gpu_names[0]}' + (
      f' x{len(gpu_names)}' if len(gpu_names) > 1 else '')


def visible_devices(value: str) -> List[str]:
  """The GPUs a CUDA_VISIBLE_DEVICES value leaves visible, as its entries
  (indices or UUIDs). As in CUDA, the list ends at the first invalid entry:
  '-1' or '' leaves none."""
  entries = []
  for entry in value.split(','):
    entry = entry.strip()
    if not entry or entry.startswith('-'):
      break
    entries.append(entry)
  return entries


def machine_gpus(environ: Optional[dict] = None) -> List[str]:
  """The GPUs local trials may share, as CUDA_VISIBLE_DEVICES entries:
  those CUDA_VISIBLE_DEVICES leaves visible when it is set, else the indices
  `nvidia-smi` lists, else none (no NVIDIA driver)."""
  environ = os.environ if environ is None else environ
  if CUDA_VISIBLE_DEVICES in environ:
    return visible_devices(environ[CUDA_VISIBLE_DEVICES])
  nvidia_smi = shutil.which('nvidia-smi', path=environ.get('PATH'))
  if nvidia_smi is None:
    return []
  try:
    listed = subprocess.run(
        [nvidia_smi, '--query-gpu=index', '--format=csv,noheader'],
        capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S)
  except (OSError, subprocess.TimeoutExpired):
    return []
  if listed.returncode != 0:
    return []  # E.g. a driver/library mismatch: CUDA would see no GPU either.
  return [line.strip() for line in listed.stdout.splitlines()
          if line.strip().isdigit()]
