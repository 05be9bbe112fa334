#!/usr/bin/env bash
# The checks that need the GPU machine, as three commands that each end inside its 10-minute limit
# (a session has 30 minutes of it, machine start included). Every figure the open issues ask of the
# GPU machine comes out of these three stages.
#
#   here, once:        bash tools/gpu_checks.sh prepare    # wheels into .whl, raccoon into .devdata
#   on the machine (device tool `run`, carry [".whl", ".devdata"]), one call each:
#     bash tools/gpu_checks.sh bench          # pytest -m gpu, bench_speed (all models, bf16, profiles),
#                                             #   loader throughput with 15 workers, video fps
#     bash tools/gpu_checks.sh compare-ssd    # voc_ssd300 ours vs torchvision's on raccoon
#     bash tools/gpu_checks.sh compare-frcnn  # voc_faster_rcnn (VGG16) ours vs torchvision's
# Durations are bounded by the step timeouts below (bench's add up to 565 s; a compare stage's training
# to COMPARE_LIMIT_S, 540 s), not measured: no GPU machine has run this script yet.
#
# Each stage writes at most 8 files under $OUT (what the device tool brings back; ./gpu_out when $OUT
# is unset) and keeps going when one step fails, so a failure costs one step, not the call. Every
# step runs under `timeout` so that the logs written so far come back. Knobs (environment):
# SSD_EPOCHS (default 240), FRCNN_EPOCHS (default 80), WORKERS (data.num_workers, default 12),
# COMPARE_LIMIT_S (timeout of a compare stage's training, default 540), DEVICE (default cuda) and
# COMPARE_ARGS (more compare_raccoon.py arguments): `DEVICE=cpu SSD_EPOCHS=1 COMPARE_ARGS="--max-images 4"
# bash tools/gpu_checks.sh compare-ssd` tries the plumbing here, without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
STAGE=${1:-}
WORKERS=${WORKERS:-12}
COMPARE_LIMIT_S=${COMPARE_LIMIT_S:-540}
DEVICE=${DEVICE:-cuda}
DATA=.devdata/raccoon
RACCOON=(--set "data.root=$DATA" --set "data.classes=[raccoon]" --set data.train_split=train
         --set data.val_split=val --set model.pretrained=none)

install_wheels() {
  # The GPU machine lacks albumentations, pycocotools and pydantic (../shared/device/fetch-wheels.sh).
  if [ "$DEVICE" = cpu ]; then  # a try-out here: the project's own environment
    export PATH="$PWD/.venv/bin:$PATH" NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1; return
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed: run 'bash tools/gpu_checks.sh prepare' here and carry .whl" >&2; exit 1; }
  export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1
  python3 - <<'EOF' > "$OUT/env.txt" 2>&1
import platform, os, torch, torchvision
print("python", platform.python_version(), "torch", torch.__version__, "torchvision", torchvision.__version__)
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA", "cpus", os.cpu_count())
EOF
  cat "$OUT/env.txt"
}

step() {  # step LIMIT_S LOG COMMAND...: run, append stdout+stderr to LOG, report the exit status
  local limit=$1 log=$2; shift 2
  echo "== $(date +%T) $*" | tee -a "$log"
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  local status=${PIPESTATUS[0]}
  echo "== $(date +%T) exit $status" | tee -a "$log"
}

stage_prepare() {
  bash ../shared/device/fetch-wheels.sh >/dev/null
  mkdir -p .devdata
  rm -rf "$DATA" && cp -r ../shared/data/raccoon "$DATA"
  du -sh .whl .devdata
}

stage_bench() {
  install_wheels
  step 90 "$OUT/gpu_tests.log" python3 -m pytest -q -m gpu -p no:cacheprovider
  step 270 "$OUT/speed.log" python3 tools/bench_speed.py --model all --mode all --dtype bf16 --device cuda \
    --train-steps 100 --json "$OUT/speed.json" --profile /tmp/profiles
  tar -czf "$OUT/profiles.tar.gz" -C /tmp profiles 2>/dev/null
  for config in voc_ssd300 voc_faster_rcnn; do
    # Raccoon listed 40 times per epoch: its 160 images make too few batches for 15 workers at once.
    # --pin: what training does on CUDA (uint8 batches by default, input.normalize_on=device).
    step 45 "$OUT/data.log" python3 tools/bench_data.py --config "$config" "${RACCOON[@]}" --workers 15 \
      --num-batches 150 --repeat 40 --pin
  done
  step 50 "$OUT/video.log" python3 tools/bench_video.py --config voc_faster_rcnn --frames 300 --size 1280x720 \
    --batch-size 8 --device cuda
  step 50 "$OUT/video.log" python3 tools/bench_video.py --config voc_ssd300 --frames 300 --size 1280x720 \
    --batch-size 32 --device cuda
}

compare() {  # compare ARCH CONFIG EPOCHS
  local arch=$1 config=$2 epochs=$3 out=runs/gpu/compare_$1
  local evals=$(( epochs / 4 > 0 ? epochs / 4 : 1 ))
  install_wheels
  # shellcheck disable=SC2086  # COMPARE_ARGS is a list of arguments
  step "$COMPARE_LIMIT_S" "$OUT/compare.log" python3 tools/compare_raccoon.py --arch "$arch" --device "$DEVICE" \
    --data "$DATA" --epochs "$epochs" --out "$out" --"${arch//_/-}"-config "$config" "${RACCOON[@]}" \
    --set "data.num_workers=$WORKERS" --set "train.eval_every=$evals" \
    --set "train.milestones=[$(( epochs * 2 / 3 )),$(( epochs * 5 / 6 ))]" ${COMPARE_ARGS:-}
  cp "$out/compare.json" "$OUT/" 2>/dev/null
  for name in ours torchvision; do
    cp "$out/$arch/$name/train.log" "$OUT/${name}_train.log" 2>/dev/null
    cp "$out/$arch/$name/metrics.jsonl" "$OUT/${name}_metrics.jsonl" 2>/dev/null
  done
}

case "$STAGE" in
  prepare) stage_prepare ;;
  bench) stage_bench ;;
  compare-ssd) compare ssd voc_ssd300 "${SSD_EPOCHS:-240}" ;;
  compare-frcnn) compare faster_rcnn voc_faster_rcnn "${FRCNN_EPOCHS:-80}" ;;
  *) echo "usage: bash tools/gpu_checks.sh prepare|bench|compare-ssd|compare-frcnn" >&2; exit 2 ;;
esac
