"""nas-garden command line: `python -m trainer.task --mode=...` (absl flags).

Modes:
  search           run (or resume) an architecture search in --job_dir
  train            full training of the --top_k (or named) search trials
  augment_search   run (or resume) an augmentation policy search for a fixed
                   architecture (--base_job_dir/--base_trial_id or
                   --base_search_space/--base_nas_params_str)
  augment_preview  draw augmented samples of a policy (--nas_params_str) as PNG
  pipeline         search, train, augmentation search, final model, export and
                   report in one resumable command
  export           the best (or a named) trial as SavedModel + TFLite
  report           report.html and TensorBoard HParams summaries of the job
  trial            run one trial from --nas_params_str, as a cloud training job
                   would; takes the Vertex AI NAS trainer's flags too
                   (trainer/platform_flags.py)
  list             print the leaderboard of a --stage of --job_dir
  make_data        convert a COCO JSON + image folder into Model Garden
                   TFRecords
  proxy_model_selection  shrink a sampled pool to a reference set spread over
                   accuracy and cost, training in rounds of growing budgets
  proxy_variance   train one model several times: variance and smoothness of
                   the proxy
  proxy_search     which candidate proxy ranks the reference set as full
                   training does (Kendall tau), and the cheapest that passes

Flags are defined in trainer/flags.py; each mode lives in trainer/modes/.
"""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Before TensorFlow loads.

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags

from trainer import flags as nas_flags
from trainer import outcome
from trainer import platform_flags
from trainer.controller import search
from trainer.controller import store as store_lib
from trainer.modes import proxy
from trainer.modes import stages
from trainer.modes import tools
from trainer.modes import trial

MODE_TABLE = {
    'search': stages.run_search,
    'train': stages.run_train,
    'augment_search': stages.run_augment_search,
    'pipeline': stages.run_pipeline,
    'trial': trial.run_trial,
    'augment_preview': tools.run_augment_preview,
    'export': tools.run_export,
    'report': tools.run_report,
    'list': tools.run_list,
    'make_data': tools.run_make_data,
    'proxy_model_selection': proxy.run_model_selection,
    'proxy_variance': proxy.run_variance,
    'proxy_search': proxy.run_proxy_search,
}
# Errors that are the user's to fix: one line on stderr and exit status 1.
USER_ERRORS = (ValueError, FileNotFoundError, store_lib.StoreError,
               search.SearchFailed)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    platform_flags.apply(flags.FLAGS)  # Vertex AI NAS's flags, as ours.
    args = nas_flags.Args.parsed(flags.FLAGS)
    MODE_TABLE[args.mode](args)
  except USER_ERRORS as e:
    print(f'nas-garden: error: {outcome.one_line(e)}', file=sys.stderr)
    sys.exit(1)


def run() -> None:
  """Console-script entry point (`nas-garden`)."""
  app.run(main)


if __name__ == '__main__':
  run()
