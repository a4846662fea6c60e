"""The --smoke flag every bench has: a seconds-long run of the real code path
(tests/e2e/test_bench_smoke.py runs each bench so), flags given explicitly
still winning over the smoke settings."""

import argparse
from typing import Any, Dict


def parse_args(parser: argparse.ArgumentParser,
               smoke: Dict[str, Any]) -> argparse.Namespace:
  parser.add_argument('--smoke', action='store_true',
                      help=f'seconds-long check that the bench runs: {smoke}')
  args = parser.parse_args()
  if args.smoke:
    parser.set_defaults(**smoke)
    args = parser.parse_args()
  return args
