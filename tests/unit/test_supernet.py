"""The supernet holds every architecture of its space: a path computes what
the stand-alone Model Garden model of that architecture computes once the
shared weights are sliced into it, and masking equals the smaller kernel."""

import contextlib
import random

import numpy as np
import pyglove as pg
import pytest
import tensorflow as tf
import tf_keras

import search_spaces
from official.core import task_factory
from trainer import spec as spec_lib
from trainer.oneshot import supernet as supernet_lib
from trainer.training import trial

INPUT = 32


def _sizes(space):
  backbone = f'task.model.backbone.tunable_{space}'
  return (f'task.model.num_classes=7,task.model.input_size=[{INPUT},{INPUT},3],'
          f'{backbone}.filter_size_scale=0.25,'
          f'{backbone}.endpoints_num_filters=48')


def _prepared(space, nas_params_str, data):
  return trial.prepare(spec_lib.TrialSpec(
      search_space=space, nas_params_str=nas_params_str,
      experiment='nas_image_classification',
      config_file='mnasnet_classification_search_cpu',
      params_override=_sizes(space), train_data=data, eval_data=data))


def covering_dnas(space_name, extra=2):
  """DNAs that together take every candidate of every decision (the i-th
  takes candidate i mod n of each), and `extra` random ones."""
  dna_spec = pg.dna_spec(search_spaces.get_search_space(space_name))
  counts = [len(p.candidates) for p in dna_spec.decision_points]
  rng = random.Random(0)
  numbers = [[i % n for n in counts] for i in range(max(counts))]
  numbers += [[rng.randrange(n) for n in counts] for _ in range(extra)]
  return [pg.DNA.from_numbers(n, dna_spec) for n in numbers]


def _randomise_norms(model):
  """Batch norms whose statistics and affine terms are not the identity, so
  an inference pass would show a wrong slice."""
  rng = np.random.default_rng(1)
  for v in model.variables:
    if any(k in v.name for k in ('gamma', 'beta', 'moving_mean', 'bias')):
      v.assign(rng.uniform(-0.5, 0.5, v.shape) + (1 if 'gamma' in v.name
                                                  else 0))
    elif 'moving_variance' in v.name:
      v.assign(rng.uniform(0.5, 1.5, v.shape))


@contextlib.contextmanager
def _keras_policy(name):
  """The layers built inside compute in `name` (a global policy, which a
  trial run earlier in this process may have set to float32)."""
  before = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    tf_keras.mixed_precision.set_global_policy(before)


@pytest.fixture
def float64():
  """Both models in float64: the comparisons then show a wrong slice, not
  float32 summation order (a training-mode batch norm over 4 images
  amplified that past 1e-4 once). Floatx too: without it, training-mode
  outputs differed by 6e-6."""
  with _keras_policy('float64'):  # First: the default policy reads floatx.
    floatx = tf_keras.backend.floatx()
    tf_keras.backend.set_floatx('float64')
    try:
      yield tf.float64
    finally:
      tf_keras.backend.set_floatx(floatx)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  path = tmp_path_factory.mktemp('data') / 'empty.tfrecord'
  path.write_bytes(b'')
  return str(path)


@pytest.mark.parametrize('space', ['mnasnet', 'efficientnet_v2'])
def test_every_path_equals_its_standalone_model_with_the_shared_weights(
    space, data, float64):
  images = tf.random.stateless_uniform([4, INPUT, INPUT, 3], (0, 1),
                                      dtype=float64)
  first = _prepared(space, search_spaces.nas_params_from_dna(
      covering_dnas(space)[0]), data)
  net = supernet_lib.from_config(space, first.params.task.model)
  _randomise_norms(net)
  for dna in covering_dnas(space):
    prepared = _prepared(space, search_spaces.nas_params_from_dna(dna), data)
    model = task_factory.get_task(prepared.params.task).build_model()
    supernet_lib.copy_into(model, net, prepared.spec)
    numbers = tf.constant(dna.to_numbers(), tf.int32)
    for training in (False, True):
      expected = model(images, training=training)
      got = net(images, numbers, training=training)
      np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9,
                                 err_msg=f'{prepared.spec.summary()} '
                                 f'training={training}')
    tf.keras.backend.clear_session()


@pytest.mark.parametrize('strides', [1, 2])
@pytest.mark.parametrize('size', [7, 8])
def test_a_masked_largest_kernel_is_the_smaller_kernel(strides, size):
  kernel = tf.random.stateless_normal([5, 5, 6, 1], (2, 3))
  x = tf.random.stateless_normal([1, size, size, 6], (4, 5))
  masks = supernet_lib.kernel_masks([3, 5], 5)
  masked = tf.nn.depthwise_conv2d(x, kernel * masks[0][:, :, None, None],
                                  [1, strides, strides, 1], 'SAME')
  small = tf.nn.depthwise_conv2d(x, kernel[1:4, 1:4],
                                 [1, strides, strides, 1], 'SAME')
  np.testing.assert_allclose(masked, small, atol=1e-5)
  np.testing.assert_array_equal(masks[1], np.ones([5, 5]))


def test_a_space_without_a_supernet_is_a_one_line_error():
  with pytest.raises(ValueError, match='one-shot search covers mnasnet, '
                     'efficientnet_v2, not nasfpn'):
    supernet_lib.space_groups('nasfpn')


@pytest.mark.parametrize('space', ['mnasnet', 'efficientnet_v2'])
def test_the_rewards_multiply_adds_are_within_6_percent_of_a_trials_count(
    space, data):
  """The one-shot reward counts convolutions and the classifier; a trial's
  profiler count adds the element-wise ops (norms, residuals, gates)."""
  net = None
  for dna in covering_dnas(space, extra=0):
    prepared = _prepared(space, search_spaces.nas_params_from_dna(dna), data)
    net = net or supernet_lib.from_config(space, prepared.params.task.model)
    counted = trial.estimate_flops(prepared)
    ratio = supernet_lib.multiply_adds(
        net, dna.to_numbers(), prepared.params.task.model.input_size) / counted
    assert 0.94 <= ratio <= 1.0, prepared.spec.summary()


@pytest.mark.parametrize('space', ['mnasnet', 'efficientnet_v2'])
def test_a_training_step_on_a_path_is_the_standalone_models_step(
    space, data, float64):
  """Gradients flow to exactly the path's slices of the shared weights: one
  SGD step on a path (block types mixed) leaves the weights one
  SGD step on the stand-alone model gives."""
  images = tf.random.stateless_uniform([4, INPUT, INPUT, 3], (0, 1),
                                      dtype=float64)
  dna = covering_dnas(space, extra=1)[-1]  # Random: block types mixed.
  numbers = dna.to_numbers()
  prepared = _prepared(space, search_spaces.nas_params_from_dna(dna), data)
  net = supernet_lib.from_config(space, prepared.params.task.model)
  task = task_factory.get_task(prepared.params.task)
  stepped = task.build_model()
  supernet_lib.copy_into(stepped, net, prepared.spec)
  before = [w.numpy() for w in stepped.weights]
  weights = tf.random.stateless_normal([4, 7], (6, 7), dtype=float64)
  path = tf.constant(numbers, tf.int32)
  for model, call in ((stepped, lambda: stepped(images, training=True)),
                      (net, lambda: net(images, path, training=True))):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(call() * weights)
    variables = model.trainable_variables
    tf_keras.optimizers.SGD(0.5).apply_gradients(
        zip(tape.gradient(loss, variables), variables))
  copied = task.build_model()
  supernet_lib.copy_into(copied, net, prepared.spec)
  # Each weight's update equals the stand-alone one to 1e-8 of its size,
  # or 1e-8 where the true gradient is zero (a norm's beta before another
  # norm): only the threads' float64 summation order differs.
  for mine, theirs, start in zip(copied.weights, stepped.weights, before):
    error = np.linalg.norm(mine.numpy() - theirs.numpy())
    assert error <= 1e-8 * np.linalg.norm(theirs.numpy() - start) + 1e-8, (
        f'{theirs.name} of {prepared.spec.summary()}: {error}')
  moved = [w.name for w, b in zip(stepped.weights, before)
           if not np.allclose(w, b)]
  assert len(moved) > len(before) / 2, moved


@pytest.fixture
def mixed_bfloat16():
  with _keras_policy('mixed_bfloat16'):
    yield


@pytest.mark.usefixtures('mixed_bfloat16')
@pytest.mark.parametrize('space', ['mnasnet', 'efficientnet_v2'])
def test_a_path_trains_under_a_mixed_precision_policy(space, data):
  """The masks follow the layers' compute dtype (bfloat16 on TPU, float16 on
  GPU configs), so a path computes and has finite gradients."""
  dnas = covering_dnas(space, extra=1)
  prepared = _prepared(space, search_spaces.nas_params_from_dna(dnas[0]),
                       data)
  net = supernet_lib.from_config(space, prepared.params.task.model)
  images = tf.random.stateless_uniform([2, INPUT, INPUT, 3], (0, 1))
  for dna in (dnas[0], dnas[-1]):
    with tf.GradientTape() as tape:
      logits = net(images, tf.constant(dna.to_numbers(), tf.int32),
                   training=True)
      loss = tf.reduce_sum(tf.cast(logits, tf.float32))
    assert logits.dtype == tf.bfloat16
    gradients = [g for g in tape.gradient(loss, net.trainable_variables)
                 if g is not None]
    # Stem, head, classifier and a block of each of the 7 groups at least.
    assert len(gradients) > 20
    assert all(np.isfinite(tf.cast(g, tf.float32)).all() for g in gradients)


def test_a_path_is_recalibrated_once_until_the_supernet_trains(
    data, tmp_path, monkeypatch):
  """Evaluating the result and then saving it recalibrate its batch norms
  once; another path, or a (resumed) training run, recalibrates again."""
  from trainer.oneshot import search as oneshot  # pylint: disable=g-import-not-at-top
  dnas = covering_dnas('mnasnet', extra=0)
  run = oneshot.OneShotSearch(
      'mnasnet', _prepared('mnasnet', search_spaces.nas_params_from_dna(
          dnas[0]), data), oneshot.Settings(seed=0), str(tmp_path))
  drawn = []

  def batches(unused_config, unused_repeat):
    while True:
      drawn.append(1)
      yield (tf.random.stateless_uniform([2, INPUT, INPUT, 3], (0, 1)),
             tf.zeros([2], tf.int32))

  monkeypatch.setattr(run, '_dataset', batches)
  first, second = dnas[0].to_numbers(), dnas[1].to_numbers()
  per_path = oneshot.RECALIBRATION_BATCHES
  for numbers, total in ((first, per_path), (first, per_path),
                         (second, 2 * per_path), (first, 3 * per_path)):
    run.recalibrate(numbers)
    assert len(drawn) == total
  run.train_steps = 0  # A run that only restores (here: initialises).
  run.run(lambda unused_line: None)
  run.recalibrate(first)
  assert len(drawn) == 4 * per_path
