"""The job report (one offline HTML page) and its TensorBoard HParams runs,
read from real stores: a search with completed, failed and infeasible
trials and two of its architectures retrained in a 'train' stage."""

import base64
import html
import json
import os
import random
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pyglove as pg
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

import search_spaces
from tests.conftest import FIXTURES
from trainer import report
from trainer.controller import leaderboard
from trainer.controller import store as store_lib

SEARCH_IDENTITY = {
    'search_space': 'mnasnet', 'algorithm': 'random', 'seed': 1,
    'experiment': 'nas_image_classification',
    'config': 'task:\n  model:\n    input_size: [32, 32, 3]\n',
    'params_override': 'trainer.train_steps=40', 'train_data': '', 'eval_data': '',
    'reward_exponent': 1.0, 'reward_mode': 'hard',
    'quality_metric': 'top_1_accuracy',
    'max_flops_multi_adds_billion': 0.01, 'early_stopping': 'none',
    'target_flops_multi_adds_billion': 0.003, 'target_device_latency_ms': 0.0,
    'target_memory_mb': 0.0,
}
# Search trials: id -> (top-1 accuracy, MAdds (B), latency ms). Reward is
# accuracy * min(1, 0.003 / MAdds): trial 2 is best (0.85), trial 6 the most
# accurate (0.90) but over the FLOPs target (reward 0.675).
COMPLETED = {1: (0.80, 0.0020, 4.0), 2: (0.85, 0.0030, 8.0),
             3: (0.70, 0.0025, 3.0), 6: (0.90, 0.0040, 7.0)}
FLOPS_FRONT = {1, 2, 6}    # Trial 3 costs more than 1 and is less accurate.
LATENCY_FRONT = {1, 3, 6}  # Trial 6 is faster and more accurate than 2.
FAILED, INFEASIBLE, BEST = 4, 5, 2
# Where search trials trained: this one on two GPUs, the others on the CPU.
GPU_TRIAL, GPU_DEVICE = 6, 'GPU:0 NVIDIA H200 x2'
# Train trials: id -> (search trial retrained, full accuracy).
RETRAINED = {1: (2, 0.93), 2: (1, 0.91)}


def mnasnet_params(count):
  """The fixture's Vertex strings, then random members of the space."""
  with open(os.path.join(FIXTURES, 'mnasnet.json')) as f:
    samples = json.load(f)['nas_params_str_samples']
  spec = pg.dna_spec(search_spaces.get_search_space('mnasnet'))
  rng = random.Random(0)
  while len(samples) < count:
    samples.append(search_spaces.nas_params_from_dna(pg.random_dna(spec, rng)))
  return samples[:count]


def trial_metrics(accuracy, flops, latency=None):
  """Metrics as trial.run reports them, with two evaluations."""
  metrics = {
      'top_1_accuracy': accuracy, 'validation_loss': 1.0 - accuracy,
      'multi_add_flops_billion': flops,
      'params': int(flops * 4e7), 'train_steps': 40, 'steady_steps_per_s': 9.5,
      'device': 'CPU', 'replicas': 1,
      'setup_s': 4.0, 'train_and_eval_s': 18.0, 'total_s': 22.5,
      'evaluations': [
          {'top_1_accuracy': accuracy - 0.1, 'validation_loss': 1.2, 'step': 20},
          {'top_1_accuracy': accuracy, 'validation_loss': 1.0 - accuracy,
           'step': 40}],
  }
  if latency is not None:
    metrics.update(latency_ms=latency, memory_mb=12.5)
  return metrics


def search_reward(accuracy, flops):
  return accuracy * min(1.0, SEARCH_IDENTITY['target_flops_multi_adds_billion'] /
                        flops)


def make_search(job_dir):
  """The search stage: completed trials, one failed, one infeasible."""
  store = store_lib.Store.open(job_dir, create=True)
  store.claim_identity('search', SEARCH_IDENTITY)
  params = mnasnet_params(6)
  for trial_id in range(1, 7):
    store.add_trial('search', params[trial_id - 1])
    if trial_id in COMPLETED:
      accuracy, flops, latency = COMPLETED[trial_id]
      metrics = trial_metrics(accuracy, flops, latency)
      if trial_id == GPU_TRIAL:
        metrics.update(device=GPU_DEVICE, replicas=2)
      store.complete_trial('search', trial_id, metrics,
                           search_reward(accuracy, flops))
    elif trial_id == FAILED:
      store.fail_trial('search', trial_id, 'ResourceExhaustedError: OOM when '
                       'allocating tensor with shape [32,320,8,8]')
    else:
      store.finish_trial('search', trial_id, store_lib.INFEASIBLE,
                         {'multi_add_flops_billion': 0.02}, 0.0,
                         'estimated 0.02 B multiply-adds exceed the budget 0.01 B')
  return store


def retrain(store, search_trial_id, full_accuracy):
  """A 'train' trial: a search trial's architecture trained in full."""
  if store.job_identity('train') is None:  # As the train stage records it.
    store.claim_identity('train', dict(SEARCH_IDENTITY, algorithm='fixed'))
  searched = store.trial('search', search_trial_id)
  trial = store.add_trial('train', searched.nas_params_str)
  metrics = trial_metrics(full_accuracy, searched.metrics['multi_add_flops_billion'])
  metrics['search_trial_id'] = search_trial_id
  store.complete_trial('train', trial.id, metrics, full_accuracy)


@pytest.fixture
def job_dir(tmp_path):
  job = str(tmp_path / 'job')
  store = make_search(job)
  for search_trial_id, full_accuracy in RETRAINED.values():
    retrain(store, search_trial_id, full_accuracy)
  store.close()
  return job


class Elements(HTMLParser):
  """Every start tag's attributes, with the id of the chart it is inside."""

  def __init__(self, text):
    super().__init__()
    self.elements, self._chart = [], None
    self.feed(text)

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'svg':
      self._chart = attrs.get('id')
    self.elements.append((tag, attrs, self._chart))

  def handle_endtag(self, tag):
    if tag == 'svg':
      self._chart = None

  def marked(self, chart_id, css_class):
    """Trial ids of a chart's markers of one class."""
    return {int(a['data-trial']) for tag, a, chart in self.elements
            if chart == chart_id and tag == 'circle' and 'data-trial' in a and
            css_class in a.get('class', '').split()}


def read(path):
  with open(path) as f:
    return f.read()


def test_report_shows_trials_best_and_pareto_fronts(job_dir):
  path = report.write_report(job_dir)
  assert path == os.path.join(job_dir, 'report.html')
  text = read(path)
  page = Elements(text)
  loads = [a[key] for _, a, _ in page.elements for key in ('src', 'href')
           if key in a]
  assert loads and not [u for u in loads if re.match(r'(https?:)?//', u)]
  assert not re.search(r'url\(\s*[\'"]?(https?:)?//|@import', text)
  assert not [a for tag, a, _ in page.elements if tag == 'script' and 'src' in a]

  store = store_lib.Store.open(job_dir, read_only=True)
  best = store.trial('search', BEST)
  assert re.search(rf'id="search-best">{BEST}<', text)
  assert html.escape(best.nas_params_str) in text
  rows = {a['id']: a.get('class') for tag, a, _ in page.elements if tag == 'tr'
          and a.get('id', '').endswith(tuple(f'-trial-{i}' for i in range(1, 7)))}
  assert set(rows) == {f'search-trial-{i}' for i in range(1, 7)} | {
      f'train-trial-{i}' for i in RETRAINED}
  assert rows[f'search-trial-{BEST}'] == 'best'
  assert rows['train-trial-1'] == 'best'  # The higher full accuracy.
  assert 'OOM when allocating' in text and 'exceed the budget' in text
  assert f'top_1_accuracy <b>{COMPLETED[BEST][0]:.4f}</b>' in text
  assert '4 completed, 1 failed, 1 infeasible' in text
  headers = [a.get('title') for tag, a, _ in page.elements if tag == 'th']
  assert {'sort by reward', 'sort by latency (ms)', 'sort by search trial'} <= set(
      headers)

  flops_chart = 'search-pareto-multi_add_flops_billion'
  assert page.marked(flops_chart, 'front') == FLOPS_FRONT
  assert page.marked(flops_chart, 'dominated') == set(COMPLETED) - FLOPS_FRONT
  assert page.marked('search-pareto-latency_ms', 'front') == LATENCY_FRONT
  assert page.marked('search-progress', 'infeasible') == {INFEASIBLE}
  assert page.marked('search-progress', 'reward') == set(COMPLETED)
  assert page.marked('proxy-vs-full', 'reward') == set(RETRAINED)
  assert 'Kendall τ needs at least 3' in text
  # The best MnasNet drawn: the stem and seven block groups.
  assert text.count('<rect class="block ') == 8


def test_leaderboard_and_report_show_where_each_trial_trained(job_dir):
  store = store_lib.Store.open(job_dir, read_only=True)
  table = leaderboard.table(store.trials('search'), lambda p: 'arch',
                            'top_1_accuracy').splitlines()
  assert table[0].split()[6:] == ['device', 'architecture']
  rows = {int(line.split()[1]): line for line in table[1:-1]}
  assert set(rows) == set(COMPLETED)
  assert f'  {GPU_DEVICE} (2 replicas)  arch' in rows[GPU_TRIAL]
  assert all(' CPU ' in rows[i] for i in set(COMPLETED) - {GPU_TRIAL})

  text = read(report.write_report(job_dir))
  cells = {int(row): re.findall(r'<td data-value="([^"]*)"', cells)
           for row, cells in re.findall(
               r'<tr id="search-trial-(\d+)"[^>]*>(.*?)</tr>', text)}
  headers = re.findall(r'<th [^>]*>([^<]*)</th>', text.split(
      'id="search-trials"')[1].split('</thead>')[0])
  device = headers.index('device')
  assert cells[GPU_TRIAL][device] == f'{GPU_DEVICE} (2 replicas)'
  assert cells[BEST][device] == 'CPU'
  assert cells[FAILED][device] == ''  # No metrics: nowhere to show.


def test_report_ranks_proxy_against_full_training(job_dir):
  store = store_lib.Store.open(job_dir)
  retrain(store, 3, 0.95)  # Worst proxy, best full: two discordant pairs.
  store.close()
  text = read(report.write_report(job_dir))
  assert re.search(r'id="kendall-tau">-0\.333<', text)


@pytest.mark.skipif(not shutil.which('chromium'),
                    reason='Chromium is not installed (apt-get install chromium)')
def test_report_renders_in_chromium_without_errors(job_dir, tmp_path):
  """Loads the page with a recorder of script errors, clicks the reward
  header, and reads the DOM the browser ends with."""
  text = read(report.write_report(job_dir))
  recorder = """<script>
    function recordError(message) {
      var root = document.documentElement;
      root.setAttribute('data-errors',
                        (root.getAttribute('data-errors') || '') + message + ';');
    }
    window.addEventListener('error', function (e) { recordError(e.message); });
    var consoleError = console.error;
    console.error = function () {
      recordError(Array.prototype.join.call(arguments, ' '));
      consoleError.apply(console, arguments);
    };
  </script>"""
  click = """<script>
    var headers = document.querySelectorAll('#search-trials th');
    Array.prototype.filter.call(headers, function (th) {
      return th.textContent === 'reward';
    })[0].click();
    document.body.setAttribute('data-order', Array.prototype.map.call(
        document.querySelectorAll('#search-trials tbody tr'),
        function (row) { return row.dataset.trial; }).join(','));
  </script>"""
  page = tmp_path / 'page.html'
  page.write_text(text.replace('<head>', '<head>' + recorder, 1)
                  .replace('</body>', click + '</body>', 1))
  result = subprocess.run(
      ['chromium', '--headless', '--disable-gpu', '--no-sandbox',
       f'--user-data-dir={tmp_path / "profile"}', '--enable-logging=stderr',
       '--v=0', '--dump-dom', page.as_uri()],
      capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  dom = result.stdout
  assert '</html>' in dom, result.stderr[-2000:]
  errors = re.search(r'data-errors="([^"]*)"', dom)
  assert errors is None, errors[1]
  assert not [line for line in result.stderr.splitlines() if ':CONSOLE' in line]
  assert re.search(rf'id="search-best">{BEST}<', dom)
  # Ascending reward; the failed trial, without one, last.
  assert 'data-order="5,6,3,1,2,4"' in dom


def test_report_of_a_job_without_completed_trials(tmp_path):
  job = str(tmp_path / 'job')
  store = store_lib.Store.open(job, create=True)
  store.claim_identity('search', SEARCH_IDENTITY)
  assert 'no trials yet' in read(report.write_report(job))

  params = mnasnet_params(2)
  store.add_trial('search', params[0])
  store.fail_trial('search', 1, 'trial process exited with code -9')
  store.add_trial('search', params[1])
  store.finish_trial('search', 2, store_lib.INFEASIBLE,
                     {'multi_add_flops_billion': 0.02}, 0.0, 'over budget')
  store.add_trial('search', params[1])  # Still running.
  text = read(report.write_report(job))
  assert 'No completed trial yet' in text
  assert 'No retrained trials yet' in text
  assert all(f'id="search-trial-{i}"' in text for i in (1, 2, 3))
  assert 'class="best"' not in text and 'search-pareto' not in text


def test_report_of_an_augmentation_search(tmp_path):
  """A policy search for a fixed SpineNet, with its augmentation preview."""
  job = str(tmp_path / 'job')
  with open(os.path.join(FIXTURES, 'randaugment_detection.json')) as f:
    policies = json.load(f)['nas_params_str_samples']
  with open(os.path.join(FIXTURES, 'spinenet.json')) as f:
    base = json.load(f)['nas_params_str_samples'][0]
  store = store_lib.Store.open(job, create=True)
  store.claim_identity('augment_search', dict(
      SEARCH_IDENTITY, search_space='randaugment_detection',
      base_search_space='spinenet', base_nas_params_str=base,
      quality_metric='AP'))
  for trial_id, policy in enumerate(policies, 1):
    store.add_trial('augment_search', policy)
    metrics = trial_metrics(0.2 + 0.01 * trial_id, 0.9)
    metrics['AP'] = metrics.pop('top_1_accuracy')
    store.complete_trial('augment_search', trial_id, metrics, metrics['AP'])
  store.close()
  preview = b'\x89PNG\r\n\x1a\n preview bytes'
  (tmp_path / 'job' / 'augment_preview.png').write_bytes(preview)

  text = read(report.write_report(job))
  best = len(policies)
  assert re.search(rf'id="augment_search-best">{best}<', text)
  assert 'fixed architecture from <b>spinenet</b>' in text
  spec = report.Architectures('randaugment_detection').spec(policies[-1])
  assert html.escape(search_spaces.architecture_summary(spec)) in text
  assert Elements(text).marked('augment_search-progress', 'reward') == set(
      range(1, best + 1))
  assert 'search-pareto' not in text and 'Proxy vs full' not in text
  assert 'data:image/png;base64,' + base64.b64encode(preview).decode() in text


@pytest.mark.parametrize('space_name, drawn, count', [
    ('mnasnet', '<rect class="block ', 8),
    ('efficientnet_v2', '<rect class="block ', 7),
    ('spinenet', '<rect class="node ', 18),
    ('nasfpn', '<rect class="node ', 12),
    ('spinenet_scaling', '<pre class="summary">', 1),
    ('regnet_x', '<rect class="block ', 5),  # Stem and the 200MF's 4 stages.
    ('nasnet', '<tr class="block">', 10),  # 5 blocks in each of two cells.
    ('tunable_unet_encoder', '<rect class="block ', 4),  # One per level.
    ('tunable_unet_nasfpn', '<rect class="node ', 10),  # 4 levels, 6 blocks.
    # Pillar net, 5 backbone groups, 3 decoder groups.
    ('pointpillars', '<rect class="block ', 9),
])
def test_architecture_drawings(space_name, drawn, count):
  """Block groups as boxes; SpineNet and NAS-FPN as graphs with two input
  edges per block that has inputs; other specs as their summary."""
  if space_name in search_spaces.vertex_search_spaces():
    with open(os.path.join(FIXTURES, f'{space_name}.json')) as f:
      nas_params_str = json.load(f)['nas_params_str_samples'][0]
  else:  # NASNet-A; near RegNetX-200MF (its wa, 36.44, is off the grid).
    space = search_spaces.get_search_space(space_name)
    dna = pg.template(space).encode(
        search_spaces.nasnet_a_spec() if space_name == 'nasnet' else
        search_spaces.RegNetSpec(depth=13, w0=24, wa=40.0, wm=2.5,
                                 group_width=8))
    dna.use_spec(pg.dna_spec(space))
    nas_params_str = search_spaces.nas_params_from_dna(dna)
  spec = report.Architectures(space_name).spec(nas_params_str)
  drawing = report.architecture_html(spec)
  assert drawing.count(drawn) == count
  assert drawing.count('<pre class="summary">') == 1
  if space_name == 'nasnet':  # NASNet-A's outputs by the paper's rule.
    assert ('output: concatenation of 2: block 0, 3: block 1, 4: block 2, '
            '5: block 3, 6: block 4') in drawing
    assert 'output: concatenation of 4: block 2, 5: block 3, 6: block 4' in (
        drawing)
  if hasattr(spec, 'block_sequence'):
    with_inputs = [b for _, b in spec.block_sequence() if b.input_offsets]
    assert drawing.count('<path class="edge') == 2 * len(with_inputs)
    outputs = ['1', '2', '3', '4'] if 'unet' in space_name else [
        '3', '4', '5', '6', '7']
    assert sorted(re.findall(r'>P(\d)</text>', drawing)) == outputs


def hparams_events(run_dir):
  """(hparams plugin data by tag, scalar values by tag) of a run."""
  events = event_accumulator.EventAccumulator(run_dir,
                                              size_guidance={'tensors': 0})
  events.Reload()
  plugin_data = {
      tag: plugin_data_pb2.HParamsPluginData.FromString(content)
      for tag, content in events.PluginTagToContent('hparams').items()}
  scalars = {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                   for e in events.Tensors(tag)]
             for tag in events.Tags()['tensors'] if not tag.startswith('_hparams_')}
  return plugin_data, scalars


def test_hparams_summaries_hold_one_run_per_trial(job_dir):
  root = report.write_hparams_summaries(job_dir)
  report.write_hparams_summaries(job_dir)  # Rebuilt, not appended to.
  assert root == os.path.join(job_dir, 'hparams')
  for stage, ids in (('search', range(1, 7)), ('train', RETRAINED)):
    stage_dir = os.path.join(root, stage)
    runs = {d for d in os.listdir(stage_dir)
            if os.path.isdir(os.path.join(stage_dir, d))}
    assert runs == {str(i) for i in ids}
    assert all(len(os.listdir(os.path.join(stage_dir, run))) == 1 for run in runs)

  experiment, _ = hparams_events(os.path.join(root, 'search'))
  info = experiment['_hparams_/experiment'].experiment
  names = {h.name for h in info.hparam_infos}
  nas_params = json.loads(mnasnet_params(BEST)[BEST - 1])
  assert names == set(nas_params) | {'trial_status'}
  filters = next(h for h in info.hparam_infos
                 if h.name == 'blocks[0].output_filters')
  assert [v.number_value for v in filters.domain_discrete.values] == [12, 16, 20]
  assert {m.name.tag for m in info.metric_infos} == {
      'top_1_accuracy', 'reward', 'multi_add_flops_billion', 'latency_ms',
      'memory_mb'}

  session, scalars = hparams_events(os.path.join(root, 'search', str(BEST)))
  start = session['_hparams_/session_start_info'].session_start_info
  assert start.group_name == f'search/{BEST}'
  assert start.hparams['trial_status'].string_value == 'completed'
  literal = {name: value.split('(', 1)[1][:-1] for name, value in nas_params.items()}
  assert start.hparams['blocks[0].block_fn'].string_value == (
      literal['blocks[0].block_fn'].strip("'"))
  assert start.hparams['blocks[0].output_filters'].number_value == int(
      literal['blocks[0].output_filters'])
  accuracy, flops, latency = COMPLETED[BEST]
  assert scalars['top_1_accuracy'] == [(20, pytest.approx(accuracy - 0.1)),
                                       (40, pytest.approx(accuracy))]
  assert scalars['reward'] == [(40, pytest.approx(search_reward(accuracy, flops)))]
  assert scalars['latency_ms'] == [(40, latency)]

  failed, scalars = hparams_events(os.path.join(root, 'search', str(FAILED)))
  assert failed['_hparams_/session_start_info'].session_start_info.hparams[
      'trial_status'].string_value == 'failed'
  assert not scalars
  _, scalars = hparams_events(os.path.join(root, 'train', '1'))
  assert scalars['top_1_accuracy'][-1] == (40, pytest.approx(RETRAINED[1][1]))
