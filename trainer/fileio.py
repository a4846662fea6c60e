"""Reading and writing job paths that may be URLs (gs://, file://, ram://).

Every path of a job dir goes through here. A local path uses the os module
(atomic renames after fsync, no TensorFlow); a URL uses tf.io.gfile, imported
only when a URL is used, so the controller of a local job stays
TensorFlow-free and fast to start.
"""

import glob as glob_lib
import os
import shutil
from typing import List, Union


def is_url(path: str) -> bool:
  """A URL (`scheme://...`): written through tf.io.gfile, counted remote."""
  return '://' in path


def absolute(path: str) -> str:
  """A local path made absolute; a URL unchanged."""
  return path if is_url(path) else os.path.abspath(path)


def user_cache(*parts: str) -> str:
  """A folder under this user's cache (`$XDG_CACHE_HOME/nas-garden`, default
  `~/.cache/nas-garden`)."""
  root = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
  return os.path.join(root, 'nas-garden', *parts)


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def exists(path: str) -> bool:
  return _gfile().exists(path) if is_url(path) else os.path.exists(path)


def isdir(path: str) -> bool:
  return _gfile().isdir(path) if is_url(path) else os.path.isdir(path)


def isfile(path: str) -> bool:
  return exists(path) and not isdir(path)


def makedirs(path: str) -> None:
  if is_url(path):
    _gfile().makedirs(path)
  else:
    os.makedirs(path, exist_ok=True)


def listdir(path: str) -> List[str]:
  names = _gfile().listdir(path) if is_url(path) else os.listdir(path)
  return sorted(n.rstrip('/') for n in names)


def glob(pattern: str) -> List[str]:
  return sorted(_gfile().glob(pattern) if is_url(pattern)
                else glob_lib.glob(pattern))


def remove(path: str) -> None:
  """Removes a file or a whole tree; nothing if it is not there."""
  if is_url(path):
    if _gfile().isdir(path):
      _gfile().rmtree(path)
    elif _gfile().exists(path):
      _gfile().remove(path)
  elif os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path)
  elif os.path.lexists(path):
    os.remove(path)


def read_bytes(path: str) -> bytes:
  if is_url(path):
    with _gfile().GFile(path, 'rb') as f:
      return f.read()
  with open(path, 'rb') as f:
    return f.read()


def read_text(path: str) -> str:
  return read_bytes(path).decode('utf-8')


def write_text(path: str, text: Union[str, bytes]) -> None:
  """Writes a file atomically where the file system can: readers see the
  old content or the new, whole (a temporary file renamed over it)."""
  data = text.encode('utf-8') if isinstance(text, str) else text
  tmp = f'{path}.tmp.{os.getpid()}'
  if is_url(path):
    with _gfile().GFile(tmp, 'wb') as f:
      f.write(data)
    _gfile().rename(tmp, path, overwrite=True)
    return
  with open(tmp, 'wb') as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def append_text(path: str, text: str) -> None:
  """Appends to a local file; rewrites a URL's object (object stores cannot
  append), so keep what is appended to URLs small."""
  if not is_url(path):
    with open(path, 'a', encoding='utf-8') as f:
      f.write(text)
    return
  old = read_text(path) if _gfile().exists(path) else ''
  write_text(path, old + text)


def copy(source: str, destination: str) -> None:
  """Copies one file, replacing the destination atomically where it can."""
  if not (is_url(source) or is_url(destination)):
    tmp = f'{destination}.tmp.{os.getpid()}'
    shutil.copyfile(source, tmp)
    os.replace(tmp, destination)
    return
  tmp = f'{destination}.tmp.{os.getpid()}'
  _gfile().copy(source, tmp, overwrite=True)
  _gfile().rename(tmp, destination, overwrite=True)


def copytree(source: str, destination: str) -> None:
  """Copies a folder's files (recursively) into `destination`."""
  makedirs(destination)
  for name in listdir(source):
    path = os.path.join(source, name)
    if isdir(path):
      copytree(path, os.path.join(destination, name))
    else:
      copy(path, os.path.join(destination, name))


def replace_dir(staged: str, path: str) -> None:
  """Puts the fully written folder `staged` at `path`. Locally an
  interrupted swap leaves the old folder, the new one or none, never a
  partial one; object stores cannot rename folders, so a URL's is copied
  over and the staged one removed."""
  if is_url(path):
    remove(path)
    copytree(staged, path)
    remove(staged)
    return
  retired = path + '.old'
  remove(retired)
  if os.path.exists(path):
    os.replace(path, retired)
  os.replace(staged, path)
  remove(retired)
