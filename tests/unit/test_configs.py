"""Every shipped config loads into the experiment its name's task implies;
shipped configs are layers of files, and --config_file lists apply in order."""

import os

import pytest
import yaml

import configs
from trainer.training import experiments
from trainer.training import trial

TASK_EXPERIMENTS = {family.name: experiment
                    for experiment, family in trial.TASK_FAMILIES.items()}


@pytest.mark.parametrize('name', configs.shipped())
def test_shipped_config_loads(name):
  space, task, stage, hardware = name.rsplit('_', 3)
  assert stage in ('search', 'train') and hardware in ('cpu', 'gpu', 'tpu')
  params = experiments.load_experiment_config(
      TASK_EXPERIMENTS[task], configs.resolve(name))
  assert params.trainer.train_steps > 0
  if hardware == 'cpu':
    assert params.runtime.num_gpus == 0
    assert params.trainer.train_steps <= 500  # Tiny proxies stay tiny.


def test_every_space_and_task_has_the_five_configs():
  names = set(configs.shipped())
  pairs = {name.rsplit('_', 2)[0] for name in names}
  assert len(pairs) == 16
  for pair in pairs:
    for suffix in ('search_cpu', 'search_gpu', 'search_tpu', 'train_cpu',
                   'train_gpu'):
      assert f'{pair}_{suffix}' in names


def test_overrides_read_exponent_floats_as_model_garden_does():
  # Plain safe YAML reads 1e-3 as a string, which Model Garden would then
  # pass to the optimizer as an initializer name.
  assert experiments.parse_override('a.b=1e-3,c=2,d=2.5E+2,e=abc') == {
      'a': {'b': 0.001}, 'c': 2, 'd': 250.0, 'e': 'abc'}
  params = experiments.load_experiment_config(
      'nas_image_classification',
      configs.resolve('mnasnet_classification_search_cpu'),
      'trainer.optimizer_config.learning_rate.constant.learning_rate=1e-3')
  assert params.trainer.optimizer_config.learning_rate.constant.learning_rate == 0.001


def _merged(paths):
  """The files' mappings merged in order, nested keys merged, later wins."""
  def merge(into, mapping):
    for key, value in mapping.items():
      if isinstance(value, dict) and isinstance(into.get(key), dict):
        merge(into[key], value)
      else:
        into[key] = value
  merged = {}
  for path in paths:
    with open(path) as f:
      merge(merged, yaml.load(f, Loader=experiments.ConfigLoader))
  return merged


def _load(name_or_files, experiment='nas_image_classification', override=''):
  return experiments.load_experiment_config(
      experiment, configs.resolve(name_or_files), override)


@pytest.mark.parametrize(
    'name', [n for n in configs.shipped() if n.endswith(('_gpu', '_tpu'))])
def test_layered_config_is_its_base_merged_with_its_overlays(name, tmp_path):
  space, task, _, hardware = name.rsplit('_', 3)
  files = configs.layers(name)
  assert len(files) > 1
  assert files[0] == os.path.join(configs.CONFIG_DIR, f'{space}_{task}.yaml')
  assert files[-1] == os.path.join(configs.CONFIG_DIR, f'{hardware}.yaml')
  # Today's spellings of a shipped config all mean its layers.
  for spelling in (name, name + '.yaml', f'configs/{name}.yaml'):
    assert configs.resolve(spelling) == ','.join(files)
  merged = _merged(files)
  text = configs.text(configs.resolve(name))
  assert yaml.load(text, Loader=experiments.ConfigLoader) == merged
  # The name, its files listed one by one, and its text as one file all
  # load the same config.
  one = tmp_path / 'merged.yaml'
  one.write_text(text)
  experiment = TASK_EXPERIMENTS[task]
  params = _load(name, experiment).as_dict()
  assert _load(','.join(files), experiment).as_dict() == params
  assert _load(str(one), experiment).as_dict() == params
  assert params['runtime']['distribution_strategy'] == (
      'mirrored' if hardware == 'gpu' else 'tpu')


def test_every_layer_file_is_used_and_every_layer_exists():
  used = {f for name in configs.shipped() for f in configs.layers(name)}
  assert all(os.path.isfile(f) for f in used)
  on_disk = {os.path.join(configs.CONFIG_DIR, f)
             for f in os.listdir(configs.CONFIG_DIR) if f.endswith('.yaml')}
  assert on_disk == used
  assert not set(configs.shipped()) & {
      os.path.basename(f)[:-5] for f in on_disk}  # Layers are not names.


def test_config_file_list_applies_in_order_later_wins(tmp_path):
  first, second = tmp_path / 'first.yaml', tmp_path / 'second.yaml'
  first.write_text('trainer: {train_steps: 150, max_to_keep: 2}\n')
  second.write_text('trainer:\n  train_steps: 250\n')
  params = _load(f'mnasnet_classification_search_cpu,{first},{second}')
  assert params.trainer.train_steps == 250  # second over first
  assert params.trainer.max_to_keep == 2  # first over the shipped config
  assert params.task.model.input_size == [64, 64, 3]  # the shipped config
  assert _load(f'mnasnet_classification_search_cpu,{second},{first}'
               ).trainer.train_steps == 150
  # A shipped name later in the list overrides the files before it.
  assert _load(f'{first},mnasnet_classification_search_cpu'
               ).trainer.train_steps == 400  # the shipped config's
  assert configs.resolve(f' {first} , {second} ') == f'{first},{second}'
  merged = yaml.load(configs.text(configs.resolve(f'{first},{second}')),
                     Loader=experiments.ConfigLoader)
  assert merged == {'trainer': {'train_steps': 250, 'max_to_keep': 2}}


def test_a_single_file_stays_a_single_path_and_its_text(tmp_path):
  path = tmp_path / 'mine.yaml'
  text = '# mine\ntrainer: {train_steps: 1e2}\n'
  path.write_text(text)
  assert configs.resolve(str(path)) == str(path)
  assert configs.text(configs.resolve(str(path))) == text
  assert configs.resolve('/no/such/config.yaml') == '/no/such/config.yaml'
  # A shipped layer file alone, by its name.
  assert configs.resolve('mnasnet_classification_tiny') == os.path.join(
      configs.CONFIG_DIR, 'mnasnet_classification_tiny.yaml')


def test_text_quotes_strings_that_would_read_back_as_floats(tmp_path):
  first, second = tmp_path / 'first.yaml', tmp_path / 'second.yaml'
  first.write_text("a: '1e-3'\n")
  second.write_text('b: 2e-3\n')
  assert yaml.load(configs.text(f'{first},{second}'),
                   Loader=experiments.ConfigLoader) == {'a': '1e-3', 'b': 0.002}


@pytest.mark.parametrize('second, expected', [
    ('/no/such/second.yaml', 'config file not found: /no/such/second.yaml'),
    ('bad.yaml', '{tmp}/bad.yaml is not valid YAML: '),
    ('list.yaml', '{tmp}/list.yaml must hold a YAML mapping of config keys'),
    ('unknown.yaml', 'cannot apply config file {tmp}/unknown.yaml: '),
])
def test_a_bad_file_in_the_list_gets_a_one_line_error_naming_it(
    second, expected, tmp_path):
  (tmp_path / 'bad.yaml').write_text('task: [unclosed\n')
  (tmp_path / 'list.yaml').write_text('- 1\n')
  (tmp_path / 'unknown.yaml').write_text('task: {no_such_field: 1}\n')
  path = second if second.startswith('/') else str(tmp_path / second)
  with pytest.raises(experiments.ConfigError) as e:
    _load(f'mnasnet_classification_search_cpu,{path}')
  message = str(e.value)
  assert message.startswith(expected.format(tmp=tmp_path)), message
  assert '\n' not in message
