"""benchmarks.torchvision_adapter: torchvision's detectors see our pixels at our size, in their own
normalization; losses come back under our names; detections are divided by the scale."""

from __future__ import annotations

import pytest
import torch
import torchvision

from benchmarks.torchvision_adapter import TorchvisionAdapter, pad_detections, switch_off_transform
from detect.detections.padded import split_detections

OURS_MEAN, OURS_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _channels(values) -> torch.Tensor:
    return torch.tensor(values).view(1, 3, 1, 1)


def _mobilenet_faster_rcnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])


def test_switched_off_transform_neither_resizes_nor_normalizes():
    model = switch_off_transform(_mobilenet_faster_rcnn()).eval()
    images = [torch.rand(3, 64, 96), torch.rand(3, 50, 70)]
    batch, _ = model.transform(images)
    assert [tuple(size) for size in batch.image_sizes] == [(64, 96), (50, 70)]
    torch.testing.assert_close(batch.tensors[0], images[0], rtol=0, atol=0)
    torch.testing.assert_close(batch.tensors[1, :, :50, :70], images[1], rtol=0, atol=0)
    assert batch.tensors.shape[-2:] == (64, 96)  # padded to 32, never resized to its 320 px


def test_the_model_sees_the_valid_region_in_its_own_normalization():
    model = _mobilenet_faster_rcnn()
    adapter = TorchvisionAdapter(model, 2, OURS_MEAN, OURS_STD).eval()
    seen = []
    model.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    pixels = torch.rand(2, 3, 64, 96)
    images = (pixels - _channels(OURS_MEAN)) / _channels(OURS_STD)
    image_sizes = torch.tensor([[64, 96], [50, 70]])
    with torch.no_grad():
        outputs = adapter(images, image_sizes)
    own = (pixels - _channels([0.5, 0.4, 0.3])) / _channels([0.2, 0.25, 0.3])
    torch.testing.assert_close(seen[0][0], own[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seen[0][1, :, :50, :70], own[1, :, :50, :70], rtol=1e-5, atol=1e-5)
    scales = torch.tensor([[0.5, 0.5], [2.0, 1.0]])
    detections = split_detections(adapter.postprocess(outputs, image_sizes, scales))
    for found, raw, (sx, sy) in zip(detections, outputs["detections"], scales.tolist()):
        torch.testing.assert_close(found["boxes"], raw["boxes"] / torch.tensor([sx, sy, sx, sy]))


def test_without_our_normalization_the_batch_is_handed_over_as_it_is():
    model = _mobilenet_faster_rcnn()
    adapter = TorchvisionAdapter(model, 2).eval()
    seen = []
    model.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        adapter(images, torch.tensor([[64, 64]]))
    torch.testing.assert_close(seen[0], images, rtol=0, atol=0)


@pytest.mark.parametrize("builder, expected", [
    ("fasterrcnn_mobilenet_v3_large_320_fpn",
     {"loss_rpn_objectness", "loss_rpn_box", "loss_classifier", "loss_box_reg"}),
    ("retinanet_resnet50_fpn", {"loss_cls", "loss_box"}),
    ("fcos_resnet50_fpn", {"loss_cls", "loss_box", "loss_bbox_ctrness"}),
])
def test_losses_under_our_names_in_either_mode(builder, expected):
    torch.manual_seed(0)
    model = torchvision.models.get_model(builder, weights=None, weights_backbone=None, num_classes=3)
    adapter = TorchvisionAdapter(model, 2).eval()
    images = torch.rand(1, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([1])}]
    losses = adapter(images, torch.tensor([[64, 64]]), targets)  # a validation loss: computed in eval mode too
    assert set(losses) == expected and all(torch.isfinite(value) for value in losses.values())
    assert not adapter.model.training
    adapter.train()
    with torch.no_grad():
        assert "detections" in adapter(images, torch.tensor([[64, 64]]))
    assert adapter.model.training


def test_pad_detections_round_trips_through_split():
    per_image = [
        {"boxes": torch.rand(3, 4), "scores": torch.tensor([0.8, 0.4, 0.1]), "labels": torch.tensor([1, 2, 2])},
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    padded = pad_detections(per_image)
    assert padded["boxes"].shape == (2, 3, 4) and padded["num"].tolist() == [3, 0]
    for ours, theirs in zip(split_detections(padded), per_image):
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(ours[key], theirs[key])
