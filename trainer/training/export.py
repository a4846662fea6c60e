"""A finished trial as a deployable model, with what it takes to retrain it.

`export_trial` writes, in <export_dir>:
  saved_model/            Model Garden's batch-1 float32 serving SavedModel of
                          the trial's best checkpoint (`latency`'s export:
                          uint8 `inputs`, Model Garden's preprocessing inside)
  model.tflite            that SavedModel converted for TFLite; absent where
                          conversion failed (export.json says why)
  nas_params_str.json     the trial's decisions, as Vertex AI NAS writes them
  dna.json                the same decisions as a PyGlove DNA
  architecture.json       the materialised architecture
  augmentation_policy.json  the searched policy (augmentation trials only)
  params.yaml             the trial's full Model Garden config, as plain YAML
  export.json             what was exported and from where, its metrics,
                          the TFLite outcome, the trial spec that retrains
                          it (spec.TrialSpec) and the command that does
Every file is replaced atomically, and export.json is removed first and
written last: a dir holding it is a complete export, and an interrupted
export is finished by running it again.
"""

import json
import os
import shlex
from typing import Any, Dict, Tuple

import pyglove as pg
import tensorflow as tf
import yaml

from official.core import train_utils
from official.modeling import hyperparams
from tensorflow.lite.python import schema_py_generated as schema_fb
import search_spaces
from trainer import artifacts
from trainer import fileio
from trainer import spec as spec_lib
from trainer.training import experiments
from trainer.training import latency
from trainer.controller import leaderboard
from trainer.controller import store as store_lib

EXPORT_FILE = 'export.json'
TFLITE_FILE = 'model.tflite'
DNA_FILE = 'dna.json'
PARAMS_FILE = 'params.yaml'
# Later stages refine earlier ones: the default export is the best completed
# trial of the first stage here that has one.
STAGE_PRECEDENCE = ('final', 'train', 'augment_search', 'search')
# TFLite names a select TF op by this prefix and the TensorFlow op's name.
FLEX_PREFIX = b'Flex'


def best_trial(job_dir: str) -> Tuple[str, int]:
  """(stage, trial id) of the trial a job exports by default: the best
  completed trial of its latest stage that has one."""
  store = store_lib.Store.open(job_dir, read_only=True)
  try:
    for stage in STAGE_PRECEDENCE:
      top = leaderboard.best([t for t in store.trials(stage)
                              if t.status == store_lib.COMPLETED])
      if top is not None:
        return stage, top.id
  finally:
    store.close()
  raise ValueError(f'{job_dir} has no completed trial to export')


def export_trial(job_dir: str, stage: str, trial_id: int,
                 export_dir: str) -> Dict[str, Any]:
  """Exports a completed trial to `export_dir` (see the module docstring);
  returns what export.json records.

  Raises ValueError or FileNotFoundError, with a one-line message, for an
  unknown stage or trial, a trial not completed, or a trial dir without its
  config or a checkpoint; the export dir is then left untouched. A failed
  TFLite conversion does not fail the export.
  """
  trial, identity = _completed_trial(job_dir, stage, trial_id)
  trial_dir = artifacts.trial_dir(job_dir, stage, trial_id)
  trial_params = os.path.join(trial_dir, PARAMS_FILE)
  if not fileio.isfile(trial_params):
    raise FileNotFoundError(f'trial dir {trial_dir} has no {PARAMS_FILE}')
  config = hyperparams.read_yaml_to_params_dict(trial_params).as_dict()
  checkpoint = _trained_checkpoint(trial_dir, config['trainer'])

  fileio.makedirs(export_dir)
  fileio.remove(os.path.join(export_dir, EXPORT_FILE))
  # Model Garden tags tuples in YAML as Python objects, which yaml.safe_load
  # (how config files are read) refuses: the export holds a plain copy, and
  # the model and a retrain both read that one.
  _write(export_dir, PARAMS_FILE, yaml.safe_dump(config))
  params = experiments.load_experiment_config(
      identity['experiment'], os.path.join(export_dir, PARAMS_FILE))
  saved_model_dir = os.path.join(export_dir, latency.SAVED_MODEL_SUBDIR)
  staged = saved_model_dir + '.partial'
  fileio.remove(staged)
  latency.export_serving_model(params, checkpoint, staged)
  fileio.replace_dir(staged, saved_model_dir)
  tflite = _convert_to_tflite(saved_model_dir,
                              os.path.join(export_dir, TFLITE_FILE))
  _write_decisions(export_dir, trial_dir, identity['search_space'],
                   trial.nas_params_str)

  # What retrains it: params.yaml holds the trial's whole config, data and
  # overrides included.
  retrain = spec_lib.TrialSpec(
      search_space=identity['search_space'],
      nas_params_str=trial.nas_params_str,
      experiment=identity['experiment'],
      config_file=PARAMS_FILE,  # Relative to the export dir.
      base_search_space=identity.get('base_search_space', ''),
      base_nas_params_str=identity.get('base_nas_params_str', ''),
      stage=stage, seed=spec_lib.trial_seed(identity['seed'], trial_id))
  record = {
      'search_space': identity['search_space'],
      'experiment': identity['experiment'],
      'job_dir': fileio.absolute(job_dir),
      'stage': stage,
      'trial_id': trial_id,
      'seed': retrain.seed,
      'checkpoint': checkpoint,
      'metrics': trial.metrics,
      **tflite,
      'trial_spec': retrain.to_dict(),
      'retrain_command': ('nas-garden --mode=trial --job_dir=NEW_JOB_DIR '
                          '--export_dir=' +
                          shlex.quote(fileio.absolute(export_dir))),
  }
  _write(export_dir, EXPORT_FILE, json.dumps(record, indent=1))
  return record


def holds(export_dir: str, job_dir: str, stage: str, trial_id: int) -> bool:
  """Whether `export_dir` is a complete export of that trial of `job_dir`
  (a completed trial never changes, so it needs no second export)."""
  record_path = os.path.join(export_dir, EXPORT_FILE)
  if not fileio.isfile(record_path):
    return False
  record = json.loads(fileio.read_text(record_path))
  return (record['job_dir'], record['stage'], record['trial_id']) == (
      fileio.absolute(job_dir), stage, trial_id)


def retrain_spec(export_dir: str) -> spec_lib.TrialSpec:
  """The trial spec `--mode=trial --export_dir=DIR` retrains: the exported
  trial's space, decisions, experiment and seed, with the export's
  params.yaml (the trial's full config) as its config file."""
  record_path = os.path.join(export_dir, EXPORT_FILE)
  if not fileio.isfile(record_path):
    raise FileNotFoundError(f'{export_dir} holds no complete nas-garden '
                            f'export (no {EXPORT_FILE})')
  retrain = spec_lib.TrialSpec.from_dict(
      json.loads(fileio.read_text(record_path))['trial_spec'])
  return retrain.replace(config_file=fileio.absolute(
      os.path.join(export_dir, retrain.config_file)))


def _completed_trial(job_dir: str, stage: str,
                     trial_id: int) -> Tuple[store_lib.Trial, Dict[str, Any]]:
  """The trial and its stage's job identity; ValueError unless it completed."""
  if stage not in artifacts.STAGE_DIRS:
    raise ValueError(f'unknown stage {stage!r}; valid: '
                     f'{", ".join(sorted(artifacts.STAGE_DIRS))}')
  store = store_lib.Store.open(job_dir, read_only=True)
  try:
    trial = {t.id: t for t in store.trials(stage)}.get(trial_id)
    identity = store.job_identity(stage)
  finally:
    store.close()
  if trial is None:
    raise ValueError(f'no {stage} trial {trial_id} in {job_dir}')
  if trial.status != store_lib.COMPLETED:
    raise ValueError(f'{stage} trial {trial_id} of {job_dir} is '
                     f'{trial.status}, not completed')
  return trial, identity


def _write_decisions(export_dir: str, trial_dir: str, search_space: str,
                     nas_params_str: str) -> None:
  """What the trial chose: its decisions (Vertex JSON and DNA), architecture
  and, in augmentation trials, policy; an earlier export's policy goes."""
  space = search_spaces.get_search_space(search_space)
  dna = search_spaces.dna_from_nas_params(space, nas_params_str)
  _write(export_dir, artifacts.NAS_PARAMS_FILE, nas_params_str)
  _write(export_dir, DNA_FILE, pg.to_json_str(dna, json_indent=1))
  _write(export_dir, artifacts.ARCHITECTURE_FILE,
         fileio.read_text(os.path.join(trial_dir, artifacts.ARCHITECTURE_FILE)))
  trial_policy = os.path.join(trial_dir, artifacts.POLICY_FILE)
  if fileio.isfile(trial_policy):
    _write(export_dir, artifacts.POLICY_FILE, fileio.read_text(trial_policy))
  else:
    fileio.remove(os.path.join(export_dir, artifacts.POLICY_FILE))


def _trained_checkpoint(trial_dir: str, trainer: Dict[str, Any]) -> str:
  """The checkpoint Model Garden's best-checkpoint exporter kept (configured
  by the trial's `trainer` config), else the trial's latest."""
  best_dir = os.path.join(trial_dir,
                          trainer.get('best_checkpoint_export_subdir') or
                          train_utils.BEST_CHECKPOINT_NAME)
  checkpoint = (tf.train.latest_checkpoint(best_dir) or
                tf.train.latest_checkpoint(trial_dir))
  if not checkpoint:
    raise FileNotFoundError(f'trial dir {trial_dir} has no checkpoint')
  return checkpoint


def _convert_to_tflite(saved_model_dir: str, path: str) -> Dict[str, Any]:
  """Writes the SavedModel's TFLite conversion to `path`; returns export.json's
  `tflite`: the file's name, or why conversion failed (an earlier export's
  file is then removed).

  TensorFlow ops TFLite lacks (RetinaNet's batched NMS) are kept as select TF
  ops, listed in `tflite_select_tf_ops`: the model then runs only with
  TFLite's Flex delegate linked in (tensorflow-lite-select-tf-ops).
  """
  try:
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[latency.SERVING_SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    model = converter.convert()
  except Exception as e:  # pylint: disable=broad-except  (any converter error)
    fileio.remove(path)
    reason = ' '.join(str(e).split())[:1000] or type(e).__name__
    return {'tflite': f'not converted: {reason}'}
  fileio.write_text(path, model)
  flatbuffer = schema_fb.Model.GetRootAs(model)
  custom_ops = {flatbuffer.OperatorCodes(i).CustomCode() or b''
                for i in range(flatbuffer.OperatorCodesLength())}
  return {'tflite': TFLITE_FILE, 'tflite_select_tf_ops': sorted(
      op[len(FLEX_PREFIX):].decode() for op in custom_ops
      if op.startswith(FLEX_PREFIX))}


def _write(export_dir: str, name: str, text: str) -> None:
  fileio.write_text(os.path.join(export_dir, name), text)
