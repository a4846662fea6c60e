"""--trial_memory_limit_mb's watchdog on plain Python trials that really
allocate memory: killed past the cap with every process they started, and
left alone under it."""

import os
import re
import time

import pytest

from trainer import artifacts
from trainer import outcome as outcome_lib
from trainer.controller import executors

LIMIT_MB = 200
# Grows by 16 MB every 20 ms, touching every byte, up to 1 GiB; then exits
# without metrics: a trial the cap misses ends as a crash, not out of memory.
GROW = '''
import time
chunks = []
for _ in range(64):
  chunks.append(b'\\1' * (16 << 20))
  time.sleep(0.02)
'''
# A small parent whose child does the growing: it writes its pid first, and
# lingers once grown, so that only a kill ends it soon.
GROW_IN_A_CHILD = f'''
import os, subprocess, sys
subprocess.run([sys.executable, '-c',
                'import os, sys; open(sys.argv[1], "w").write(str(os.getpid()));'
                + {GROW!r} + 'time.sleep(30)',
                os.path.join(sys.argv[1], 'child.pid')])
'''
FIT = '''
import json, os, sys
chunk = b'\\1' * (50 << 20)
with open(os.path.join(sys.argv[1], 'metrics.json'), 'w') as f:
  json.dump({'top_1_accuracy': 0.5}, f)
'''


def _measured_peak_mb(outcome):
  """The peak the killed trial's message reports; asserts its form."""
  assert (outcome.status, outcome.error.kind) == (
      outcome_lib.FAILED, outcome_lib.OOM)
  match = re.fullmatch(
      rf'out of memory: exceeded --trial_memory_limit_mb={LIMIT_MB} '
      r'\(measured peak (\d+) MB resident\)', outcome.error.message)
  assert match, outcome.error.message
  return int(match.group(1))


def _alive(pid):
  """Whether the process runs (a zombie, killed but not reaped, does not)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except FileNotFoundError:
    return False


def _ends_soon(pid):
  """Whether the process is gone within 5 s: a SIGKILLed process still
  frees its memory before it ends."""
  deadline = time.monotonic() + 5
  while _alive(pid):
    if time.monotonic() > deadline:
      return False
    time.sleep(0.05)
  return True


def test_a_trial_growing_past_the_cap_is_killed_as_out_of_memory(tmp_path):
  outcome = executors.LocalExecutor(memory_limit_mb=LIMIT_MB).run(
      ['-c', GROW], str(tmp_path))
  # Killed on its way up, well before the 1 GiB it would reach.
  assert LIMIT_MB < _measured_peak_mb(outcome) < 600


def test_memory_of_the_trials_child_processes_counts_and_they_are_killed(
    tmp_path):
  outcome = executors.LocalExecutor(memory_limit_mb=LIMIT_MB).run(
      ['-c', GROW_IN_A_CHILD, str(tmp_path)], str(tmp_path))
  assert _measured_peak_mb(outcome) > LIMIT_MB
  child = int((tmp_path / 'child.pid').read_text())
  assert _ends_soon(child)


def test_a_trial_under_the_cap_completes(tmp_path):
  outcome = executors.LocalExecutor(memory_limit_mb=LIMIT_MB).run(
      ['-c', FIT, str(tmp_path)], str(tmp_path))
  assert outcome == outcome_lib.completed({'top_1_accuracy': 0.5})
  assert os.path.exists(tmp_path / artifacts.LOG_FILE)


def test_a_ray_trial_is_capped_by_its_worker(tmp_path):
  ray = pytest.importorskip('ray')
  executor = executors.RayExecutor(memory_limit_mb=LIMIT_MB)
  try:
    handle = executor.start(['-c', GROW], str(tmp_path))
    outcome = handle.poll()
    while outcome is None:
      time.sleep(executors.POLL_S)
      outcome = handle.poll()
  finally:
    ray.shutdown()
  assert LIMIT_MB < _measured_peak_mb(outcome) < 600


def test_without_a_cap_the_same_trial_grows_to_its_end(tmp_path):
  outcome = executors.LocalExecutor().run(['-c', GROW], str(tmp_path))
  assert outcome == outcome_lib.failed(
      outcome_lib.CRASH, f'exited with code 0 (see {artifacts.LOG_FILE})')
