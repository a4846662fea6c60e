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
  make_data        convert a COCO JSON + image folder, NIfTI image and
                   label folders, or a KITTI folder into TFRecords
  proxy_model_selection  shrink a sampled pool to a reference set spread over
                   accuracy and cost, training in rounds of growing budgets
  proxy_variance   train one model several times: variance and smoothness of
                   the proxy
  proxy_search     which candidate proxy ranks the reference set as full
                   training does (Kendall tau), and the cheapest that passes
  design_space     sample and train --design_space_samples models of each of
                   --design_spaces; error EDFs, KS statistics and the fitted
                   quantised linear widths in design_space.json/.png
  oneshot_search   TuNAS's weight-sharing search of mnasnet or
                   efficientnet_v2: a supernet trained once while a policy
                   learns the best path; its result is a search trial
  compound_scaling EfficientNet's compound scaling of a fixed architecture:
                   a grid of (α, β, γ) at φ=1 on the proxy, then the best's
                   φ=1..K models; compound_scaling.json/.png

Flags are defined in trainer/flags.py; each mode lives in trainer/modes/.
"""

import os
import sys
import traceback
from typing import Optional

from absl import app
from absl import flags

from trainer import fileio
from trainer import flags as nas_flags
from trainer import outcome
from trainer import platform_flags
from trainer import quiet
from trainer.controller import search
from trainer.controller import store as store_lib
from trainer.modes import compound_scaling
from trainer.modes import design_space
from trainer.modes import oneshot
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
    'compound_scaling': compound_scaling.run_compound_scaling,
    'design_space': design_space.run_design_space,
    'oneshot_search': oneshot.run_oneshot_search,
}
# Errors that are the user's to fix: one line on stderr and exit status 1.
USER_ERRORS = (ValueError, FileNotFoundError, store_lib.StoreError,
               search.SearchFailed)


def main(argv) -> None:
  """Runs the mode. Below --verbosity=1 what TensorFlow and libraries print
  goes to the job's nas-garden.log (quiet.HiddenLog), not the terminal."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  verbose = flags.FLAGS.verbosity >= 1
  # Before TensorFlow loads: warnings and errors, or every log when verbose.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '0' if verbose else '1')
  if verbose or flags.FLAGS.mode == 'trial':  # A trial's stderr is its log.
    _exit_on(_run_mode(), sys.stderr)
  else:
    _run_quietly()


def _run_mode() -> Optional[str]:
  """Runs the mode; returns the one-line message of an error that is the
  user's to fix, None if it succeeded."""
  try:
    platform_flags.apply(flags.FLAGS)  # Vertex AI NAS's flags, as ours.
    args = nas_flags.Args.parsed(flags.FLAGS)
    MODE_TABLE[args.mode](args)
  except USER_ERRORS as e:
    return f'nas-garden: error: {outcome.one_line(e)}'
  return None


def _run_quietly() -> None:
  """Runs the mode with stderr hidden in a log. The log is kept in the job
  dir, except after a user error (its one line says what to fix, and the
  job dir stays as it was); our own bug's traceback goes there too, and the
  terminal gets its one line and the log's path."""
  log = quiet.HiddenLog()
  try:
    error = _run_mode()
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()
    error = (f'nas-garden: internal error: {outcome.one_line(e)} (traceback '
             f'in {log.keep(_log_folder())})')
  except BaseException:  # Interrupted: what it printed so far is kept.
    log.keep(_log_folder())
    raise
  else:
    if not error:
      log.keep(_log_folder())
  _exit_on(error, log.console)


def _log_folder() -> Optional[str]:
  """The local folder the command writes to: --job_dir's (its store's, for
  a URL job dir), else --output_prefix's (make_data)."""
  if flags.FLAGS.job_dir:
    return store_lib.location(fileio.absolute(flags.FLAGS.job_dir))
  if flags.FLAGS.output_prefix:
    return os.path.dirname(fileio.absolute(flags.FLAGS.output_prefix))
  return None


def _exit_on(error: Optional[str], console) -> None:
  if error:
    print(error, file=console)
    sys.exit(1)


def run() -> None:
  """Console-script entry point (`nas-garden`)."""
  app.run(main)


if __name__ == '__main__':
  run()
