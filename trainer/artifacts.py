"""Where a job keeps its artifacts, and how they are written.

Light on purpose (no TensorFlow): the controller, executors and reports read
these paths too.
"""

import os
import re

# The folder holding the `trainer` package: child processes (trials, latency
# measurements) import from it.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NAS_PARAMS_FILE = 'nas_params_str.json'
ARCHITECTURE_FILE = 'architecture.json'
POLICY_FILE = 'augmentation_policy.json'
METRICS_FILE = 'metrics.json'
EVALUATIONS_FILE = 'evaluations.jsonl'  # Appended as the trial evaluates.
ERROR_FILE = 'error.json'
LOG_FILE = 'trial.log'

# Trial dirs of each stage under the job dir.
STAGE_DIRS = {'search': 'trials', 'augment_search': 'augment_trials',
              'train': 'train_trials', 'final': 'final_trials',
              'proxy_model_selection': 'proxy_model_selection_trials',
              'proxy_variance': 'proxy_variance_trials',
              'proxy_search': 'proxy_search_trials',
              'compound_scaling_grid': 'compound_scaling_grid_trials',
              'compound_scaling': 'compound_scaling_trials'}
# Stages that train fully (the full-training config) rather than a proxy.
# Model selection trains on the full schedule, stopped early in every round
# but the last.
# Compound scaling trains its φ models fully (its grid on the proxy).
FULL_TRAINING_STAGES = ('train', 'final', 'proxy_model_selection',
                        'compound_scaling')


def config_stage(stage: str) -> str:
  """'train' for a stage that trains fully, else 'search' (proxy)."""
  return 'train' if stage in FULL_TRAINING_STAGES else 'search'


# --mode=design_space trains each space's samples in a stage of its own,
# `design_space:<space>`, under `design_space_trials_<space>` (the space's
# name as one path component: see design_space_dir).
DESIGN_SPACE_STAGE_PREFIX = 'design_space:'


def design_space_stage(space: str) -> str:
  return DESIGN_SPACE_STAGE_PREFIX + space


def design_space_dir(space: str) -> str:
  """The trial folder of a design-space stage: one path component,
  whatever the space's name (a module:function is one too)."""
  return 'design_space_trials_' + re.sub(r'[^A-Za-z0-9_.-]', '_', space)


def is_stage(stage: str) -> bool:
  """A fixed stage, or a design-space stage of a named space."""
  return stage in STAGE_DIRS or (
      stage.startswith(DESIGN_SPACE_STAGE_PREFIX) and
      len(stage) > len(DESIGN_SPACE_STAGE_PREFIX))


def stage_dir(stage: str) -> str:
  """The stage's folder of trial dirs under the job dir."""
  if stage in STAGE_DIRS:
    return STAGE_DIRS[stage]
  if is_stage(stage):
    return design_space_dir(stage[len(DESIGN_SPACE_STAGE_PREFIX):])
  raise KeyError(stage)


def trial_dir(job_dir: str, stage: str, trial_id: int) -> str:
  return os.path.join(job_dir, stage_dir(stage), str(trial_id))


def data_dir(job_dir: str) -> str:
  """Built-in datasets are written here when the user gives no data."""
  return os.path.join(job_dir, 'data')
