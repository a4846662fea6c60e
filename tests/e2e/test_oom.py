"""Real out of memory: a search trial whose model cannot fit under
--trial_memory_limit_mb really exhausts it, is killed and recorded as out
of memory, and the search goes on to the next trial.

The search space is here: the trial processes import it from this module.
"""

import re

import pyglove as pg

import search_spaces
from tests.conftest import cli, search_flags
from trainer.controller import store as store_lib

LIMIT_MB = 1500
WIDE = 65536
SPACE = 'tests.e2e.test_oom:wide_or_narrow_mnasnet'


def wide_or_narrow_mnasnet():
  """MnasNet with a single decision, swept wide first by --algorithm=grid:
  its sixth block 65536 filters wide or its usual 160 (under 1 GB resident).
  The last block is 4096 wide, so the wide one's weights are a 3x3 kernel of
  22938 x 1434 channels (after the 0.35 filter scale), 1.2 GB of float32:
  the trial passes the cap while it builds the model (measured: peak 1758 MB
  within 5 s), not after minutes of training. Everything else is fixed."""
  space = search_spaces.mnasnet_search_space()
  for block, filters in zip(space.blocks, search_spaces.MNASNET_FILTERS):
    block.rebind(num_repeats=1, block_fn='conv', expand_ratio=1,
                 kernel_size=3, se_ratio=0.0, output_filters=filters)
  space.blocks[5].rebind(output_filters=pg.oneof([WIDE, 160]))
  space.blocks[6].rebind(output_filters=4096)
  return space


def test_a_trial_over_the_memory_limit_fails_as_out_of_memory_and_the_search_goes_on(
    tmp_path):
  job_dir = str(tmp_path / 'job')
  result = cli(*search_flags(job_dir, 2, f'--search_space={SPACE}',
                             '--algorithm=grid', '--max_failed_trials=2',
                             f'--trial_memory_limit_mb={LIMIT_MB}'),
               check=True)
  wide, narrow = store_lib.Store.open(job_dir, read_only=True).trials('search')
  assert (wide.id, wide.status, wide.reward) == (1, 'failed', None)
  assert f'{WIDE}' in wide.nas_params_str
  match = re.fullmatch(
      rf'out of memory: exceeded --trial_memory_limit_mb={LIMIT_MB} '
      r'\(measured peak (\d+) MB resident\)', wide.error)
  assert match, wide.error
  assert int(match.group(1)) > LIMIT_MB
  # The next trial ran after it, under the same cap, and completed.
  assert (narrow.id, narrow.status) == (2, 'completed')
  assert narrow.reward > 0 and narrow.created_at >= wide.finished_at
  assert 'trials: 1 completed, 1 failed' in result.stdout


def test_a_limit_that_is_not_positive_is_refused(tmp_path):
  job_dir = tmp_path / 'job'
  result = cli(*search_flags(str(job_dir), 2), '--trial_memory_limit_mb=0')
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      'nas-garden: error: --trial_memory_limit_mb=0: give a positive number '
      'of MB (or leave it out: no cap)')
  assert not job_dir.exists()
