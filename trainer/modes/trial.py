"""--mode=trial: one trial, as the controller or a cloud training job runs it."""

import dataclasses
import json
import os
import sys
import time
from typing import Any, Dict, Tuple

from trainer import artifacts
from trainer import objective
from trainer import outcome
from trainer import spec as spec_lib
from trainer import vertex
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


def trial_dirs(args, trial_id: int) -> Tuple[str, str]:
  """The trial's dir and the dir of its built-in data: the trial dir a
  Vertex AI job's AIP_MODEL_DIR names, holding its data too, unless our
  --job_dir is given (then the stage's trial dir and the job's data dir). The
  platform's --job-dir gives way to AIP_MODEL_DIR, as in its trainer."""
  vertex_trial_dir = vertex.trial_dir(os.environ)
  ours = args.job_dir and not args.given('job-dir')
  if ours or not vertex_trial_dir:
    job_dir = common.job_dir(args)
    return (artifacts.trial_dir(job_dir, args.stage, trial_id),
            artifacts.data_dir(job_dir))
  return vertex_trial_dir, artifacts.data_dir(vertex_trial_dir)


def runtime_spec(spec: spec_lib.TrialSpec) -> spec_lib.TrialSpec:
  """The spec with the strategy a multi-worker TF_CONFIG implies when
  --distribution_strategy is not given."""
  strategy = vertex.distribution_strategy(spec.runtime.distribution_strategy,
                                          os.environ)
  return spec.replace(runtime=dataclasses.replace(
      spec.runtime, distribution_strategy=strategy))


def report_to_vertex(args, prepared, metrics: Dict[str, Any], trial_id: int,
                     trial_dir: str) -> None:
  """The hypertune report of a finished trial, when it runs as a Vertex AI
  job (vertex.reports_metrics): its reward as the flags' objective computes
  it (the quality metric itself without cost targets), the evaluated step,
  and as extra metrics the unscaled quality, measured costs, parameters and
  the search trial a retraining retrains."""
  trial_objective = common.objective(args, prepared.quality_metric,
                                     multi_objective=False)
  if (not vertex.reports_metrics(os.environ) or
      trial_objective.metric not in metrics):  # Trained without evaluating.
    return
  extra = (trial_objective.metric, objective.LATENCY, objective.MEMORY,
           'params', 'search_trial_id')
  vertex.report_metrics(
      os.environ, reward=trial_objective.reward(metrics),
      global_step=metrics['evaluated_step'], trial_id=trial_id,
      checkpoint_path=trial_dir, model_flops=metrics.get(objective.FLOPS),
      extra_metrics={name: metrics[name] for name in extra if name in metrics})


def run_trial(args) -> None:
  """Trains the trial the flags describe (TrialSpec.from_flags) into its
  trial dir (trial_dirs; id --trial_id, default $CLOUD_ML_TRIAL_ID or 1) and
  reports it to Vertex AI's metrics file when it runs there; on any failure
  writes its error in the trial dir for the controller."""
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  trial_id = args.trial_id or int(os.environ.get(vertex.TRIAL_ID, '1'))
  trial_dir, data_dir = trial_dirs(args, trial_id)
  try:
    trial.init_devices(args.cpu_replicas)
    spec = runtime_spec(trial_spec(args, spec_lib.TrialSpec.from_flags(args)))
    if not spec.nas_params_str:
      raise common.UsageError('--nas_params_str is required with --mode=trial')
    prepared = trial.prepare(spec, data_dir)
    metrics = trial.run(
        prepared, trial_dir, started_at=PROCESS_START,
        measure_latency=args.measure_latency,
        extra_metrics=({'search_trial_id': args.search_trial_id}
                       if args.search_trial_id else None))
    report_to_vertex(args, prepared, metrics, trial_id, trial_dir)
  except Exception as e:
    outcome.write_error(trial_dir, outcome.error_of(e))
    raise
  shown = {k: v for k, v in metrics.items() if k != 'evaluations'}
  print(json.dumps(shown, sort_keys=True), flush=True)
  # Metrics, checkpoints and summaries are on disk; TensorFlow's interpreter
  # teardown would add about 6 s to every trial for nothing.
  sys.stderr.flush()
  os._exit(0)  # pylint: disable=protected-access
