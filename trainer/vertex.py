"""What a Vertex AI training job tells a trial through its environment, and
the hypertune metrics file the service reads the trial's reward from.

No TensorFlow. Vertex AI NAS runs each trial as a training job with:

  AIP_MODEL_DIR            the trial's output dir, <root>/nas/search/<id> (or
                           nas/train/<id>), or a folder inside it
  CLOUD_ML_TRIAL_ID        the trial's id
  CLOUD_ML_HP_METRIC_TAG   the key the service reads the reward under
  CLOUD_ML_HP_METRIC_FILE  the file it reads it from
  TF_CONFIG                the cluster, when the trial spans several machines

A report is one JSON line in the metrics file, as the platform's reporter
writes it: `timestamp` (seconds, a number), then as strings `trial`, the
tag's reward, `global_step`, `checkpoint_path`, `model_flops`, and up to
MAX_EXTRA_METRICS extra metrics as `key_<i>` (name) and `value_<i>`.
"""

import json
import os
import re
import time
from typing import Any, Dict, Mapping, Optional

from trainer import fileio

MODEL_DIR = 'AIP_MODEL_DIR'
TRIAL_ID = 'CLOUD_ML_TRIAL_ID'
METRIC_TAG = 'CLOUD_ML_HP_METRIC_TAG'
METRIC_FILE = 'CLOUD_ML_HP_METRIC_FILE'
TF_CONFIG = 'TF_CONFIG'

DEFAULT_METRIC_TAG = 'training/hptuning/metric'
DEFAULT_METRIC_FILE = '/tmp/hypertune/output.metrics'
MAX_EXTRA_METRICS = 5
MAX_METRIC_NAME = 64
# The file keeps the last reports only, as the platform's reporter does.
KEPT_REPORTS = 100
# The service cannot take a reward of exactly 0; the platform reports 1e-8.
ZERO_REWARD = 1e-8

# The trial dir inside AIP_MODEL_DIR, as the platform's trainer finds it.
_VERTEX_TRIAL_DIR = re.compile(r'.*nas/(search|train)/\d+(?=/|$)')
# TF_CONFIG task types that train (an evaluator or parameter server does not
# make a trial multi-worker).
_TRAINING_TASKS = ('chief', 'worker')


def trial_dir(environ: Mapping[str, str]) -> str:
  """The trial's output dir AIP_MODEL_DIR names ('' when it is unset): its
  `.../nas/<search|train>/<id>` part when it names a folder inside one, else
  the dir itself."""
  model_dir = environ.get(MODEL_DIR, '').rstrip('/')
  if not model_dir:
    return ''
  match = _VERTEX_TRIAL_DIR.match(model_dir)
  return fileio.absolute(match.group(0) if match else model_dir)


def reports_metrics(environ: Mapping[str, str]) -> bool:
  """Whether the trial writes the hypertune metrics file: when it runs as a
  Vertex AI job (AIP_MODEL_DIR) or the metric file or tag is set, none of
  which a local search's executors set."""
  return any(environ.get(name) for name in (METRIC_FILE, METRIC_TAG,
                                            MODEL_DIR))


def distribution_strategy(given: str, environ: Mapping[str, str]) -> str:
  """The trial's --distribution_strategy: as given; when empty and TF_CONFIG
  describes several training tasks (chief and workers),
  multi_worker_mirrored, Model Garden's strategy for such a cluster; else
  empty (the config's)."""
  if given or not environ.get(TF_CONFIG):
    return given
  try:
    cluster = json.loads(environ[TF_CONFIG]).get('cluster', {})
    tasks = sum(len(cluster.get(kind, ())) for kind in _TRAINING_TASKS)
  except (ValueError, AttributeError, TypeError) as e:
    raise ValueError(f'TF_CONFIG is not a cluster spec: {e}') from e
  return 'multi_worker_mirrored' if tasks > 1 else ''


def metric_report(tag: str, reward: float, global_step: int, trial_id: int,
                  checkpoint_path: str = '',
                  model_flops: Optional[float] = None,
                  extra_metrics: Optional[Dict[str, Any]] = None,
                  timestamp: Optional[float] = None) -> Dict[str, Any]:
  """One report: the reward under `tag` (DEFAULT_METRIC_TAG when empty) and
  the first MAX_EXTRA_METRICS numeric `extra_metrics` whose names fit
  (MAX_METRIC_NAME characters) and are not the report's own keys."""
  tag = tag or DEFAULT_METRIC_TAG
  report = {
      'timestamp': time.time() if timestamp is None else timestamp,
      'trial': str(trial_id),
      tag: str(float(reward) or ZERO_REWARD),
      'global_step': str(int(global_step or 0)),
      'checkpoint_path': checkpoint_path,
      'model_flops': str(float(model_flops or 0.0)),
  }
  reported = [(name, value) for name, value in (extra_metrics or {}).items()
              if isinstance(value, (int, float)) and not isinstance(value, bool)
              and len(name) <= MAX_METRIC_NAME
              and name not in (tag, 'global_step', 'model_flops')]
  for i, (name, value) in enumerate(reported[:MAX_EXTRA_METRICS]):
    report[f'key_{i}'] = name
    report[f'value_{i}'] = str(float(value))
  return report


def write_report(path: str, report: Dict[str, Any]) -> None:
  """Adds `report` as the last line of the metrics file at `path` (keeping
  the last KEPT_REPORTS), replacing the file whole so the service never
  reads half a line."""
  parent = os.path.dirname(path)
  if parent:
    fileio.makedirs(parent)
  lines = (fileio.read_text(path).splitlines() if fileio.exists(path)
           else [])
  lines.append(json.dumps(report, sort_keys=True))
  fileio.write_text(path,
                    ''.join(f'{line}\n' for line in lines[-KEPT_REPORTS:]))


def report_metrics(environ: Mapping[str, str], **report_fields: Any) -> None:
  """Writes one report (metric_report's fields, the tag the environment's)
  to the environment's metrics file."""
  write_report(environ.get(METRIC_FILE) or DEFAULT_METRIC_FILE,
               metric_report(environ.get(METRIC_TAG, ''), **report_fields))
