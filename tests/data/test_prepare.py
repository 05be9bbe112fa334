"""The final resize + normalization (detect/data/prepare.py) against albumentations' own ops."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from detect.config import InputConfig
from detect.data.prepare import ResizeNormalize, normalize_to_chw


def test_normalize_to_chw_matches_albumentations_normalize():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = A.Normalize(mean=mean, std=std, max_pixel_value=255.0, p=1.0)(image=image)["image"]
    out = normalize_to_chw(image, mean, std)
    assert out.dtype == torch.float32 and out.shape == (3, 37, 53) and out.is_contiguous()
    np.testing.assert_allclose(out.numpy(), expected.transpose(2, 0, 1), atol=1e-5)
    # A float image takes the arithmetic path and agrees.
    np.testing.assert_allclose(normalize_to_chw(image.astype(np.float32), mean, std).numpy(), out.numpy(), atol=1e-5)


@pytest.mark.parametrize("normalize_on", ["loader", "device"])
def test_resize_normalize_scales_boxes_and_drops_degenerate_ones(normalize_on):
    prepare = ResizeNormalize(InputConfig(resize="keep_ratio", min_size=100, max_size=300, normalize_on=normalize_on))
    image = np.random.default_rng(1).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 40, 45], [70, 10, 90, 30], [20, 20, 20, 30]], np.float32)  # 2nd leaves, 3rd empty
    out = prepare(image=image, bboxes=boxes, box_index=np.arange(3))
    assert out["image"].shape == (3, 100, 160)
    np.testing.assert_allclose(out["bboxes"], [[20, 10, 80, 90], [140, 20, 160, 60]], atol=1e-4)
    assert out["box_index"].tolist() == [0, 1]
    resized = cv2.resize(image, (160, 100), interpolation=cv2.INTER_LINEAR)
    if normalize_on == "device":  # the pixels, CHW; normalized later on the device
        assert out["image"].dtype == torch.uint8 and out["image"].is_contiguous()
        np.testing.assert_array_equal(out["image"].numpy(), resized.transpose(2, 0, 1))
        return
    mean, std = np.float32(InputConfig().mean), np.float32(InputConfig().std)
    assert out["image"].dtype == torch.float32
    np.testing.assert_allclose(out["image"].numpy(), ((resized / 255.0 - mean) / std).transpose(2, 0, 1), atol=1e-5)


def test_device_mode_refuses_a_float_image():
    """A float image would be sent as unnormalized float and pass the device normalization unchanged."""
    prepare = ResizeNormalize(InputConfig(resize="fixed", size=16))
    with pytest.raises(TypeError, match="normalize_on=loader"):
        prepare(image=np.zeros((16, 16, 3), np.float32), bboxes=np.zeros((0, 4)), box_index=np.zeros(0))
