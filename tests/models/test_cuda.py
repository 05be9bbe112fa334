"""The detectors on CUDA under bf16 autocast, as training runs them there (`-m gpu`, on a GPU machine).

The same batch on CPU in float32 and on CUDA under bf16 must give finite losses and gradients, and
postprocess must give the contract's outputs in original pixels."""

from __future__ import annotations

import pytest
import torch

from detect.config import InputConfig
from detect.config.model_sections import MODEL_SECTIONS
from detect.detections.padded import split_detections
from detect.models.build import build_model
from tests.models.overfit_utils import shapes_batch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run with -m gpu on a GPU machine)"),
]

MODELS = {
    "faster_rcnn": {"arch": "faster_rcnn", "backbone": "resnet18", "roi_pool": "roi_align",
                    "anchors": {"sizes": [24, 48, 96]}},
    "ssd": {"arch": "ssd", "backbone": "resnet18",
            "ssd": {"aspect_ratios": [[2.0], [2.0, 3.0], [2.0, 3.0], [2.0], [2.0]]}},
}
INPUTS = {"faster_rcnn": InputConfig(), "ssd": InputConfig(resize="fixed", size=192, size_divisible=1)}


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_bf16_training_step_and_postprocess_on_cuda(arch):
    torch.manual_seed(0)
    model = build_model(MODEL_SECTIONS[arch].model_validate(MODELS[arch]), INPUTS[arch], num_classes=2).cuda()
    images, targets = shapes_batch(4, 192)
    images = images.cuda()
    targets = [{key: value.cuda() for key, value in target.items()} for target in targets]
    image_sizes = torch.tensor([[192, 192]] * 4, device="cuda")
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        losses = model(images, image_sizes, targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    model.eval()
    scales = torch.full((4, 2), 0.5, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        detections = split_detections(model.postprocess(model(images, image_sizes), image_sizes, scales))
    assert len(detections) == 4
    for found in detections:
        assert found["boxes"].is_cuda and found["boxes"].dtype == torch.float32
        assert (found["boxes"] >= 0).all() and (found["boxes"] <= 384).all()  # original pixels: 192 / 0.5
        assert (found["scores"][:-1] >= found["scores"][1:]).all()
