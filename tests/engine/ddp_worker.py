"""Run by torchrun in test_distributed.py: trains the doubles for 2 epochs into argv[1]."""

import sys

from detect.engine.run import run_training
from tests.engine import doubles

if __name__ == "__main__":
    with doubles.engine_on(doubles.build_loaders, doubles.build_model):
        run_training(doubles.tiny_config(epochs=2, eval_every=2, iou_thresh=0.01), output_dir=sys.argv[1],
                     device="cpu")
