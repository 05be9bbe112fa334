#!/usr/bin/env bash
# The figures that need a GPU machine, in one run of at most 9 minutes, most important first:
#   1. speed: tools/bench_speed.py, every model (torchvision's of the same shape beside it), training
#      and inference, bf16, with a torch.profiler table of each training step;
#   2. the data pipeline with 15 workers (SSD300 and 600x1000 batches, pinned);
#   3. a shortened raccoon comparison, ours against torchvision's under the same recipe, for both
#      detectors: mAP@0.5, wall time and training images/s;
#   4. the GPU tests (pytest -m gpu), if time is left.
# Every step runs under `timeout`, so one slow or failing step costs its own time and no more; each
# result is written to $OUT (./gpu_out when unset) as soon as it exists, so a run cut short keeps what
# it finished. The step limits add up to 510 s; what a step needs is an estimate until the first run.
#
#   bash tools/gpu_checks.sh prepare   # on any machine with the internet, in the project root: the
#                                      # wheels the GPU machine may lack (.whl) and raccoon (.devdata)
#   bash tools/gpu_checks.sh run       # on the GPU machine, with .whl and .devdata copied beside it
#
# A GPU machine with torch and torchvision but without albumentations, pycocotools or pydantic gets
# them from .whl (installed into /tmp/site, nothing else is touched). Knobs (environment): DEVICE
# (default cuda), SSD_EPOCHS (default 40), FRCNN_EPOCHS (default 12), WORKERS (data.num_workers of
# the comparison, default 12), DATA_WORKERS and DATA_BATCHES (of the pipeline step, default 15 and
# 100), COMPARE_ARGS (more compare_raccoon.py arguments), BENCH_ARGS (bench_speed.py's model
# selection and sizes, default --model all). A dry run on a CPU-only machine tries every step's
# plumbing with tiny settings:
#   DEVICE=cpu SSD_EPOCHS=1 FRCNN_EPOCHS=1 WORKERS=1 DATA_WORKERS=2 DATA_BATCHES=4 \
#     COMPARE_ARGS="--max-images 4 --set input.min_size=160 --set input.max_size=160" \
#     BENCH_ARGS="--model ssd300 --batch-size 2 --repeats 1 --warmup 0" bash tools/gpu_checks.sh run
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
STAGE=${1:-}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-12}
DATA=.devdata/raccoon
RACCOON=(--set "data.root=$DATA" --set "data.classes=[raccoon]" --set data.train_split=train
         --set data.val_split=val --set model.pretrained=none)

use_environment() {
  export NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1
  if [ "$DEVICE" = cpu ]; then  # the dry run: the project's own environment
    export PATH="$PWD/.venv/bin:$PATH"
  else
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl || { echo "wheel install failed: run 'bash tools/gpu_checks.sh prepare' first" >&2; exit 1; }
    export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  python3 - <<'EOF' > "$OUT/env.txt" 2>&1
import os, platform, torch, torchvision
print("python", platform.python_version(), "torch", torch.__version__, "torchvision", torchvision.__version__)
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA", "cpus", os.cpu_count())
EOF
  cat "$OUT/env.txt"
}

step() {  # step LIMIT_S LOG COMMAND...: run under timeout, append stdout+stderr to LOG, log the exit status
  local limit=$1 log=$2; shift 2
  echo "== $(date +%T) $*" | tee -a "$log"
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  echo "== $(date +%T) exit ${PIPESTATUS[0]}" | tee -a "$log"
}

compare() {  # compare ARCH CONFIG EPOCHS LIMIT_S
  local arch=$1 config=$2 epochs=$3 limit=$4 out=runs/gpu/compare_$1
  # shellcheck disable=SC2086  # COMPARE_ARGS is a list of arguments
  step "$limit" "$OUT/compare_$arch.log" python3 tools/compare_raccoon.py --arch "$arch" --device "$DEVICE" \
    --data "$DATA" --epochs "$epochs" --out "$out" --"${arch//_/-}"-config "$config" "${RACCOON[@]}" \
    --set "data.num_workers=$WORKERS" --set "train.eval_every=$epochs" \
    --set "train.milestones=[$(( epochs * 2 / 3 )),$(( epochs * 5 / 6 ))]" ${COMPARE_ARGS:-}
  cp "$out/compare.json" "$OUT/compare_$arch.json" 2>/dev/null
}

stage_prepare() {
  bash ../shared/device/fetch-wheels.sh >/dev/null
  mkdir -p .devdata
  rm -rf "$DATA" && cp -r ../shared/data/raccoon "$DATA"
  du -sh .whl .devdata
}

stage_run() {
  use_environment
  # 1. speed. 30 training steps before inference: enough for the detectors' outputs to be realistic.
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
  step 210 "$OUT/speed.log" python3 tools/bench_speed.py --mode all --dtype bf16 --device "$DEVICE" \
    --train-steps 30 --repeats 10 --warmup 3 --json "$OUT/speed.json" --profile /tmp/profiles ${BENCH_ARGS:---model all}
  tar -czf "$OUT/profiles.tar.gz" -C /tmp profiles 2>/dev/null
  # 2. the data pipeline. Raccoon listed 40 times per epoch: its 160 images make too few batches for 15
  # workers at once. --pin: what training does on CUDA.
  for config in voc_ssd300 voc_faster_rcnn; do
    step 30 "$OUT/data.log" python3 tools/bench_data.py --config "$config" "${RACCOON[@]}" \
      --workers "${DATA_WORKERS:-15}" --num-batches "${DATA_BATCHES:-100}" --repeat 40 --pin
  done
  # 3. the comparisons: each trains ours, then torchvision's, for the same epochs.
  compare ssd voc_ssd300 "${SSD_EPOCHS:-40}" 100
  compare faster_rcnn voc_faster_rcnn "${FRCNN_EPOCHS:-12}" 100
  # 4. the GPU tests, with what is left.
  if [ "$DEVICE" != cpu ]; then
    step 40 "$OUT/gpu_tests.log" python3 -m pytest -q -m gpu -p no:cacheprovider
  fi
}

case "$STAGE" in
  prepare) stage_prepare ;;
  run) stage_run ;;
  *) echo "usage: bash tools/gpu_checks.sh prepare|run" >&2; exit 2 ;;
esac
