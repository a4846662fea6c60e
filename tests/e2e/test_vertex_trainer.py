"""`--mode=trial` as Vertex AI NAS's trainer: the platform's command line and
configs train real (tiny) trials and report them."""

from concurrent import futures
import json

import search_spaces
from tests.conftest import (FIXTURES, PLATFORM_CLASSIFICATION_YAML,
                            PLATFORM_SPINENET_YAML, cli)

# The platform's keys: its small SpineNet detection test config, at 32 px
# and one step (eager, which on a CPU is faster than tracing for one step).
SPINENET_YAML = PLATFORM_SPINENET_YAML + """\
  train_data: {global_batch_size: 2}
  validation_data: {global_batch_size: 2}
trainer:
  train_steps: 1
  steps_per_loop: 1
  validation_steps: 1
  validation_interval: 1
  summary_interval: 1
  checkpoint_interval: 1
  train_tf_function: false
  train_tf_while_loop: false
  eval_tf_function: false
"""


def _spinenet_sample():
  with open(f'{FIXTURES}/spinenet.json') as f:
    return json.load(f)['nas_params_str_samples'][0]


def _smallest_mnasnet():
  """The mnasnet architecture of fewest and smallest blocks (all conv)."""
  spec = search_spaces.dna_spec(search_spaces.get_search_space('mnasnet'))
  params = {}
  for decision in spec.decision_points:
    literals = [str(v) for v in decision.literal_values]
    index = (literals.index("'conv'") if "'conv'" in literals else
             min(range(len(literals)), key=lambda i: float(literals[i])))
    params[str(decision.id)] = f'{index}/{len(literals)} ({literals[index]})'
  return json.dumps(params)


def _trial(job_dir, *trial_flags):
  """Runs one trial with the platform's flags; its metrics.json, its
  printed metrics line and its evaluations."""
  result = cli('--mode=trial', f'--job-dir={job_dir}', *trial_flags,
               check=True)
  trial_dir = job_dir / 'trials' / '1'
  evaluations_file = trial_dir / 'evaluations.jsonl'
  lines = (evaluations_file.read_text().splitlines()
           if evaluations_file.exists() else [])
  evaluations = [json.loads(line) for line in lines]
  return (json.loads((trial_dir / 'metrics.json').read_text()),
          json.loads(result.stdout.strip().splitlines()[-1]), evaluations)


def test_platform_flags_and_configs_train_and_report(tmp_path):
  (tmp_path / 'spinenet.yaml').write_text(SPINENET_YAML)
  (tmp_path / 'classification.yaml').write_text(PLATFORM_CLASSIFICATION_YAML)
  classification_flags = (
      '--model=classification', '--search_space=mnasnet',
      f'--nas_params_str={_smallest_mnasnet()}',
      f'--config_file={tmp_path / "classification.yaml"}')
  with futures.ThreadPoolExecutor(3) as pool:
    detection = pool.submit(
        _trial, tmp_path / 'detection', '--model=retinanet',
        '--search_space=spinenet', f'--nas_params_str={_spinenet_sample()}',
        f'--config_file={tmp_path / "spinenet.yaml"}')
    classification = pool.submit(
        _trial, tmp_path / 'classification', *classification_flags,
        '--job_mode=train', '--multiple_eval_during_search=true')
    training_only = pool.submit(
        _trial, tmp_path / 'training_only', *classification_flags,
        '--skip_eval=true')
    detection, classification, training_only = (
        detection.result(), classification.result(), training_only.result())

  metrics, printed, _ = detection
  assert printed['AP'] == metrics['AP'] and 0.0 <= metrics['AP'] <= 1.0
  assert (metrics['train_steps'], metrics['evaluated_step']) == (1, 1)
  # The platform's keys reached the trial's config.
  params_yaml = (tmp_path / 'detection' / 'trials' / '1' /
                 'params.yaml').read_text()
  assert 'model_id: 49S' in params_yaml
  assert 'filter_size_scale: 0.2' in params_yaml

  metrics, printed, evaluations = classification
  assert printed['top_1_accuracy'] == metrics['top_1_accuracy']
  assert 0.0 <= metrics['top_1_accuracy'] <= 1.0
  assert metrics['params'] > 0 and metrics['multi_add_flops_billion'] > 0
  # --job_mode=train --multiple_eval_during_search: an evaluation every
  # validation_interval, the best reported and its checkpoint kept.
  assert [e['step'] for e in evaluations] == [1, 2]
  best = max(evaluations, key=lambda e: e['top_1_accuracy'])
  assert (metrics['top_1_accuracy'], metrics['evaluated_step']) == (
      best['top_1_accuracy'], best['step'])
  assert (tmp_path / 'classification' / 'trials' / '1' / 'best_ckpt').is_dir()

  # --skip_eval: trained, reported without an evaluation.
  metrics, printed, evaluations = training_only
  assert printed == {k: v for k, v in metrics.items() if k != 'evaluations'}
  assert (metrics['train_steps'], metrics['evaluated_step'], evaluations) == (
      2, None, [])
  assert 'top_1_accuracy' not in metrics
  assert (tmp_path / 'training_only' / 'trials' / '1' / 'ckpt-2.index').exists()


def test_a_platform_flag_contradicting_ours_is_a_one_line_error(tmp_path):
  result = cli('--mode=trial', f'--job-dir={tmp_path}', '--job_dir=/elsewhere',
               '--search_space=mnasnet')
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      f'nas-garden: error: --job-dir={tmp_path} means --job_dir={tmp_path}, '
      'but --job_dir=/elsewhere was given')
