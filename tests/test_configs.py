"""Every shipped config loads into the experiment its name's task implies."""

import pytest

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
  assert len(pairs) == 10
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
