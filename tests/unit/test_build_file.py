"""BUILD names every Python file of the tree once, and names no missing file."""

import glob
import os
import re

from tests.conftest import REPO

SOURCE_GLOBS = ('*.py', 'trainer/**/*.py', 'proxy_tasks/**/*.py',
                'augment/**/*.py', 'configs/*.py', 'bench/*.py', 'tests/**/*.py')


def _build_sources():
  with open(os.path.join(REPO, 'BUILD')) as f:
    text = f.read()
  sources = []
  for block in re.findall(r'srcs = \[(.*?)\]', text, re.DOTALL):
    sources += re.findall(r'"([^"]+)"', block)
  return text, sources


def test_every_python_file_has_exactly_one_target():
  _, sources = _build_sources()
  tree = {os.path.relpath(p, REPO) for g in SOURCE_GLOBS
          for p in glob.glob(os.path.join(REPO, g), recursive=True)}
  tree = {p for p in tree if not p.startswith('setup')}
  assert sorted(set(tree) - set(sources)) == [], 'files without a BUILD target'
  assert sorted(set(sources) - set(tree)) == [], 'BUILD names missing files'
  duplicates = {s for s in sources if sources.count(s) > 1}
  assert not duplicates


def test_every_test_file_is_a_py_test():
  text, _ = _build_sources()
  tests = {os.path.relpath(p, REPO)
           for p in glob.glob(os.path.join(REPO, 'tests', '**', 'test_*.py'),
                                 recursive=True)}
  in_py_test = set(re.findall(r'py_test\(\s*name = "[^"]+",(?:\s*size = "\w+",)?\s*srcs = \["([^"]+)"\]', text))
  assert tests == in_py_test
