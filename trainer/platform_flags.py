"""The Vertex AI NAS trainer's flags, translated into nas-garden's own.

Vertex AI NAS starts its trainer container with the flags of the platform's
`cloud_search_main.py` (`--job-dir`, `--model`, `--use_tpu`, ...). The driver
(trainer/task.py) translates those given on the command line into our flags
before any mode reads them, so `--mode=trial` is a drop-in trainer. No
TensorFlow here: the translation is tested without it.
"""

from typing import Any, Dict, Mapping, Optional, Tuple

# --model: the experiment the platform trains for each model, by our name.
MODEL_EXPERIMENTS = {
    'classification': 'nas_image_classification',
    'retinanet': 'nas_retinanet',
    'segmentation': 'nas_semantic_segmentation',
    'pointpillars': 'nas_pointpillars',
}
# Models the platform's trainer also takes, which nas-garden cannot train.
UNSUPPORTED_MODELS = ('mask_rcnn', 'pointpillars_baseline')
# The platform's registered experiment names, by our name for the same one.
PLATFORM_EXPERIMENTS = {
    'image_classification_nas': 'nas_image_classification',
    'retinanet_nas': 'nas_retinanet',
    'semantic_segmentation_nas': 'nas_semantic_segmentation',
    'pointpillars_nas': 'nas_pointpillars',
}
JOB_MODES = ('train', 'train_and_eval')
# --evaluation, what --job_mode, --skip_eval and --multiple_eval_during_search
# translate to: '' evaluates every trainer.validation_interval and reports the
# last evaluation (the best in full training); 'final' evaluates once, after
# the last step; 'best' evaluates every validation_interval and reports the
# best; 'none' trains without evaluating.
EVALUATIONS = ('', 'final', 'best', 'none')
# Platform flags with the meaning of one of ours.
RENAMED = {'job-dir': 'job_dir', 'training_data_path': 'train_data',
           'validation_data_path': 'eval_data'}
# Flags that only a trial process reads (spec.Runtime.evaluation).
TRIAL_ONLY = ('job_mode', 'skip_eval', 'multiple_eval_during_search',
              'evaluation')
# Values of ours that leave the choice open, so a platform flag may make it.
OPEN_VALUES = {'accelerator': 'auto', 'distribution_strategy': ''}


class PlatformFlagError(ValueError):
  """A platform flag nas-garden cannot honour, or one that contradicts
  another flag given."""


def translate(given: Mapping[str, Any], mode: str) -> Dict[str, Any]:
  """Our flag values that the flags on the command line mean.

  `given` maps each flag given on the command line to its value; `mode` is
  --mode. Returns {our flag: value} for the platform flags among them (and
  our name for a platform experiment name in --experiment). Raises
  PlatformFlagError when one of ours, also given, says otherwise, or a
  platform value has no meaning here.
  """
  for name in TRIAL_ONLY:
    if name in given and mode != 'trial':
      raise PlatformFlagError(f'--{name} is a --mode=trial flag')
  wanted: Dict[str, Tuple[Any, str]] = {}  # Our flag -> (value, why).
  for platform_name, ours in RENAMED.items():
    if platform_name in given:
      wanted[ours] = (given[platform_name],
                      f'--{platform_name}={given[platform_name]}')
  if given.get('experiment') in PLATFORM_EXPERIMENTS:
    wanted['experiment'] = (PLATFORM_EXPERIMENTS[given['experiment']],
                            f'--experiment={given["experiment"]}')
  if 'model' in given:
    wanted['experiment'] = _merge(
        wanted.get('experiment'),
        (_experiment_of_model(given['model']), f'--model={given["model"]}'))
  if 'use_tpu' in given:
    if given['use_tpu']:
      wanted['distribution_strategy'] = ('tpu', '--use_tpu')
      wanted['accelerator'] = ('tpu', '--use_tpu')
    elif given.get('distribution_strategy') == 'tpu':
      raise PlatformFlagError('--use_tpu=false contradicts '
                              '--distribution_strategy=tpu')
  evaluation = _evaluation(given)
  if evaluation is not None:
    wanted['evaluation'] = evaluation
  for ours, (value, why) in wanted.items():
    if ours not in given or given[ours] in (value, OPEN_VALUES.get(ours)):
      continue
    if ours == 'experiment' and PLATFORM_EXPERIMENTS.get(given[ours]) == value:
      continue
    raise PlatformFlagError(f'{why} means --{ours}={value}, but '
                            f'--{ours}={given[ours]} was given')
  return {ours: value for ours, (value, _) in wanted.items()}


def _experiment_of_model(model: str) -> str:
  """Our experiment for the platform's --model."""
  if model in MODEL_EXPERIMENTS:
    return MODEL_EXPERIMENTS[model]
  raise PlatformFlagError(
      f'--model={model}: nas-garden has no {model} experiment; --model takes '
      f'{", ".join(sorted(MODEL_EXPERIMENTS))}')


def _merge(first: Optional[Tuple[str, str]],
           second: Tuple[str, str]) -> Tuple[str, str]:
  """Two platform flags' choice of the same flag of ours: one value."""
  if first is not None and first[0] != second[0]:
    raise PlatformFlagError(f'{first[1]} and {second[1]} name different '
                            'experiments')
  return second


def _evaluation(given: Mapping[str, Any]) -> Optional[Tuple[str, str]]:
  """(--evaluation, why) the platform's --job_mode, --skip_eval and
  --multiple_eval_during_search ask for; None when none is given.

  As on the platform: `train` evaluates once after training unless
  --multiple_eval_during_search (every validation_interval, the best
  reported) or --skip_eval (no evaluation); `train_and_eval` evaluates every
  validation_interval.
  """
  job_mode = given.get('job_mode')
  skip_eval = given.get('skip_eval', False)
  multiple = given.get('multiple_eval_during_search', False)
  if skip_eval and multiple:
    raise PlatformFlagError(
        '--skip_eval contradicts --multiple_eval_during_search')
  if skip_eval and job_mode == 'train_and_eval':
    raise PlatformFlagError(
        '--skip_eval contradicts --job_mode=train_and_eval')
  if skip_eval:
    return 'none', '--skip_eval'
  if multiple:
    return 'best', '--multiple_eval_during_search'
  if job_mode == 'train':
    return 'final', '--job_mode=train'
  if job_mode == 'train_and_eval':
    return '', '--job_mode=train_and_eval'
  return None


def apply(flag_values: Any) -> None:
  """Sets our flags in absl's `flag_values` from the platform flags given on
  the command line, as if ours had been given (PlatformFlagError: see
  translate)."""
  given = {name: flag_values[name].value for name in flag_values
           if flag_values[name].present}
  for name, value in translate(given, flag_values['mode'].value).items():
    flag_values[name].parse(value)
