"""A trial process that trains nothing: it logs its start in the job dir,
waits a moment and reports a reward that is a fixed function of its
architecture. For killing a controller many times in one test
(tests/fault_controller.py).

  python -m tests.stand_in_trial TRIAL_DIR NAS_PARAMS_STR
"""

import json
import os
import random
import sys
import time

STARTS_LOG = 'trial_starts.log'  # In the job dir: one line per trial start.


def score(nas_params_str: str) -> float:
  """The share of the largest choice indices taken, over all decisions."""
  values = json.loads(nas_params_str).values()
  taken = [int(v.split('/')[0]) for v in values]
  largest = [int(v.split('/')[1].split()[0]) - 1 for v in values]
  return sum(taken) / sum(largest)


def main(trial_dir: str, nas_params_str: str) -> None:
  job_dir = os.path.dirname(os.path.dirname(trial_dir))
  with open(os.path.join(job_dir, STARTS_LOG), 'a') as f:
    f.write(os.path.basename(trial_dir) + '\n')
  time.sleep(random.uniform(0.05, 0.2))
  with open(os.path.join(trial_dir, 'metrics.json'), 'w') as f:
    json.dump({'top_1_accuracy': score(nas_params_str)}, f)


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2])
