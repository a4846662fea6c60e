"""--mode=design_space end to end: the real CLI samples and trains AnyNetX
and RegNetX architectures (tiny proxy), is SIGKILLed mid-run, resumes to
completion, and writes design_space.json/.png; bad input changes nothing."""

import json
import os
import time

import pytest

from tests.conftest import cli, job_dir_snapshot, kill_cli_when
from tests.e2e.test_every_space import PAPER_OVERRIDE
from trainer import artifacts
from trainer import design_space
from trainer.controller import store as store_lib
from trainer.modes import design_space as mode

SPACES = ('anynet_x', 'regnet_x')
# Seeds whose samples have the fewest blocks (graph building dominates a
# tiny trial) among seeds 0-1499 with widths at most 512 (one sample per
# space: 9 and 13 blocks) or 768 (two: 27 + 33 and 10 + 6 blocks).
SEED_ONE, SEED_TWO = 633, 1045
TRAINING = 'train | step'  # In a trial's log once it trains.


def _flags(job_dir, samples, seed, spaces=','.join(SPACES)):
  return ('--mode=design_space', f'--job_dir={job_dir}',
          f'--design_spaces={spaces}', f'--design_space_samples={samples}',
          f'--seed={seed}', f'--params_override={PAPER_OVERRIDE}',
          '--max_failed_trials=0')


def _trials(job_dir):
  """Every design-space trial: (stage, id) -> the stored trial."""
  store = store_lib.Store.open(str(job_dir), read_only=True)
  try:
    return {(stage, t.id): t for stage in map(artifacts.design_space_stage,
                                              SPACES)
            for t in store.trials(stage)}
  finally:
    store.close()


def _log(job_dir, space, trial_id):
  return os.path.join(artifacts.trial_dir(
      str(job_dir), artifacts.design_space_stage(space), trial_id),
                      artifacts.LOG_FILE)


def _check_finished(job_dir, samples, seed, before_kill, stdout):
  """Exact counts, the seeded samples in order, the trials finished before
  the kill unchanged, and the analysis written."""
  after = _trials(job_dir)
  for space in SPACES:
    stage = artifacts.design_space_stage(space)
    ids = sorted(i for s, i in after if s == stage)
    assert ids == list(range(1, samples + 1)), (space, ids)
    assert [after[(stage, i)].nas_params_str for i in ids] == mode.sample(
        space, samples, seed)
  assert all(t.status == 'completed' for t in after.values()), {
      k: t.error for k, t in after.items()}
  kept = {k: t for k, t in before_kill.items() if t.status != 'running'}
  assert kept and all(after[k] == t for k, t in kept.items())
  with open(os.path.join(job_dir, design_space.RESULT_FILE)) as f:
    result = json.load(f)
  assert [s['name'] for s in result['spaces']] == list(SPACES)
  for space in result['spaces']:
    assert (space['n'], space['trials'], space['failed']) == (
        samples, samples, 0)
    assert space['edf']['fraction'][-1] == 1.0
    assert len(space['edf']['error']) == samples
    assert space['flops']['n'] == samples and space['flops']['min'] > 0
    assert space['params']['n'] == samples and space['params']['min'] > 0
    assert 'median' in space['width_fit']  # AnyNet/RegNet: staged widths.
  [ks] = result['ks']
  assert (ks['a'], ks['b']) == SPACES and 0 <= ks['statistic'] <= 1
  errors = [s['edf']['error'] for s in result['spaces']]
  assert ks['statistic'] == pytest.approx(design_space.ks_statistic(*errors))
  with open(os.path.join(job_dir, design_space.PLOT_FILE), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert 'design space 2/2: regnet_x' in stdout
  assert f'KS {SPACES[0]} vs {SPACES[1]}: ' in stdout


def test_design_space_killed_and_resumed(tmp_path):
  """One sample per space: killed while RegNetX's trial trains (AnyNetX's
  finished), rerun: AnyNetX's trial kept, RegNetX's retrained, once."""
  job_dir = tmp_path / 'job'
  flags = _flags(job_dir, 1, SEED_ONE)
  started = time.time()
  kill_cli_when(flags, _log(job_dir, 'regnet_x', 1), TRAINING, tmp_path)
  before = _trials(job_dir)
  assert before[(artifacts.design_space_stage('anynet_x'), 1)].status == (
      'completed')
  assert before[(artifacts.design_space_stage('regnet_x'), 1)].status == (
      'running')
  assert not os.path.exists(job_dir / design_space.RESULT_FILE)
  result = cli(*flags)
  assert result.returncode == 0, result.stderr[-3000:]
  _check_finished(job_dir, 1, SEED_ONE, before, result.stdout)
  print(f'design space kill and resume: {time.time() - started:.0f} s')

  # Bad input on the finished job: one line, non-zero, nothing changed.
  before_bad = job_dir_snapshot(job_dir)
  for extra, expected in (
      (('--design_spaces=anynet_x',), 'two or more spaces'),
      (('--design_spaces=anynet_x,no_such_space',), 'unknown search space'),
      (('--design_space_samples=0',), 'at least one')):
    bad = cli(*flags, *extra)
    assert bad.returncode != 0
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith('nas-garden: error: ') and expected in last, (
        bad.stderr[-2000:])
    assert 'Traceback' not in bad.stderr
  assert job_dir_snapshot(job_dir) == before_bad


def test_design_space_bad_input_creates_no_job_dir(tmp_path):
  job_dir = tmp_path / 'new_job'
  for extra in (('--design_spaces=regnet_x',),
                ('--design_spaces=regnet_x,nope:space',),
                ('--design_space_samples=-1',)):
    result = cli(*_flags(job_dir, 2, 0), *extra)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(
        'nas-garden: error: ')
    assert not job_dir.exists()


@pytest.mark.slow
def test_design_space_two_samples_killed_in_the_first_space(tmp_path):
  """Two samples per space, killed while AnyNetX's second trial trains;
  rerun to completion, then rerun again: nothing retrained or changed."""
  job_dir = tmp_path / 'job'
  flags = _flags(job_dir, 2, SEED_TWO)
  kill_cli_when(flags, _log(job_dir, 'anynet_x', 2), TRAINING, tmp_path)
  before = _trials(job_dir)
  assert [t.status for t in before.values()] == ['completed', 'running']
  result = cli(*flags)
  assert result.returncode == 0, result.stderr[-3000:]
  _check_finished(job_dir, 2, SEED_TWO, before, result.stdout)
  finished = _trials(job_dir)
  again = cli(*flags)
  assert again.returncode == 0, again.stderr[-3000:]
  assert _trials(job_dir) == finished
