#!/usr/bin/env bash
# The main job, from a fresh clone: set up .venv, generate the synthetic shapes dataset into
# data/shapes (when absent), train a small detector on the CPU, evaluate it (per-class AP and mAP
# printed) and draw its detections on one validation image.
#
#   bash tools/main_job.sh                                  # synthetic_ssd; outputs in runs/main_job/
#   CONFIG=synthetic_faster_rcnn bash tools/main_job.sh     # the Faster R-CNN instead
#   bash tools/main_job.sh --set train.epochs=20    # extra `detect train` options
# Environment: CONFIG, OUT (default runs/main_job), DEVICE (default cpu), DETECT_PYTHON (an
# interpreter that already has detect and its dependencies, e.g. a conda environment's: .venv is then
# not set up).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-synthetic_ssd}
OUT=${OUT:-runs/main_job}
DEVICE=${DEVICE:-cpu}
export NO_ALBUMENTATIONS_UPDATE=1

PYTHON=${DETECT_PYTHON:-.venv/bin/python}
if [ -z "${DETECT_PYTHON:-}" ]; then
  bash tools/setup_env.sh
fi

start=$(date +%s)
rm -rf "$OUT"
echo "== training $CONFIG on $DEVICE (run folder $OUT/train)"
"$PYTHON" -m detect train --config "$CONFIG" --device "$DEVICE" --out "$OUT/train" "$@"
echo "== evaluating $OUT/train/best.pt on the validation split"
"$PYTHON" -m detect eval "$OUT/train/best.pt" --device "$DEVICE" --metric voc07 --json "$OUT/eval.json" "$@"
root=$("$PYTHON" -m detect config show "$CONFIG" "$@" | "$PYTHON" -c "import sys, yaml; print(yaml.safe_load(sys.stdin)['data']['root'])")
image_id=$(head -n 1 "$root/ImageSets/Main/val.txt")
echo "== drawing detections on $root/JPEGImages/$image_id.jpg"
"$PYTHON" -m detect infer "$OUT/train/best.pt" "$root/JPEGImages/$image_id.jpg" --device "$DEVICE" \
    --out "$OUT/detections" --score-threshold 0.3 --json --quiet
echo "== done in $(( $(date +%s) - start )) s: $OUT/eval.json, $OUT/detections/$image_id.jpg, curves: .venv/bin/tensorboard --logdir $OUT/train"
