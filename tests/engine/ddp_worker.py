"""Run by torchrun in test_distributed.py: trains the doubles for 2 epochs into argv[1]."""

import sys

from detect.engine.train import run_training
from tests.engine import doubles

if __name__ == "__main__":
    run_training(doubles.tiny_config(epochs=2, eval_every=2, iou_thresh=0.01), output_dir=sys.argv[1], device="cpu",
                 build_loaders_fn=doubles.build_loaders, build_model_fn=doubles.build_model)
