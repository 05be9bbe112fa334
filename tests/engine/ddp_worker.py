"""Run by torchrun in test_distributed.py: trains the doubles for 2 epochs into argv[1].

With `kill-rank-1` as argv[2], rank 1 kills itself (SIGKILL) in its second training step, and errors
end the process as `detect train` ends them: one `error:` line and exit code 2.
"""

import os
import signal
import sys

from detect.engine.run import run_training
from detect.errors import DetectError
from tests.engine import doubles


def build_model_killing_rank_1(config, num_classes: int):
    model = doubles.TinyDetector(num_classes)
    if os.environ.get("RANK") == "1":
        forward = model.forward

        def forward_then_die(images, image_sizes, targets=None):
            if targets is not None and model.calls == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            return forward(images, image_sizes, targets)

        model.forward = forward_then_die
    return model


if __name__ == "__main__":
    kill = len(sys.argv) > 2 and sys.argv[2] == "kill-rank-1"
    with doubles.engine_on(doubles.build_loaders, build_model_killing_rank_1 if kill else doubles.build_model):
        try:
            run_training(doubles.tiny_config(epochs=2, eval_every=2, iou_thresh=0.01), output_dir=sys.argv[1],
                         device="cpu")
        except DetectError as error:  # as detect.cli.main
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
