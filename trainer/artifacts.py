"""Where a job keeps its artifacts, and how they are written.

Light on purpose (no TensorFlow): the controller, executors and reports read
these paths too.
"""

import os

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
              'proxy_search': 'proxy_search_trials'}
# Stages that train fully (the full-training config) rather than a proxy.
# Model selection trains on the full schedule, stopped early in every round
# but the last.
FULL_TRAINING_STAGES = ('train', 'final', 'proxy_model_selection')


def config_stage(stage: str) -> str:
  """'train' for a stage that trains fully, else 'search' (proxy)."""
  return 'train' if stage in FULL_TRAINING_STAGES else 'search'


def trial_dir(job_dir: str, stage: str, trial_id: int) -> str:
  return os.path.join(job_dir, STAGE_DIRS[stage], str(trial_id))


def data_dir(job_dir: str) -> str:
  """Built-in datasets are written here when the user gives no data."""
  return os.path.join(job_dir, 'data')
