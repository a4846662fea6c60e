"""The terminal is for people: what TensorFlow and libraries print goes to a
log file.

TensorFlow's C++ runtime, and the absl C++ logging its TFLite converter
uses, write straight to file descriptor 2; absl's Python logging, Python
warnings and tracebacks write to sys.stderr, which is fd 2 as well. So
`HiddenLog` points fd 2 at a log file before TensorFlow loads and keeps a
copy of the terminal for the command's own error line (progress goes to
stdout, untouched). Child processes inherit fd 2, so a worker's output lands
in the same log; trial processes write their own trial.log.

The log starts as an unnamed temp file, because a refused command must leave
its job dir byte for byte (and a killed one leaves no file behind); `keep`
appends it to <job dir>/nas-garden.log.
"""

import os
import shlex
import shutil
import sys
import tempfile
import time
from typing import Optional

LOG_FILE = 'nas-garden.log'


class HiddenLog:
  """fd 2 pointed at an unnamed temp file from now on, dropped at exit
  unless kept; `console` is where stderr went before."""

  def __init__(self):
    sys.stderr.flush()
    self.console = os.fdopen(os.dup(2), 'w', buffering=1)
    self._file = tempfile.TemporaryFile()
    os.dup2(self._file.fileno(), 2)
    self._header = (f'== {time.strftime("%Y-%m-%d %H:%M:%S")} '
                    f'{shlex.join(["nas-garden", *sys.argv[1:]])}\n')

  def keep(self, folder: Optional[str]) -> str:
    """Appends the log, unless empty, to <folder>/nas-garden.log (to a new
    file in the temp dir where that cannot be written), where later stderr
    goes too; returns its path, '' for an empty log."""
    sys.stderr.flush()
    if not os.fstat(self._file.fileno()).st_size:
      return ''
    with self._open_kept(folder) as kept:
      kept.write(self._header.encode())
      self._file.seek(0)
      shutil.copyfileobj(self._file, kept)
      kept.flush()
      os.dup2(kept.fileno(), 2)
      return kept.name

  @staticmethod
  def _open_kept(folder: Optional[str]):
    if folder and os.path.isdir(folder):
      try:
        return open(os.path.join(folder, LOG_FILE), 'ab')
      except OSError:  # A read-only job dir.
        pass
    return tempfile.NamedTemporaryFile(prefix='nas-garden-', suffix='.log',
                                       delete=False)
