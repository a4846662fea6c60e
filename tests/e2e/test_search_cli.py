"""Search controller end to end: real searches through the CLI (its
resume after SIGKILL is in test_faults.py)."""

import os

import pytest

import search_spaces
from tests.conftest import cli, search_flags
from trainer.controller import store as store_lib

def test_search_runs_trials_and_reports(search_job):
  job_dir, stdout = search_job
  store = store_lib.Store.open(job_dir, read_only=True)
  trials = store.trials('search')
  assert [t.id for t in trials] == [1, 2, 3]
  assert all(t.status == 'completed' for t in trials)
  space = search_spaces.get_search_space('mnasnet')
  for t in trials:
    search_spaces.dna_from_nas_params(space, t.nas_params_str)  # Parses.
    acc, flops = t.metrics['top_1_accuracy'], t.metrics['multi_add_flops_billion']
    # Hard MnasNet reward against the 0.0008 B target.
    assert t.reward == pytest.approx(acc * min(1.0, 0.0008 / flops))
    assert os.path.exists(os.path.join(job_dir, 'trials', str(t.id), 'metrics.json'))
  assert len({t.nas_params_str for t in trials}) == 3
  assert trials[1].created_at < trials[0].finished_at  # Two at a time.
  best = max(trials, key=lambda t: t.reward)
  for t in trials:
    assert f'trial {t.id:>3}/3 running' in stdout
  assert f'best trial: {best.id}' in stdout
  assert best.nas_params_str in stdout

  listed = cli('--mode=list', f'--job_dir={job_dir}', check=True).stdout
  assert f'best trial: {best.id}' in listed
  assert 'trials: 3 completed' in listed
  header, *rows = listed.splitlines()[:4]
  assert header.split()[6] == 'device'
  assert [row.split()[6] for row in rows] == ['CPU'] * 3  # Where each trained.


def test_rerun_of_finished_search_adds_nothing(search_job):
  job_dir, _ = search_job
  before = store_lib.Store.open(job_dir, read_only=True).trials('search')
  cli(*search_flags(job_dir, 3, '--target_flops_multi_adds_billion=0.0008'),
      check=True)
  assert store_lib.Store.open(job_dir, read_only=True).trials('search') == before


