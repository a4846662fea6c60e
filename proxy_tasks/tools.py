"""The proxy-task tools as runs of trials: model selection, variance and
smoothness, proxy search.

Each is a stage of the job's store whose trials run through the controller,
so it resumes after a kill like a search. A tool takes its settings as
arguments and two callables: `run_stage(template, proposals, customize,
identity_extra)` runs (or resumes) the stage `template.stage` training
exactly `proposals` and returns its trials; `prepare(spec)` builds a trial's
config without training (trainer.training.trial.prepare). Proxy search
also gives `run_stage` its early-stopping rule (`stopping=`).
"""

import functools
import json
import os
import random
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import pyglove as pg

from proxy_tasks import candidates as candidates_lib
from proxy_tasks import model_selection
from proxy_tasks import proxy_search
from proxy_tasks import reference as reference_lib
from proxy_tasks import stopping
from proxy_tasks import variance
import search_spaces
from trainer import artifacts
from trainer import fileio
from trainer import objective
from trainer import spec as spec_lib
from trainer.controller import search
from trainer.controller import store as store_lib

SELECTION_STAGE = 'proxy_model_selection'
VARIANCE_STAGE = 'proxy_variance'
PROXY_SEARCH_STAGE = 'proxy_search'
SELECTION_FILE = 'proxy_model_selection.json'
SELECTION_PLOT = 'proxy_model_selection.png'
VARIANCE_FILE = 'variance_and_smoothness.json'
PROXY_SEARCH_FILE = 'proxy_search.json'
PROXY_SEARCH_PLOT = 'proxy_search.png'

RunStage = Callable[..., List[store_lib.Trial]]
Prepare = Callable[[spec_lib.TrialSpec], Any]


def _override_mapping(value) -> dict:
  """A --params_override value (k=v pairs or a YAML/JSON mapping; or a
  mapping already) as a nested mapping, parsed as trials parse it."""
  if isinstance(value, dict):
    return value
  if not value:
    return {}
  from trainer.training import experiments  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return experiments.parse_override(value)


def merged_override(*values) -> str:
  """Overrides merged, a later one winning: one JSON mapping, the form a
  trial's --params_override takes."""
  merged = candidates_lib.merge(*map(_override_mapping, values))
  return json.dumps(merged, sort_keys=True) if merged else ''


def with_learning_curve(spec: spec_lib.TrialSpec,
                        prepare: Prepare) -> spec_lib.TrialSpec:
  """`spec`, evaluating after every train loop where its config evaluates
  only at the end: the proxy tools read learning curves."""
  trainer_config = prepare(spec).params.trainer
  if 0 < trainer_config.validation_interval < trainer_config.train_steps:
    return spec
  return spec.replace(params_override=merged_override(
      spec.params_override,
      {'trainer': {'validation_interval': trainer_config.steps_per_loop}}))


def _run_part(job_dir: str, template: spec_lib.TrialSpec,
              proposals: List[str], run_stage: RunStage, customize,
              identity_extra: Dict[str, Any]) -> List[store_lib.Trial]:
  """Runs (or resumes) the stage up to len(proposals) trials; returns them.

  Model selection and proxy search grow their stage in parts (rounds,
  candidates). A part that a later part already follows has only finished
  trials, so it is read from the store, not run again.
  """
  if store_lib.exists(job_dir):
    recorded = store_lib.Store.open(job_dir, read_only=True).trials(
        template.stage)
    if len(recorded) > len(proposals):
      if [t.nas_params_str for t in recorded[:len(proposals)]] != proposals:
        raise ValueError(f'this job dir\'s {template.stage} stage trained '
                         'other architectures; resume with the same flags '
                         'or use a new --job_dir')
      return recorded[:len(proposals)]
  return run_stage(template, proposals, customize, identity_extra)


def _write_json(path: str, value: Any) -> None:
  fileio.write_text(path, json.dumps(value, indent=1) + '\n')


def sampled_architectures(space_name: str, count: int,
                          seed: int) -> List[str]:
  """`count` distinct architectures of the space, drawn with `seed`."""
  spec = pg.dna_spec(search_spaces.get_search_space(space_name))
  rng = random.Random(seed)
  pool = []
  for _ in range(100 * count):
    params = search_spaces.nas_params_from_dna(pg.random_dna(spec, rng))
    if params not in pool:
      pool.append(params)
    if len(pool) == count:
      return pool
  raise ValueError(f'{space_name} has too few distinct architectures for '
                   f'--proxy_start_models={count}')


def continue_training(job_dir: str, from_id: int, to_id: int) -> None:
  """Gives model selection trial `to_id` the last checkpoint of `from_id`
  (weights, optimizer state and step): a survivor trains on from where its
  previous round stopped, as the platform's survivors do, instead of
  retraining from scratch. A trial dir with a checkpoint of its own (a round
  resumed after a kill) keeps it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  target = artifacts.trial_dir(job_dir, SELECTION_STAGE, to_id)
  if tf.train.latest_checkpoint(target):
    return
  checkpoint = tf.train.latest_checkpoint(
      artifacts.trial_dir(job_dir, SELECTION_STAGE, from_id))
  if checkpoint is None:
    raise search.SearchFailed(f'{SELECTION_STAGE} trial {from_id} kept no '
                              'checkpoint to continue from')
  fileio.makedirs(target)
  for path in fileio.glob(checkpoint + '.*'):
    fileio.copy(path, os.path.join(target, os.path.basename(path)))
  # Written last: until it exists the copy counts as not made.
  name = os.path.basename(checkpoint)
  fileio.write_text(os.path.join(target, 'checkpoint'),
                    f'model_checkpoint_path: "{name}"\n'
                    f'all_model_checkpoint_paths: "{name}"\n')


def _round_score(t, final: bool, cost_metric: str, quality_metric: str):
  """(accuracy, cost) of a round's trial, None if it has none: the last
  evaluation (at the round's budget), or in the last round the reported one
  (the best evaluation of a full training)."""
  if t.status != store_lib.COMPLETED or not t.metrics.get('evaluations'):
    return None
  cost = t.metrics.get(cost_metric)
  if not isinstance(cost, (int, float)):
    return None
  reported = t.metrics if final else t.metrics['evaluations'][-1]
  return reported[quality_metric], float(cost)


def select_models(job_dir: str, template: spec_lib.TrialSpec,
                  start_models: int, final_models: int, seed: int,
                  run_stage: RunStage, prepare: Prepare) -> Dict[str, Any]:
  """Shrinks `start_models` architectures sampled with `seed` to
  `final_models` in rounds of growing budgets on the full-training config
  `template`; the last round trains to completion. Writes the reference set
  (proxy_model_selection.json, readable by --proxy_reference) and a plot;
  returns what the file holds."""
  space = template.search_space
  pool = sampled_architectures(space, start_models, seed)
  prepared = prepare(template.replace(nas_params_str=pool[0]))
  full_steps = prepared.params.trainer.train_steps
  rounds = model_selection.plan_rounds(start_models, final_models, full_steps)
  round_overrides = [
      merged_override(template.params_override,
                      {'trainer': {'train_steps': r.train_steps}})
      for r in rounds]
  identity_extra = {'proxy_pool': pool,
                    'proxy_rounds': [list(r) for r in rounds]}
  round_of: Dict[int, int] = {}  # Trial id -> its round.
  proposals: List[str] = []
  survivors = [(params, None) for params in pool]  # (architecture, last trial)
  history = []
  for index, round_ in enumerate(rounds):
    first_id = len(proposals) + 1
    for trial_id, (params, previous) in enumerate(survivors, first_id):
      round_of[trial_id] = index
      if previous is not None:
        continue_training(job_dir, previous, trial_id)
      proposals.append(params)
    print(f'== model selection round {index + 1}/{len(rounds)}: '
          f'{len(survivors)} models to step {round_.train_steps} '
          f'({round_.training_pct:.2f}% of {full_steps})', flush=True)
    trials = _run_part(
        job_dir, template, proposals, run_stage,
        lambda t, spec: spec.replace(
            params_override=round_overrides[round_of[t.id]]),
        identity_extra)[first_id - 1:]
    cost_metric = model_selection.cost_metric(
        [t.metrics for t in trials if t.status == store_lib.COMPLETED])
    scores = {t.id: _round_score(t, round_.final, cost_metric,
                                 prepared.quality_metric) for t in trials}
    if round_.final:
      kept = [t.id for t in trials if scores[t.id] is not None]
    else:
      kept = model_selection.prune(
          scores, len(trials) - rounds[index + 1].num_models)
    if len(kept) < model_selection.MIN_KEPT:
      raise search.SearchFailed(f'only {len(kept)} models of round '
                                f'{index + 1} trained; model selection needs '
                                f'{model_selection.MIN_KEPT}')
    history.append({
        **round_._asdict(), 'round': index + 1, 'cost_metric': cost_metric,
        'models': [dict(zip(('accuracy', 'cost'), scores[t.id] or (None, None)),
                        trial_id=t.id, kept=t.id in kept) for t in trials]})
    pruned = [str(t.id) for t in trials if t.id not in kept]
    print(f'round {index + 1}: kept trials {", ".join(map(str, kept))}'
          + (f'; pruned {", ".join(pruned)}' if pruned else ''), flush=True)
    survivors = [(t.nas_params_str, t.id) for t in trials if t.id in kept]
  models = reference_lib.from_trials(
      [t for t in trials if t.id in kept], SELECTION_STAGE,
      prepared.quality_metric)
  path = os.path.join(job_dir, SELECTION_FILE)
  result = {'search_space': space, 'full_train_steps': full_steps,
            'rounds': history, 'models': reference_lib.to_rows(models)}
  _write_json(path, result)
  from proxy_tasks import plots  # pylint: disable=g-import-not-at-top  (matplotlib: slow)
  plots.model_selection(os.path.join(job_dir, SELECTION_PLOT), history,
                        history[-1]['cost_metric'])
  print(f'reference set: {len(models)} models')
  for m in models:
    print(f'  {m.source}: accuracy {m.accuracy:.4f}, '
          + ', '.join(f'{k} {v:.4g}' for k, v in m.costs.items()))
  print(f'wrote {path} (use it as --proxy_reference) and '
        f'{os.path.join(job_dir, SELECTION_PLOT)}')
  return result


def measure_variance(job_dir: str, template: spec_lib.TrialSpec, runs: int,
                     max_coefficient_of_variation: float,
                     max_smoothness: float, run_stage: RunStage,
                     prepare: Prepare) -> Dict[str, Any]:
  """Trains the model `template.nas_params_str` `runs` times under the proxy
  config (each run its own seed) and writes variance_and_smoothness.json;
  returns what it holds."""
  if runs < 2:
    raise ValueError('--proxy_variance_runs must be at least 2')
  params = template.nas_params_str
  template = with_learning_curve(template, prepare)
  quality_metric = prepare(template).quality_metric
  trials = run_stage(template.replace(nas_params_str=''), [params] * runs,
                     None, {'proxy_model': params})
  completed = [t for t in trials if t.status == store_lib.COMPLETED]
  curves = [[(e['step'], e[quality_metric])
             for e in t.metrics['evaluations']] for t in completed]
  accuracies = [t.metrics[quality_metric] for t in completed]
  summary = variance.summary(accuracies, curves,
                             max_coefficient_of_variation, max_smoothness)
  per_run = summary.pop('smoothness_per_run')
  result = {
      'search_space': template.search_space, 'nas_params_str': params,
      **summary,
      'runs': [{'trial_id': t.id, 'seed': spec_lib.trial_seed(template.seed,
                                                              t.id),
                'accuracy': accuracy, 'smoothness': smooth,
                'learning_curve': curve}
               for t, accuracy, curve, smooth in zip(completed, accuracies,
                                                     curves, per_run)],
  }
  path = os.path.join(job_dir, VARIANCE_FILE)
  _write_json(path, result)

  def verdict(value, bound, passed):
    shown = '-' if value is None else f'{value:.4f}'
    return f'{shown} ({"passes" if passed else "fails"}: <= {bound:g})'

  print(f'{len(completed)} of {runs} runs completed; accuracies '
        + ', '.join(f'{a:.4f}' for a in accuracies))
  print('coefficient of variation: ' + verdict(
      summary['coefficient_of_variation'],
      summary['max_coefficient_of_variation'], summary['variance_passed']))
  print('smoothness: ' + verdict(summary['smoothness'],
                                 summary['max_smoothness'],
                                 summary['smoothness_passed']))
  print(f'wrote {path}')
  return result


def _candidate_spec(base: spec_lib.TrialSpec, candidate,
                    prepare: Prepare) -> spec_lib.TrialSpec:
  """The proxy config of one candidate: its override after the proxy's, its
  share of the training files, and evaluations along the way."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec = base.replace(params_override=merged_override(
      base.params_override, candidate.params_override))
  fraction = candidate.train_data_fraction
  if fraction is not None:
    task_config = prepare(spec).params.task
    paths = task_config.train_data.input_path
    files = {f for pattern in (paths.split(',') if isinstance(paths, str)
                               else paths)
             for f in tf.io.gfile.glob(pattern)}
    data = {'train_data': {'input_path': candidates_lib.train_files_share(
                files, fraction)},
            'validation_data': {
                'input_path': task_config.validation_data.input_path},
            'model': {'num_classes': task_config.model.num_classes}}
    if getattr(task_config, 'annotation_file', ''):
      data['annotation_file'] = task_config.annotation_file
    # The data flags would replace the share the override names.
    spec = spec.replace(
        params_override=merged_override(spec.params_override, {'task': data}),
        train_data='', eval_data='')
  return with_learning_curve(spec, prepare)


class _Plan(NamedTuple):
  """How a candidate's trials train: batch, budget, evaluation steps."""
  batch_size: int
  train_steps: int
  evaluation_steps: List[int]


def _plan(prepared) -> _Plan:
  trainer_config = prepared.params.trainer
  return _Plan(prepared.params.task.train_data.global_batch_size,
               trainer_config.train_steps,
               proxy_search.evaluation_steps(
                   trainer_config.train_steps,
                   trainer_config.validation_interval))


def _trained_steps(t: store_lib.Trial) -> int:
  """The steps a proxy trial trained, to its last evaluation (the train
  loop a stop cuts short is not counted)."""
  evaluations = (t.metrics or {}).get('evaluations') or []
  return max((e['step'] for e in evaluations), default=0)


def _flops(t: store_lib.Trial, spec: spec_lib.TrialSpec,
           prepare: Prepare) -> Optional[float]:
  """Multiply-adds (billions) per image of a proxy trial's model: as the
  trial counted them, else (stopped or failed before it did) as the
  untrained model counts them."""
  counted = (t.metrics or {}).get(objective.FLOPS)
  if counted is not None:
    return counted
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return trial.estimate_flops(prepare(spec.replace(
      nas_params_str=t.nas_params_str)))


def _compute(trials: List[store_lib.Trial], flops: List[Optional[float]],
             plan: _Plan) -> Dict[str, Any]:
  """Training compute (billions of multiply-adds) a candidate's trials
  spent, and what training each to the budget would have; None where a
  model's FLOPs are unknown."""
  if None in flops:
    return {'compute_spent': None, 'compute_full': None}
  return {
      'compute_spent': plan.batch_size * sum(
          _trained_steps(t) * f for t, f in zip(trials, flops)),
      'compute_full': plan.batch_size * plan.train_steps * sum(flops)}


def _total(results: Dict[str, Dict[str, Any]], key: str) -> Optional[float]:
  values = [r[key] for r in results.values()]
  return None if None in values else sum(values)


def _spent_text(spent: Optional[float], full: Optional[float]) -> str:
  if spent is None or not full:
    return 'compute not counted (no FLOPs)'
  return (f'trained {spent:.3g} of a full run\'s {full:.3g} B multiply-adds '
          f'({100 * spent / full:.0f}%)')


def _candidate_result(models: List[reference_lib.ReferenceModel],
                      trials: List[store_lib.Trial], spec: spec_lib.TrialSpec,
                      plan: _Plan, quality_metric: str, threshold: float,
                      prepare: Prepare) -> Dict[str, Any]:
  """A candidate's τ by step and verdict from its trials (a stopped one
  counts with the curve it reached), and the compute they spent."""
  flops = [_flops(t, spec, prepare) for t in trials]
  runs = [stopping.recorded_run(t, quality_metric,
                                None if f is None else plan.batch_size * f)
          for t, f in zip(trials, flops)]
  return {
      'trial_ids': [t.id for t in trials],
      'stopped_trial_ids': [t.id for t in trials
                            if t.status == store_lib.STOPPED],
      'budget_steps': plan.train_steps,
      'trained_steps': [_trained_steps(t) for t in trials],
      **_compute(trials, flops, plan),
      **proxy_search.evaluate(models, runs, threshold)}


def _candidate_line(name: str, result: Dict[str, Any]) -> str:
  by_step = ', '.join(
      f'{r["step"]}: '
      + ('-' if r['kendall_tau'] is None else f'{r["kendall_tau"]:.3f}')
      for r in result['kendall_tau_by_step'])
  verdict = 'does not pass'
  if result['passed']:
    compute = result['pass_train_compute']
    seconds = result['pass_train_seconds']
    verdict = (f'passes at step {result["pass_step"]} ('
               + ('-' if compute is None else f'{compute:.3g}')
               + ' B multiply-adds'
               + ('' if seconds is None else f', {seconds:.1f} s')
               + ' per model)')
  stopped = len(result['stopped_trial_ids'])
  return (f'{name}: kendall tau by step {by_step}; {verdict}; '
          + (f'{stopped} of {len(result["trial_ids"])} trials stopped early; '
             if stopped else '')
          + _spent_text(result['compute_spent'], result['compute_full']))


def search_proxy(job_dir: str, base: spec_lib.TrialSpec,
                 models: List[reference_lib.ReferenceModel],
                 candidates: Optional[List[candidates_lib.Candidate]],
                 threshold: float, run_stage: RunStage,
                 prepare: Prepare) -> Dict[str, Any]:
  """Trains the reference set under each candidate proxy (default: built-in
  candidates around `base`'s config) in turn; Kendall tau against
  full-training accuracy at every evaluation step; the cheapest passing
  candidate. A candidate's trials stop once its verdict is known
  (stopping.CandidateStopping). Writes proxy_search.json and
  proxy_search.png; returns what the file holds."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  sample = base.replace(nas_params_str=models[0].nas_params_str)
  prepared = prepare(sample)
  if candidates is None:
    task_config = prepared.params.task
    candidates = candidates_lib.defaults(
        prepared.task_name, task_config.model.input_size,
        task_config.train_data.global_batch_size,
        len(tf.io.gfile.glob(task_config.train_data.input_path)))
  specs = [_candidate_spec(sample, c, prepare).replace(nas_params_str='')
           for c in candidates]
  plans = [_plan(prepare(s.replace(nas_params_str=sample.nas_params_str)))
           for s in specs]
  identity_extra = {
      'proxy_reference': [m.nas_params_str for m in models],
      'proxy_candidates': [[c.name, s.params_override, c.train_data_fraction]
                           for c, s in zip(candidates, specs)]}
  count = len(models)
  run_stopping = functools.partial(run_stage, stopping=(
      stopping.CandidateStopping(
          job_dir, PROXY_SEARCH_STAGE, models,
          [p.evaluation_steps for p in plans], prepared.quality_metric,
          threshold)))

  def customize(t, spec):
    chosen = specs[(t.id - 1) // count]
    return spec.replace(params_override=chosen.params_override,
                        train_data=chosen.train_data,
                        eval_data=chosen.eval_data)

  proposals: List[str] = []
  results: Dict[str, Dict[str, Any]] = {}
  for index, (candidate, spec, plan) in enumerate(zip(candidates, specs,
                                                      plans)):
    proposals += [m.nas_params_str for m in models]
    override = candidate.params_override
    changes = [override if isinstance(override, str) else json.dumps(override)]
    if candidate.train_data_fraction:
      changes.append(f'{candidate.train_data_fraction:g} of the training files')
    print(f'== proxy candidate {index + 1}/{len(candidates)} {candidate.name}: '
          + (', '.join(c for c in changes if c) or 'as configured'), flush=True)
    trials = _run_part(job_dir, base, proposals, run_stopping, customize,
                       identity_extra)[-count:]
    results[candidate.name] = {
        'candidate': candidate._asdict(),
        'params_override': spec.params_override,  # As the trials ran.
        **_candidate_result(models, trials, spec, plan,
                            prepared.quality_metric, threshold, prepare)}
    print(_candidate_line(candidate.name, results[candidate.name]),
          flush=True)
  best = proxy_search.cheapest_passing(results)
  path = os.path.join(job_dir, PROXY_SEARCH_FILE)
  summary = {
      'search_space': base.search_space, 'correlation_threshold': threshold,
      'reference': reference_lib.to_rows(models), 'candidates': results,
      'best': best,
      'best_train_steps': results[best]['pass_step'] if best else None,
      'compute_spent': _total(results, 'compute_spent'),
      'compute_full': _total(results, 'compute_full')}
  _write_json(path, summary)
  from proxy_tasks import plots  # pylint: disable=g-import-not-at-top  (matplotlib: slow)
  plots.proxy_search(os.path.join(job_dir, PROXY_SEARCH_PLOT), results,
                     threshold, best)
  print(f'best proxy: {best}, trained to step {results[best]["pass_step"]}'
        if best else f'no candidate reached kendall tau {threshold:g}')
  print('all candidates: ' + _spent_text(summary['compute_spent'],
                                         summary['compute_full']))
  print(f'wrote {path} and {os.path.join(job_dir, PROXY_SEARCH_PLOT)}')
  return summary
