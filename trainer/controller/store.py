"""The job's SQLite store: every trial of every stage, and the job's identity.

Each change is one transaction (WAL journal, synchronous=FULL), so a process
killed at any instant leaves the store as it was before or after the change,
never between. Trial ids are contiguous per stage, starting at 1.

SQLite needs a local file system: a job dir given as a URL (gs://, file://)
keeps its store in a local store dir (`--store_dir`, default under the
user's cache dir, keyed by the URL) and a copy of it in the job dir, uploaded
after every change and downloaded where no local store exists (another
machine, a fresh store dir).
"""

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import time
from typing import Any, Dict, Iterator, List, NamedTuple, Optional

from trainer import fileio

# Trial statuses are the outcome module's; re-exported for the store's readers.
from trainer.outcome import COMPLETED, FAILED, INFEASIBLE, RUNNING, STOPPED  # pylint: disable=unused-import
from trainer.outcome import FINISHED as FINISHED_STATES

SCHEMA_VERSION = 1
STORE_FILE = 'nas_garden.db'

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
  stage TEXT NOT NULL,
  id INTEGER NOT NULL,
  nas_params_str TEXT NOT NULL,
  status TEXT NOT NULL,
  metrics TEXT,
  reward REAL,
  error TEXT,
  proposed_after INTEGER NOT NULL,
  feedback_seq INTEGER,
  attempts INTEGER NOT NULL DEFAULT 1,
  created_at REAL NOT NULL,
  finished_at REAL,
  PRIMARY KEY (stage, id)
);
"""


class StoreError(RuntimeError):
  """The job dir's store cannot be used as asked."""


class Trial(NamedTuple):
  stage: str
  id: int
  nas_params_str: str
  status: str
  metrics: Optional[Dict[str, Any]]
  reward: Optional[float]
  error: Optional[str]
  proposed_after: int
  feedback_seq: Optional[int]
  attempts: int
  created_at: float
  finished_at: Optional[float]


# Store dirs given with --store_dir, by job dir URL.
_STORE_DIRS: Dict[str, str] = {}


def use_store_dir(job_dir: str, store_dir: str) -> None:
  """Keeps the store of the URL job dir `job_dir` in the local `store_dir`."""
  if not fileio.is_url(job_dir):
    raise StoreError(f'--store_dir is for URL job dirs; the store of '
                     f'{job_dir} is in it')
  _STORE_DIRS[job_dir] = os.path.abspath(store_dir)


def location(job_dir: str) -> str:
  """The local folder of a job's store: the job dir itself, or for a URL
  its store dir."""
  if not fileio.is_url(job_dir):
    return job_dir
  if job_dir in _STORE_DIRS:
    return _STORE_DIRS[job_dir]
  name = re.sub(r'[^A-Za-z0-9._-]+', '_', job_dir)[-60:].strip('_')
  digest = hashlib.sha256(job_dir.encode()).hexdigest()[:12]
  return fileio.user_cache('stores', f'{name}-{digest}')


def store_path(job_dir: str) -> str:
  """The local store file of a job."""
  return os.path.join(location(job_dir), STORE_FILE)


def exists(job_dir: str) -> bool:
  """Whether the job has a store: locally, or uploaded to its URL."""
  return os.path.exists(store_path(job_dir)) or (
      fileio.is_url(job_dir) and
      fileio.exists(os.path.join(job_dir, STORE_FILE)))


def make_job_dir(job_dir: str) -> None:
  try:
    fileio.makedirs(job_dir)
    os.makedirs(location(job_dir), exist_ok=True)
  except OSError as e:
    raise StoreError(f'cannot create job dir {job_dir}: {e.strerror}') from e
  except Exception as e:  # pylint: disable=broad-except  (tf.errors on URLs)
    raise StoreError(f'cannot create job dir {job_dir}: '
                     f'{" ".join(str(e).split())}') from e


def check_writable(job_dir: str) -> None:
  """A job dir, or the nearest existing folder above a new one, must be
  writable (a read-only mount fails this even for root). A URL's store dir
  is checked; the URL itself is tried when first written."""
  existing = location(job_dir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise StoreError(f'cannot create job dir {job_dir}: {existing} is not a '
                     'directory')
  if not os.access(existing, os.W_OK):
    raise StoreError(f'job dir {job_dir} is not writable' if existing ==
                     job_dir else f'cannot create job dir {job_dir}: '
                     f'{existing} is not writable')


class Store:
  """A job's trials. Open with `Store.open(job_dir, create=...)`."""

  def __init__(self, connection: sqlite3.Connection,
               upload_to: Optional[str] = None):
    self._db, self._upload_to = connection, upload_to

  @classmethod
  def open(cls, job_dir: str, create: bool = False,
           read_only: bool = False, untouched: bool = False) -> 'Store':
    """Opens (or with `create`, makes) the store of a job dir.

    Nothing is written to a store until it is known to be one this version
    can use (not a newer schema, not another file).
    """
    path = store_path(job_dir)
    uploaded = (os.path.join(job_dir, STORE_FILE) if fileio.is_url(job_dir)
                else None)
    if uploaded and not os.path.exists(path) and fileio.exists(uploaded):
      os.makedirs(location(job_dir), exist_ok=True)
      fileio.copy(uploaded, path)
    if not os.path.exists(path):
      if not create:
        raise StoreError(f'no nas-garden job in {job_dir} (missing {STORE_FILE})')
      make_job_dir(job_dir)
    if not read_only:
      check_writable(job_dir)
    try:
      # `untouched` (with read_only): the file read as it is, no -wal/-shm
      # made beside it; for a check before anything is written, as it
      # misses what a live writer has only in its WAL.
      uri = f'file:{path}?mode=ro' + ('&immutable=1' if untouched else '')
      db = sqlite3.connect(uri if read_only else path, uri=read_only,
                           isolation_level=None, timeout=30)
      store = cls(db, None if read_only else uploaded)
      version = store._schema_version()
      if version is not None and version > SCHEMA_VERSION:
        db.close()
        raise StoreError(
            f'{path} was written by a newer nas-garden (store schema '
            f'{version} > {SCHEMA_VERSION}); upgrade nas-garden to use it')
      if read_only and not untouched and version is None:  # Killed at birth.
        db.close()
        raise StoreError(f'no nas-garden job in {job_dir} yet (its store '
                         f'{STORE_FILE} holds no schema)')
      if not read_only:
        db.execute('PRAGMA journal_mode=WAL')
        db.execute('PRAGMA synchronous=FULL')
        with store._transaction():
          for statement in _SCHEMA.split(';'):
            if statement.strip():
              db.execute(statement)
          if version is None:
            db.execute('INSERT INTO meta VALUES (?, ?)',
                       ('schema_version', str(SCHEMA_VERSION)))
    except sqlite3.DatabaseError as e:
      raise StoreError(f'{path} is not a usable nas-garden store: {e}') from e
    return store

  def _schema_version(self) -> Optional[int]:
    """The store's schema version; None for a new, empty database."""
    has_meta = self._db.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
    value = self._meta_value('schema_version') if has_meta else None
    return int(value) if value is not None else None

  def close(self) -> None:
    self._db.close()

  @contextlib.contextmanager
  def _transaction(self) -> Iterator[None]:
    self._db.execute('BEGIN IMMEDIATE')
    try:
      yield
    except BaseException:
      self._db.execute('ROLLBACK')
      raise
    self._db.execute('COMMIT')
    if self._upload_to:
      self._upload()

  def _upload(self) -> None:
    """Copies the store, as of now, to its URL job dir: a consistent
    snapshot in rollback-journal mode, so a reader needs only that file."""
    local = self._db.execute('PRAGMA database_list').fetchone()[2]
    snapshot = f'{local}.upload'
    copy = sqlite3.connect(snapshot)
    try:
      self._db.backup(copy)
      copy.execute('PRAGMA journal_mode=DELETE')
    finally:
      copy.close()
    fileio.copy(snapshot, self._upload_to)
    os.remove(snapshot)

  def _meta_value(self, key: str) -> Optional[str]:
    row = self._db.execute('SELECT value FROM meta WHERE key=?', (key,)).fetchone()
    return row[0] if row else None

  def job_identity(self, stage: str) -> Optional[Dict[str, Any]]:
    if self._schema_version() is None:  # Killed before its schema was made.
      return None
    value = self._meta_value(f'identity:{stage}')
    return json.loads(value) if value else None

  def claim_identity(self, stage: str, identity: Dict[str, Any]) -> None:
    """Records what a stage searches; refuses a different one on resume."""
    with self._transaction():
      if not self.check_identity(stage, identity):
        self._db.execute('INSERT INTO meta VALUES (?, ?)',
                         (f'identity:{stage}', json.dumps(identity, sort_keys=True)))

  def check_identity(self, stage: str, identity: Dict[str, Any]) -> bool:
    """Whether the stage was started; raises if with a different identity.

    `identity` holds what must not change between runs of a stage (space,
    algorithm, seed, resolved config); a mismatch names the first difference.
    """
    stored = self.job_identity(stage)
    if stored is None:
      return False
    for key in sorted(set(stored) | set(identity)):
      if stored.get(key) != identity.get(key):
        raise StoreError(
            f'this job dir\'s {stage} stage was started with a different '
            f'{key} ({_short(stored.get(key))} vs {_short(identity.get(key))}); '
            'resume with the same flags or use a new --job_dir')
    return True

  def trials(self, stage: str) -> List[Trial]:
    rows = self._db.execute(
        'SELECT * FROM trials WHERE stage=? ORDER BY id', (stage,)).fetchall()
    return [_trial(r) for r in rows]

  def num_feedbacks(self, stage: str) -> int:
    return self._db.execute(
        'SELECT COUNT(feedback_seq) FROM trials WHERE stage=?', (stage,)).fetchone()[0]

  def add_trial(self, stage: str, nas_params_str: str) -> Trial:
    """Appends a running trial with the next id."""
    with self._transaction():
      next_id = self._db.execute(
          'SELECT COALESCE(MAX(id), 0) + 1 FROM trials WHERE stage=?',
          (stage,)).fetchone()[0]
      self._db.execute(
          'INSERT INTO trials (stage, id, nas_params_str, status, proposed_after,'
          ' created_at) VALUES (?, ?, ?, ?, ?, ?)',
          (stage, next_id, nas_params_str, RUNNING, self.num_feedbacks(stage),
           time.time()))
    return self.trial(stage, next_id)

  def trial(self, stage: str, trial_id: int) -> Trial:
    row = self._db.execute('SELECT * FROM trials WHERE stage=? AND id=?',
                           (stage, trial_id)).fetchone()
    if row is None:
      raise StoreError(f'no {stage} trial {trial_id} in this job')
    return _trial(row)

  def restart_trial(self, stage: str, trial_id: int) -> None:
    """Counts another attempt of a trial that was in flight when a run died."""
    with self._transaction():
      self._db.execute('UPDATE trials SET attempts = attempts + 1 '
                       'WHERE stage=? AND id=? AND status=?',
                       (stage, trial_id, RUNNING))

  def complete_trial(self, stage: str, trial_id: int, metrics: Dict[str, Any],
                     reward: float) -> None:
    self.finish_trial(stage, trial_id, COMPLETED, metrics, reward)

  def fail_trial(self, stage: str, trial_id: int, error: str,
                 metrics: Optional[Dict[str, Any]] = None) -> None:
    self.finish_trial(stage, trial_id, FAILED, metrics, error=error)

  def finish_trial(self, stage: str, trial_id: int, status: str,
                   metrics: Optional[Dict[str, Any]] = None,
                   reward: Optional[float] = None,
                   error: Optional[str] = None) -> None:
    """Ends a running trial; a reward gets the next feedback number."""
    if status not in FINISHED_STATES:
      raise ValueError(f'{status!r} is not a finished state')
    with self._transaction():
      feedback_seq = self.num_feedbacks(stage) if reward is not None else None
      updated = self._db.execute(
          'UPDATE trials SET status=?, metrics=?, reward=?, error=?, '
          'feedback_seq=?, finished_at=? WHERE stage=? AND id=? AND status=?',
          (status, json.dumps(metrics) if metrics is not None else None, reward,
           error, feedback_seq, time.time(), stage, trial_id, RUNNING)).rowcount
      if updated != 1:
        raise StoreError(f'{stage} trial {trial_id} is not running')


def _trial(row) -> Trial:
  values = list(row)
  values[4] = json.loads(values[4]) if values[4] else None
  return Trial(*values)


def _short(value: Any) -> str:
  text = json.dumps(value) if not isinstance(value, str) else value
  text = ' '.join(text.split())
  return text if len(text) <= 60 else text[:57] + '...'
