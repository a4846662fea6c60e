"""Job paths as URLs: the file helpers on local paths and ram://, and a store
whose job dir is a URL (kept in a local store dir, uploaded, downloaded)."""

import os
import sqlite3

import pytest
import tensorflow as tf

from trainer import fileio
from trainer.controller import store as store_lib


@pytest.fixture(params=['local', 'ram'])
def root(request, tmp_path):
  if request.param == 'local':
    return str(tmp_path / 'root')
  return f'ram://fileio-{os.getpid()}-{request.node.originalname}'


def test_files_write_read_append_copy_and_remove(root):
  fileio.makedirs(os.path.join(root, 'a'))
  path = os.path.join(root, 'a', 'f.txt')
  fileio.write_text(path, 'one\n')
  fileio.append_text(path, 'two\n')
  assert fileio.read_text(path) == 'one\ntwo\n'
  fileio.write_text(path, b'\x00bytes')  # Replaces, whole.
  assert fileio.read_bytes(path) == b'\x00bytes'
  fileio.copy(path, os.path.join(root, 'a', 'g.txt'))
  assert fileio.listdir(os.path.join(root, 'a')) == ['f.txt', 'g.txt']
  assert fileio.glob(os.path.join(root, 'a', '*.txt')) == [
      os.path.join(root, 'a', 'f.txt'), os.path.join(root, 'a', 'g.txt')]
  assert fileio.isfile(path) and not fileio.isfile(os.path.join(root, 'a'))
  fileio.remove(path)
  fileio.remove(path)  # Nothing there: no error.
  assert not fileio.exists(path)
  fileio.remove(root)
  assert not fileio.exists(root)


def test_replace_dir_swaps_in_a_whole_folder(root):
  staged, target = os.path.join(root, 'new'), os.path.join(root, 'out')
  fileio.makedirs(os.path.join(target, 'old_only'))
  fileio.makedirs(os.path.join(staged, 'sub'))
  fileio.write_text(os.path.join(staged, 'sub', 'x'), 'x')
  fileio.replace_dir(staged, target)
  assert fileio.listdir(target) == ['sub']
  assert fileio.read_text(os.path.join(target, 'sub', 'x')) == 'x'
  assert not fileio.exists(staged)


def test_absolute_keeps_urls():
  assert fileio.absolute('gs://b/x') == 'gs://b/x'
  assert fileio.absolute('rel') == os.path.join(os.getcwd(), 'rel')


def test_url_job_store_is_local_uploaded_and_downloaded(tmp_path,
                                                        monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  job_dir = f'file://{tmp_path}/bucket/job'
  store = store_lib.Store.open(job_dir, create=True)
  trial = store.add_trial('search', '{"a": "0/2 (1)"}')
  store.finish_trial('search', trial.id, store_lib.COMPLETED, {'acc': 0.5},
                     reward=0.5)
  local = store_lib.store_path(job_dir)
  assert local.startswith(str(tmp_path / 'cache' / 'nas-garden' / 'stores'))
  assert not os.path.exists(tmp_path / 'cwd')
  # The job dir's copy is a plain (rollback-journal) SQLite file, as of the
  # last change, readable with nothing beside it.
  uploaded = tmp_path / 'bucket' / 'job' / 'nas_garden.db'
  with sqlite3.connect(f'file:{uploaded}?mode=ro', uri=True) as db:
    assert db.execute('PRAGMA journal_mode').fetchone()[0] == 'delete'
    assert db.execute('SELECT status, reward FROM trials').fetchall() == [
        ('completed', 0.5)]
  store.close()
  # Another machine: a fresh store dir gets the job dir's copy.
  store_lib.use_store_dir(job_dir, str(tmp_path / 'fresh'))
  try:
    read = store_lib.Store.open(job_dir, read_only=True)
    assert [t.reward for t in read.trials('search')] == [0.5]
    assert os.listdir(tmp_path / 'fresh') == ['nas_garden.db']
  finally:
    store_lib._STORE_DIRS.clear()  # pylint: disable=protected-access


def test_store_dir_is_for_url_job_dirs_only(tmp_path):
  with pytest.raises(store_lib.StoreError, match='for URL job dirs'):
    store_lib.use_store_dir(str(tmp_path), str(tmp_path / 's'))


def test_no_store_anywhere_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  job_dir = f'file://{tmp_path}/nothing'
  assert not store_lib.exists(job_dir)
  with pytest.raises(store_lib.StoreError, match='no nas-garden job'):
    store_lib.Store.open(job_dir, read_only=True)
  assert not tf.io.gfile.exists(job_dir)
