"""Inside a trial: the --distribution_strategy and --mixed_precision flags
reach Model Garden's runtime config and the trial trains under them."""

import os

import yaml

from trainer.controller import store as store_lib


def test_mirrored_trial_over_two_logical_cpus_in_mixed_precision(
    measured_search):
  job_dir, _ = measured_search  # --distribution_strategy=mirrored, ...
  [trial] = store_lib.Store.open(job_dir, read_only=True).trials('search')
  assert trial.status == 'completed'
  assert trial.metrics['replicas'] == 2  # The global batch split over 2.
  assert trial.metrics['compute_dtype'] == 'bfloat16'  # No GPU here.
  assert 0 < trial.metrics['top_1_accuracy'] <= 1
  with open(os.path.join(job_dir, 'trials', '1', 'params.yaml')) as f:
    runtime = yaml.load(f, Loader=yaml.FullLoader)['runtime']  # Has tuples.
  assert runtime['distribution_strategy'] == 'mirrored'
  assert runtime['mixed_precision_dtype'] == 'bfloat16'
