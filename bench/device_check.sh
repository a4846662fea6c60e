#!/usr/bin/env bash
# The accelerator check (issue 14): at most 8 minutes on one GPU, run as is
# from any directory on a machine with an accelerator.
#
#   (a) the tiny MnasNet trial with the gpu config on the first GPU and with
#       the cpu config on the CPU: steady steps/s of each and their ratio;
#   (b) a 2-trial --executor=ray --gpus_per_trial=1 search: each trial's
#       recorded device;
#   (c) a float16 trial: the tiny cpu config with --mixed_precision on the GPU;
#   (d) latency of (a)'s models, measured after training in a separate
#       process on each trial's own device, and that device;
#   (e) one SpineNet RetinaNet trial with the search_gpu config shortened to
#       SPINENET_STEPS steps: steady steps/s and AP;
#   (f) one RegNetY trial with the search_gpu config (native grouped convs)
#       on the built-in shapes at 64 px: steady steps/s and its device.
#
# Without a GPU it says so in one line and runs the CPU parts only. It ends
# with one JSON line of the figures (null where a part did not run). A part
# that fails is listed under "failed", its log kept, and the script exits 1.
#
# Usage: bash bench/device_check.sh [--smoke]
#   PYTHON: the interpreter (default: the repo's .venv/bin/python)
#   PART_TIMEOUT_S: a part still running after this long fails (default 240)
#   --smoke: trials of a few steps (about 30 s without a GPU); the figures
#            mean nothing.

set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
PART_TIMEOUT_S=${PART_TIMEOUT_S:-240}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

case "${1:-}" in
  --smoke) STEPS=4 PER_LOOP=2 SPINENET_STEPS=4 SPINENET_PER_LOOP=2 ;;
  '') STEPS=200 PER_LOOP=50 SPINENET_STEPS=120 SPINENET_PER_LOOP=40 ;;
  *) echo "usage: bash bench/device_check.sh [--smoke]" >&2; exit 2 ;;
esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nas_garden_device_check_XXXXXX")
FIXTURES=tests/fixtures/vertex_nas_params
# The tiny MnasNet of configs/mnasnet_classification_search_cpu with the GPU
# layer in place of the CPU one.
TINY_GPU_CONFIG=configs/mnasnet_classification.yaml,configs/mnasnet_classification_tiny.yaml,configs/gpu.yaml
FAILED=()

steps() {  # train steps, steps per loop: a --params_override, one evaluation
  echo "trainer.train_steps=$1,trainer.validation_interval=$1,trainer.checkpoint_interval=$1,trainer.steps_per_loop=$2,trainer.summary_interval=$2"
}

run_part() {  # name, command...: runs it logging to $WORK/<name>.log
  local name=$1 started=$SECONDS status
  shift
  timeout --kill-after=10 "$PART_TIMEOUT_S" "$@" >"$WORK/$name.log" 2>&1
  status=$?
  if [[ $status -eq 0 ]]; then
    echo "$name: done in $((SECONDS - started)) s"
    return
  fi
  [[ $status -eq 124 ]] && echo "$name: timed out after $PART_TIMEOUT_S s"
  echo "$name: FAILED after $((SECONDS - started)) s, see $WORK/$name.log"
  FAILED+=("$name")
}

trial() {  # name, CUDA_VISIBLE_DEVICES, flags...: trial 1 of job $WORK/<name>
  local name=$1 visible=$2
  shift 2
  run_part "$name" env CUDA_VISIBLE_DEVICES="$visible" "$PYTHON" -m trainer.task \
    --mode=trial --job_dir="$WORK/$name" --trial_id=1 --seed=7 "$@"
}

first_sample() {  # fixture space -> its first nas_params_str, in a file
  "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["nas_params_str_samples"][0])' \
    "$FIXTURES/$1.json" >"$WORK/$1.json"
}

first_sample mnasnet && first_sample spinenet || exit 1
GPUS=$("$PYTHON" -c 'from trainer.training import devices; print(",".join(devices.machine_gpus()))') || exit 1
echo "device check in $WORK: $STEPS MnasNet steps, $SPINENET_STEPS SpineNet steps"

# (a, d) CPU: no GPU visible, so nothing of it runs on one.
trial cpu '' --search_space=mnasnet --nas_params_str="$WORK/mnasnet.json" \
  --config_file=mnasnet_classification_search_cpu --accelerator=cpu \
  --measure_latency --params_override="$(steps "$STEPS" "$PER_LOOP")"

if [[ -z $GPUS ]]; then
  echo "no GPU on this machine (none in CUDA_VISIBLE_DEVICES or nvidia-smi): ran the CPU parts only"
else
  GPU=${GPUS%%,*}
  # (e)'s 512 px scenes are drawn meanwhile (CPU only), where its trial looks
  # for built-in data (trial.py: <job_dir>/data/scenes_<size>).
  "$PYTHON" -c 'import sys; from trainer.datasets import scenes; scenes.make_scenes(sys.argv[1], image_size=512)' \
    "$WORK/spinenet/data/scenes_512" >"$WORK/scenes.log" 2>&1 &
  SCENES=$!
  # (a, d) GPU
  trial gpu "$GPU" --search_space=mnasnet --nas_params_str="$WORK/mnasnet.json" \
    --config_file="$TINY_GPU_CONFIG" --accelerator=gpu --measure_latency \
    --params_override="$(steps "$STEPS" "$PER_LOOP")"
  # (c)
  trial float16 "$GPU" --search_space=mnasnet --nas_params_str="$WORK/mnasnet.json" \
    --config_file=mnasnet_classification_search_cpu --accelerator=gpu \
    --mixed_precision --params_override="$(steps "$STEPS" "$PER_LOOP")"
  # (b) every GPU of the machine, as Ray finds them
  run_part ray "$PYTHON" -m trainer.task --mode=search --job_dir="$WORK/ray" \
    --search_space=mnasnet --max_trials=2 --max_parallel_trials=2 \
    --executor=ray --gpus_per_trial=1 --config_file="$TINY_GPU_CONFIG" \
    --accelerator=gpu --params_override="$(steps "$STEPS" "$PER_LOOP")" --seed=7
  wait "$SCENES" || echo "drawing the scenes failed (see $WORK/scenes.log): the trial draws them"
  # (e) the whole validation set (gpu.yaml) of 64 scenes in batches of 16.
  trial spinenet "$GPU" --search_space=spinenet --nas_params_str="$WORK/spinenet.json" \
    --config_file=spinenet_detection_search_gpu --accelerator=gpu \
    --params_override="$(steps "$SPINENET_STEPS" "$SPINENET_PER_LOOP"),task.validation_data.global_batch_size=16"
  # (f) RegNetY near 200MF: grouped convs run natively on the GPU (a CPU
  # convolves the groups one by one), on the built-in shapes at 64 px.
  "$PYTHON" -c 'import pyglove as pg, search_spaces as s
space = s.get_search_space("regnet_y")
dna = pg.template(space).encode(s.RegNetSpec(depth=13, w0=24, wa=40.0, wm=2.5, group_width=8, block_type="y"))
dna.use_spec(pg.dna_spec(space))
print(s.nas_params_from_dna(dna))' >"$WORK/regnet_y.json" &&
  trial regnet "$GPU" --search_space=regnet_y --nas_params_str="$WORK/regnet_y.json" \
    --config_file=regnet_classification_search_gpu --accelerator=gpu \
    --params_override="$(steps "$STEPS" "$PER_LOOP"),task.model.input_size=[64,64,3]"
fi

"$PYTHON" - "$WORK" "$GPUS" "$SECONDS" "${FAILED[@]}" <<'EOF'
"""Reads each part's metrics.json; prints a summary, then the JSON line."""
import json
import os
import sys

work, gpus, wall_s, failed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]


def metrics(job, trial_id=1):
  path = os.path.join(work, job, 'trials', str(trial_id), 'metrics.json')
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def rounded(value, digits=3):
  return round(value, digits) if isinstance(value, float) else value


cpu, gpu, float16, spinenet, regnet = map(
    metrics, ('cpu', 'gpu', 'float16', 'spinenet', 'regnet'))
ray = [metrics('ray', i) for i in (1, 2)]
ratio = (gpu['steady_steps_per_s'] / cpu['steady_steps_per_s']
         if gpu.get('steady_steps_per_s') and cpu.get('steady_steps_per_s')
         else None)
figures = {
    'gpus': len(gpus.split(',')) if gpus else 0,
    'cpu_steps_per_s': rounded(cpu.get('steady_steps_per_s')),
    'cpu_device': cpu.get('device'),
    'cpu_latency_ms': rounded(cpu.get('latency_ms')),
    'cpu_latency_device': cpu.get('latency_device'),
    'gpu_steps_per_s': rounded(gpu.get('steady_steps_per_s')),
    'gpu_cpu_ratio': rounded(ratio),
    'gpu_device': gpu.get('device'),
    'gpu_compute_dtype': gpu.get('compute_dtype'),
    'gpu_latency_ms': rounded(gpu.get('latency_ms')),
    'gpu_latency_device': gpu.get('latency_device'),
    'ray_trial_devices': [m.get('device') for m in ray] if any(ray) else None,
    'float16_steps_per_s': rounded(float16.get('steady_steps_per_s')),
    'float16_compute_dtype': float16.get('compute_dtype'),
    'spinenet_steps_per_s': rounded(spinenet.get('steady_steps_per_s')),
    'spinenet_AP': rounded(spinenet.get('AP'), 4),
    'regnet_steps_per_s': rounded(regnet.get('steady_steps_per_s')),
    'regnet_device': regnet.get('device'),
    'wall_s': int(wall_s),
    'failed': failed,
}
for key, value in figures.items():
  print(f'{key:>22}  {value}')
print(json.dumps(figures))
EOF
[[ ${#FAILED[@]} -eq 0 ]]
