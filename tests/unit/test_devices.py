"""The accelerator a trial trains on and the config it defaults to, for
given visible devices: no hardware needed."""

import pytest

import configs
from trainer.training import devices

SHIPPED = configs.shipped()


@pytest.mark.parametrize('requested, tpu, gpus, environ, expected', [
    ('auto', '', 0, {}, 'cpu'),
    ('auto', '', 1, {}, 'gpu'),
    ('auto', '', 2, {}, 'gpu'),
    ('auto', 'grpc://10.0.0.2:8470', 0, {}, 'tpu'),
    ('auto', '', 0, {'TPU_NAME': 'my-tpu'}, 'tpu'),
    ('cpu', '', 2, {}, 'cpu'),
    ('gpu', '', 1, {}, 'gpu'),
    ('tpu', '', 0, {}, 'tpu'),
])
def test_resolve(requested, tpu, gpus, environ, expected):
  assert devices.resolve(requested, tpu, gpus, environ) == expected


def test_a_gpu_nobody_sees_is_a_one_line_error():
  with pytest.raises(ValueError, match='sees no GPU') as raised:
    devices.resolve('gpu', '', 0, {})
  assert '\n' not in str(raised.value)
  with pytest.raises(ValueError, match='must be one of'):
    devices.resolve('npu', '', 0, {})


@pytest.mark.parametrize('accelerator, stage, expected', [
    ('cpu', 'search', 'spinenet_detection_search_cpu'),
    ('gpu', 'search', 'spinenet_detection_search_gpu'),
    ('tpu', 'search', 'spinenet_detection_search_tpu'),
    ('gpu', 'train', 'spinenet_detection_train_gpu'),
])
def test_default_config_follows_the_accelerator(accelerator, stage, expected):
  assert devices.default_config('spinenet', 'spinenet', 'detection', stage,
                                accelerator, SHIPPED) == expected
  assert expected in SHIPPED


def test_user_spaces_fall_back_to_their_family_and_tpu_training_needs_a_file():
  assert devices.default_config('my_space', 'mnasnet', 'classification',
                                'search', 'gpu', SHIPPED) == (
                                    'mnasnet_classification_search_gpu')
  with pytest.raises(ValueError, match='no shipped train_tpu config'):
    devices.default_config('mnasnet', 'mnasnet', 'classification', 'train',
                           'tpu', SHIPPED)


@pytest.mark.parametrize('accelerator, visible, expected', [
    ('gpu', 1, 1), ('gpu', 2, 2), ('cpu', 2, 0), ('tpu', 0, 0)])
def test_num_gpus_follows_what_the_process_sees(accelerator, visible,
                                                expected):
  assert devices.num_gpus(accelerator, visible) == expected


@pytest.mark.parametrize('value, expected', [
    ('0,1', ['0', '1']), (' 2, 3 ', ['2', '3']), ('1,-1,2', ['1']),
    ('-1', []), ('', []), ('GPU-8a3b,GPU-77f0', ['GPU-8a3b', 'GPU-77f0'])])
def test_cuda_visible_devices_names_the_machines_gpus(value, expected):
  assert devices.machine_gpus({'CUDA_VISIBLE_DEVICES': value,
                               'PATH': ''}) == expected


def _fake_nvidia_smi(bin_dir, script):
  path = bin_dir / 'nvidia-smi'
  path.write_text('#!/bin/sh\n' + script)
  path.chmod(0o755)


@pytest.mark.parametrize('script, expected', [
    ('[ "$1" = --query-gpu=index ] && printf "0\\n1\\n2\\n3\\n"',
     ['0', '1', '2', '3']),
    ('echo "NVIDIA-SMI has failed: no driver"; exit 9', []),
])
def test_without_cuda_visible_devices_nvidia_smi_lists_them(tmp_path, script,
                                                             expected):
  _fake_nvidia_smi(tmp_path, script)
  assert devices.machine_gpus({'PATH': str(tmp_path)}) == expected


def test_no_nvidia_smi_means_no_gpu(tmp_path):
  assert devices.machine_gpus({'PATH': str(tmp_path)}) == []


@pytest.mark.parametrize('names, expected', [
    ([], 'CPU'), (['NVIDIA H200'], 'GPU:0 NVIDIA H200'),
    (['NVIDIA H200'] * 2, 'GPU:0 NVIDIA H200 x2')])
def test_device_label(names, expected):
  assert devices.device_label(names) == expected
