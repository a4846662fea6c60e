"""--mode=trial: one trial, as the controller or a cloud training job runs it."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, Tuple

from trainer import artifacts
from trainer import fileio
from trainer import objective
from trainer import outcome
from trainer import spec as spec_lib
from trainer import vertex
from trainer.controller import executors
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


def report_to_vertex(args, metrics: Dict[str, Any], trial_id: int,
                     trial_dir: str) -> None:
  """The hypertune report of a finished trial, when it runs as a Vertex AI
  job (vertex.reports_metrics): its reward as the flags' objective computes
  it (the quality metric itself without cost targets), the evaluated step,
  and as extra metrics the unscaled quality, measured costs, parameters and
  the search trial a retraining retrains."""
  trial_objective = common.objective(args, metrics['quality_metric'],
                                     multi_objective=False)
  if (not args.report_metrics or not vertex.reports_metrics(os.environ) or
      trial_objective.metric not in metrics):  # Trained without evaluating.
    return
  extra = (trial_objective.metric, objective.LATENCY, objective.MEMORY,
           'params', 'search_trial_id')
  vertex.report_metrics(
      os.environ, reward=trial_objective.reward(metrics),
      global_step=metrics['evaluated_step'], trial_id=trial_id,
      checkpoint_path=trial_dir, model_flops=metrics.get(objective.FLOPS),
      extra_metrics={name: metrics[name] for name in extra if name in metrics})


def train(args, trial_dir: str, data_dir: str) -> Dict[str, Any]:
  """Trains the trial in this process; returns its metrics (also written)."""
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  trial.init_devices(args.cpu_replicas)
  spec = runtime_spec(trial_spec(args, spec_lib.TrialSpec.from_flags(args)))
  if not spec.nas_params_str:
    raise common.UsageError('--nas_params_str is required with --mode=trial')
  return trial.run(
      trial.prepare(spec, data_dir), trial_dir, started_at=PROCESS_START,
      export_serving_model=args.export_serving_model,
      extra_metrics=({'search_trial_id': args.search_trial_id}
                     if args.search_trial_id else None))


def train_then_measure(trial_dir: str) -> Dict[str, Any]:
  """--measure_latency: trains in a child trial process (this command line,
  exporting the model for serving) and, once it has ended and so released
  every device it held, measures latency and memory in a fresh worker on
  the same devices (this process's CUDA_VISIBLE_DEVICES), as the platform's
  latency worker does; returns the metrics with the figures added. A child
  that fails has written its error: this process ends as it did."""
  child = subprocess.run(
      [sys.executable, *sys.orig_argv[1:], '--nomeasure_latency',
       '--export_serving_model', '--noreport_metrics'], check=False,
      preexec_fn=executors.die_with_parent)
  if child.returncode != 0:
    sys.stdout.flush()
    if child.returncode < 0:  # Killed (e.g. out of memory): die the same way.
      signal.signal(-child.returncode, signal.SIG_DFL)
      os.kill(os.getpid(), -child.returncode)
    os._exit(child.returncode)  # pylint: disable=protected-access
  from trainer.training import latency  # pylint: disable=g-import-not-at-top  (TensorFlow, not started: holds no device)
  metrics = json.loads(fileio.read_text(
      os.path.join(trial_dir, artifacts.METRICS_FILE)))
  metrics.update(latency.measure_trial(trial_dir))
  outcome.write_metrics(trial_dir, metrics)
  return metrics


def run_trial(args) -> None:
  """Trains the trial the flags describe (TrialSpec.from_flags) into its
  trial dir (trial_dirs; id --trial_id, default $CLOUD_ML_TRIAL_ID or 1) and
  reports it to Vertex AI's metrics file when it runs there; on any failure
  writes its error in the trial dir for the controller."""
  trial_id = args.trial_id or int(os.environ.get(vertex.TRIAL_ID, '1'))
  trial_dir, data_dir = trial_dirs(args, trial_id)
  try:
    metrics = (train_then_measure(trial_dir) if args.measure_latency
               else train(args, trial_dir, data_dir))
    report_to_vertex(args, metrics, trial_id, trial_dir)
  except Exception as e:
    outcome.write_error(trial_dir, outcome.error_of(e))
    raise
  shown = {k: v for k, v in metrics.items() if k != 'evaluations'}
  print(json.dumps(shown, sort_keys=True), flush=True)
  # Metrics, checkpoints and summaries are on disk; TensorFlow's interpreter
  # teardown would add about 6 s to every trial for nothing.
  sys.stderr.flush()
  os._exit(0)  # pylint: disable=protected-access
