"""What one trial trains, as one typed value (no TensorFlow).

The controller builds a `TrialSpec` once per stage, gives each trial its
architecture and seed, and hands it to an executor as the trial process's
argv (`to_argv`); the trial process reads it back from its flags
(`from_flags`). An export records it and `--export_dir` reads it again, and a
stage's identity in the store is its JSON (`identity`).
"""

import dataclasses
from typing import Any, Dict, List

from trainer import artifacts
from trainer import fileio

# Trial t of a search seeded s trains with seed s * TRIAL_SEED_STRIDE + t.
TRIAL_SEED_STRIDE = 100003


def trial_seed(search_seed: int, trial_id: int) -> int:
  """The seed of one trial: distinct per trial, fixed by the search's seed."""
  return search_seed * TRIAL_SEED_STRIDE + trial_id


@dataclasses.dataclass(frozen=True)
class Runtime:
  """How a trial runs, not what it trains: its tf.distribute strategy and
  precision, set in Model Garden's runtime config. Empty fields keep the
  config's."""
  distribution_strategy: str = ''
  tpu: str = ''
  mixed_precision: bool = False
  # Logical CPU devices for a mirrored strategy on a machine without GPUs.
  cpu_replicas: int = 0
  # auto | cpu | gpu | tpu: picks the default config and the device count.
  accelerator: str = 'auto'
  # When the trial evaluates: '' | final | best | none (platform_flags).
  evaluation: str = ''


@dataclasses.dataclass(frozen=True)
class TrialSpec:
  """Everything that defines a trial.

  With an augmentation space the trial searches a policy for the fixed
  architecture `base_nas_params_str` of `base_search_space`. `stage` picks
  the config family: a full-training stage loads the space's train config
  by default, evaluates several times and keeps its best checkpoint.
  """
  search_space: str
  nas_params_str: str = ''
  experiment: str = ''
  config_file: str = ''
  params_override: str = ''
  train_data: str = ''
  eval_data: str = ''
  base_search_space: str = ''
  base_nas_params_str: str = ''
  stage: str = 'search'
  seed: int = 0
  runtime: Runtime = Runtime()
  # Warm start: a checkpoint whose searched component initialises the model.
  init_checkpoint: str = ''

  @property
  def config_stage(self) -> str:
    return artifacts.config_stage(self.stage)

  def replace(self, **changes: Any) -> 'TrialSpec':
    return dataclasses.replace(self, **changes)

  def for_trial(self, trial_id: int, nas_params_str: str) -> 'TrialSpec':
    """Trial `trial_id` of the stage this spec describes (seeded by it)."""
    return self.replace(nas_params_str=nas_params_str,
                        seed=trial_seed(self.seed, trial_id))

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, value: Dict[str, Any]) -> 'TrialSpec':
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - fields)
    if unknown:
      raise ValueError(f'unknown trial spec fields: {", ".join(unknown)}')
    return cls(**{**value, 'runtime': Runtime(**value.get('runtime', {}))})

  def identity(self, config_text: str) -> Dict[str, Any]:
    """What a resumed stage must share with the run that started it: the
    spec without what differs per trial or per run (architecture, runtime,
    warm start), the config by content rather than path."""
    value = self.to_dict()
    for per_run in ('nas_params_str', 'runtime', 'init_checkpoint',
                    'config_file'):
      del value[per_run]
    return {**value, 'config': config_text}

  def to_argv(self, job_dir: str, trial_id: int,
              **trial_flags: Any) -> List[str]:
    """Interpreter arguments of the trial process: `python -m trainer.task
    --mode=trial` with this spec as flags, plus `trial_flags` (e.g.
    measure_latency, search_trial_id)."""
    values = self.to_dict()
    values.update(values.pop('runtime'))
    values.update(job_dir=job_dir, trial_id=trial_id, **trial_flags)
    return ['-m', 'trainer.task', '--mode=trial'] + [
        f'--{k}={v}' for k, v in values.items()]

  @classmethod
  def from_flags(cls, flag_values: Any) -> 'TrialSpec':
    """The spec a trial process's flags describe (`flag_values` has one
    attribute per flag, e.g. absl's FLAGS); nas_params_str values may be
    paths of .json files holding them."""
    runtime = Runtime(**{f.name: getattr(flag_values, f.name)
                         for f in dataclasses.fields(Runtime)})
    values = {f.name: getattr(flag_values, f.name)
              for f in dataclasses.fields(cls) if f.name != 'runtime'}
    for name in ('nas_params_str', 'base_nas_params_str'):
      values[name] = read_nas_params(values[name], name)
    return cls(**values, runtime=runtime)


def read_nas_params(value: str, flag: str = 'nas_params_str') -> str:
  """A nas_params_str flag's value: JSON as given, or the text of the file it
  names; '' stays ''."""
  if not value or value.lstrip().startswith('{'):
    return value
  if not fileio.isfile(value):
    raise ValueError(f'--{flag} is neither JSON nor a file: {value}')
  return fileio.read_text(value)
