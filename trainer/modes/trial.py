"""--mode=trial: one trial, as the controller or a cloud training job runs it."""

import json
import os
import sys
import time

from trainer import artifacts
from trainer import outcome
from trainer import spec as spec_lib
from trainer.modes import common

PROCESS_START = time.time()


def trial_spec(args, spec: spec_lib.TrialSpec) -> spec_lib.TrialSpec:
  """The spec the flags give; with --export_dir the export's, each field
  given as a flag replacing the export's."""
  if not args.export_dir:
    return spec
  from trainer.training import export  # pylint: disable=g-import-not-at-top  (TensorFlow)
  exported = export.retrain_spec(args.export_dir)
  given = {name: getattr(spec, name) for name in spec.to_dict()
           if name != 'runtime' and args.given(name)}
  return exported.replace(runtime=spec.runtime, stage=spec.stage, **given)


def run_trial(args) -> None:
  """Trains the trial the flags describe (TrialSpec.from_flags) into the
  trial dir of --job_dir, --stage and --trial_id (default
  $CLOUD_ML_TRIAL_ID or 1); on any failure writes its error there for the
  controller."""
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  job_dir = common.job_dir(args)
  trial_id = args.trial_id or int(os.environ.get('CLOUD_ML_TRIAL_ID', '1'))
  trial_dir = artifacts.trial_dir(job_dir, args.stage, trial_id)
  try:
    trial.init_devices(args.cpu_replicas)
    spec = trial_spec(args, spec_lib.TrialSpec.from_flags(args))
    if not spec.nas_params_str:
      raise common.UsageError('--nas_params_str is required with --mode=trial')
    prepared = trial.prepare(spec, artifacts.data_dir(job_dir))
    metrics = trial.run(
        prepared, trial_dir, started_at=PROCESS_START,
        measure_latency=args.measure_latency,
        extra_metrics=({'search_trial_id': args.search_trial_id}
                       if args.search_trial_id else None))
  except Exception as e:
    outcome.write_error(trial_dir, outcome.error_of(e))
    raise
  shown = {k: v for k, v in metrics.items() if k != 'evaluations'}
  print(json.dumps(shown, sort_keys=True), flush=True)
  # Metrics, checkpoints and summaries are on disk; TensorFlow's interpreter
  # teardown would add about 6 s to every trial for nothing.
  sys.stderr.flush()
  os._exit(0)  # pylint: disable=protected-access
