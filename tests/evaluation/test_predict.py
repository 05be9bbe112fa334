"""The one prediction path: a loader batch in, per-image detections out, equal to the model's own
forward and postprocess; uint8 and normalized float batches give the same; padded form kept."""

from __future__ import annotations

import torch

from detect.config import load_config
from detect.data.normalize import normalize_batch
from detect.detections.padded import split_detections
from detect.detections.predict import padded_predictions, predict, predict_batch
from detect.models.build import build_model

TINY_SSD = ["input.size=64", "model.ssd.aspect_ratios=[[2.0],[2.0],[2.0]]", "model.ssd.score_threshold=0.2"]


def tiny_ssd():
    torch.manual_seed(0)
    config = load_config("synthetic_ssd", TINY_SSD)
    return build_model(config.model, config.input, 3).eval(), config


def loader_batch(seed: int = 0):
    """Two uint8 images zero-padded to 64 x 64, with their targets as the eval transforms give them."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    images[0] = torch.randint(0, 256, (3, 64, 64), generator=generator, dtype=torch.uint8)
    images[1, :, :48, :40] = torch.randint(0, 256, (3, 48, 40), generator=generator, dtype=torch.uint8)
    targets = [{"image_size": torch.tensor([64, 64]), "scale": torch.tensor([0.5, 0.5])},
               {"image_size": torch.tensor([48, 40]), "scale": torch.tensor([1.0, 2.0])}]
    return images, targets


def test_predict_equals_forward_then_postprocess():
    model, config = tiny_ssd()
    images, targets = loader_batch()
    mean, std = config.input.mean, config.input.std
    found = predict(model, images, targets, torch.device("cpu"), mean, std)

    image_sizes = torch.stack([t["image_size"] for t in targets])
    scales = torch.stack([t["scale"] for t in targets])
    normalized = normalize_batch(images, image_sizes, mean, std)
    with torch.no_grad():
        expected = split_detections(model.postprocess(model(normalized, image_sizes), image_sizes, scales))
    assert len(found) == 2 and sum(len(f["scores"]) for f in found) > 0
    for ours, theirs in zip(found, expected):
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(ours[key], theirs[key])

    # A batch normalized beforehand (input.normalize_on: loader) gives the same detections.
    as_float = predict(model, normalized, targets, torch.device("cpu"), None, None)
    for ours, theirs in zip(as_float, found):
        assert torch.equal(ours["labels"], theirs["labels"])
        torch.testing.assert_close(ours["boxes"], theirs["boxes"])


def test_padded_predictions_are_what_predict_batch_cuts():
    model, config = tiny_ssd()
    images, targets = loader_batch(seed=1)
    image_sizes = torch.stack([t["image_size"] for t in targets])
    scales = torch.ones(2, 2)
    normalized = normalize_batch(images, image_sizes, config.input.mean, config.input.std)
    calls = []
    with torch.no_grad():
        padded = padded_predictions(model, normalized, image_sizes, scales,
                                    autocast=lambda: calls.append(1) or torch.autocast("cpu", enabled=False))
    assert calls == [1]  # the forward runs inside the given autocast
    detections_per_img = model.detections_per_img
    assert padded["boxes"].shape == (2, detections_per_img, 4) and padded["num"].shape == (2,)
    assert padded["scores"].dtype == torch.float32 and padded["labels"].dtype == torch.int64
    cut = predict_batch(model, normalized, image_sizes, scales)
    assert [len(found["scores"]) for found in cut] == padded["num"].tolist()
