"""Every Vertex fixture sample of each architecture space trains and evaluates.

One real train step and one evaluation batch per sample, through the same
config path as a trial (`trial.prepare`) and Model Garden's own task code,
run eagerly so no graph trace is paid per sample. The cheapest cases run in
`make test`; the SpineNet family (about 40 s a space) in `make test-all`.
"""

import json
import math
import os

import pytest

from official.core import task_factory
from tests.conftest import FIXTURES
from trainer import spec as spec_lib
from trainer.training import trial

ONE_STEP = ('trainer.train_steps=1,trainer.steps_per_loop=1,'
            'trainer.summary_interval=1,trainer.validation_interval=1,'
            'trainer.checkpoint_interval=1,task.train_data.global_batch_size=2,'
            'task.validation_data.global_batch_size=2')

# Each space in the task the Vertex platform uses it for (mnasnet also as a
# detection backbone; nasfpn and spinenet also for segmentation).
CASES = [
    ('mnasnet', 'nas_image_classification', 'top_1_accuracy'),
    ('mnasnet', 'nas_retinanet', 'AP'),
    ('efficientnet_v2', 'nas_retinanet', 'AP'),
    ('nasfpn', 'nas_retinanet', 'AP'),
    ('nasfpn', 'nas_semantic_segmentation', 'miou'),
    ('spinenet', 'nas_retinanet', 'AP'),
    ('spinenet', 'nas_semantic_segmentation', 'miou'),
    ('spinenet_v2', 'nas_retinanet', 'AP'),
    ('spinenet_mbconv', 'nas_retinanet', 'AP'),
    ('spinenet_scaling', 'nas_retinanet', 'AP'),
]


def _samples(space):
  with open(os.path.join(FIXTURES, f'{space}.json')) as f:
    return json.load(f)['nas_params_str_samples']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('data'))


IN_DEFAULT_SUITE = {('mnasnet', 'nas_image_classification'),
                    ('efficientnet_v2', 'nas_retinanet'),
                    ('nasfpn', 'nas_semantic_segmentation')}


@pytest.mark.parametrize('space, experiment, metric', [
    pytest.param(*case, marks=() if case[:2] in IN_DEFAULT_SUITE else pytest.mark.slow)
    for case in CASES])
def test_every_fixture_sample_trains_and_evaluates(data_dir, space, experiment,
                                                   metric):
  for sample in _samples(space):
    prepared = trial.prepare(
        spec_lib.TrialSpec(space, sample, experiment=experiment,
                           params_override=ONE_STEP), data_dir)
    params = prepared.params
    task = task_factory.get_task(params.task)
    model = task.build_model()
    optimizer = task.create_optimizer(params.trainer.optimizer_config,
                                      params.runtime)
    train_batch = next(iter(task.build_inputs(params.task.train_data)))
    logs = task.train_step(train_batch, model, optimizer,
                           metrics=task.build_metrics(training=True))
    assert math.isfinite(float(logs[task.loss]))

    eval_metrics = task.build_metrics(training=False)
    eval_batch = next(iter(task.build_inputs(params.task.validation_data)))
    step_logs = task.validation_step(eval_batch, model, metrics=eval_metrics)
    state = task.aggregate_logs(None, step_logs)
    reduced = task.reduce_aggregated_logs(state) if state is not None else {}
    reduced.update({m.name: m.result() for m in eval_metrics})
    family = trial.TASK_FAMILIES[experiment]
    value = float(reduced[family.eval_metric])
    assert family.reported_as == metric
    assert -1.0 <= value <= 1.0  # COCO reports -1 where no object qualifies.
