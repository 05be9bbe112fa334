#!/usr/bin/env bash
# The main job, on a fresh clone: train a small detector on the synthetic shapes dataset on the CPU
# (the dataset is generated into data/shapes when absent), evaluate it (per-class AP and mAP@0.5
# printed) and draw its detections on one validation image.
#
#   tools/main_job.sh                          # synthetic_faster_rcnn, outputs in runs/main_job/
#   CONFIG=synthetic_ssd tools/main_job.sh     # the SSD instead
#   tools/main_job.sh --set train.epochs=20    # extra `detect train` options
# Environment: PYTHON (default python3), CONFIG, OUT (default runs/main_job), DEVICE (default cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-synthetic_faster_rcnn}
OUT=${OUT:-runs/main_job}
DEVICE=${DEVICE:-cpu}
export NO_ALBUMENTATIONS_UPDATE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # tools/*.py import the package from this clone

# Set up only what is missing: the package's dependencies (pip, from PyPI or a local wheel cache).
if ! "$PYTHON" -c "import torch, torchvision, albumentations, pycocotools, cv2, typer, pydantic, yaml, tensorboard, tqdm" 2>/dev/null; then
    echo "== installing detect and its dependencies"
    "$PYTHON" -m pip install -e .
fi

start=$(date +%s)
rm -rf "$OUT/train"
echo "== training $CONFIG on $DEVICE (run folder $OUT/train)"
"$PYTHON" -m detect train --config "$CONFIG" --device "$DEVICE" --output-dir "$OUT/train" "$@"
echo "== evaluating $OUT/train/best.pt"
"$PYTHON" -m detect eval "$OUT/train/best.pt" --device "$DEVICE" --metric voc07 --json "$OUT/eval.json"
echo "== drawing detections"
"$PYTHON" tools/draw_detections.py "$OUT/train/best.pt" "$OUT/detections.png"
echo "== done in $(( $(date +%s) - start )) s: $OUT/eval.json, $OUT/detections.png, curves: tensorboard --logdir $OUT/train"
