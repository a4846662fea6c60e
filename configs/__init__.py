"""Model Garden-style experiment YAMLs shipped with nas-garden.

Names read `<space>_<task>_<stage>_<hardware>.yaml`; `--config_file` takes
such a bare name or any path.
"""

import os

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))


def resolve(name_or_path: str) -> str:
  """The file a `--config_file` value means: a path, or a shipped config name."""
  if os.path.exists(name_or_path):
    return os.path.abspath(name_or_path)
  shipped = os.path.join(CONFIG_DIR, os.path.basename(name_or_path))
  for candidate in (shipped, shipped + '.yaml'):
    if os.path.isfile(candidate):
      return candidate
  return name_or_path  # Missing: the config loader reports it.


def shipped() -> list:
  return sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith('.yaml'))
