"""The fused SSD zoom-out + IoU crop step against the two transforms it replaces."""

from __future__ import annotations

import random

import albumentations as A
import numpy as np

from detect.data.ssd_augment import Expand, ExpandThenCrop, IoURandomCrop


def _compose(steps):
    return A.Compose(steps, bbox_params=A.BboxParams(format="pascal_voc", label_fields=["index"], min_visibility=0.3,
                                                      clip=True, filter_invalid_bboxes=True))


def test_expand_then_crop_equals_expand_followed_by_crop():
    """Same random stream -> same pixels, boxes and kept rows, including windows that reach past the
    image or lie on the fill alone (no boxes), and the cases where either step is skipped (p < 1)."""
    rng = np.random.default_rng(0)
    for trial in range(150):
        height, width = (int(v) for v in rng.integers(20, 120, 2))
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        count = int(rng.integers(0, 4))
        x0, y0 = rng.uniform(0, width - 5, count), rng.uniform(0, height - 5, count)
        boxes = np.stack([x0, y0, np.minimum(width, x0 + rng.uniform(2, width, count)),
                          np.minimum(height, y0 + rng.uniform(2, height, count))], axis=1).astype(np.float32)
        separate = _compose([Expand(4.0, p=0.7), IoURandomCrop(p=0.9)])
        fused = _compose([ExpandThenCrop(Expand(4.0, p=0.7), IoURandomCrop(p=0.9))])
        for pipeline in (separate, fused):
            pipeline.set_random_state(np.random.default_rng(trial), random.Random(trial))
        a = separate(image=image, bboxes=boxes, index=np.arange(count))
        b = fused(image=image, bboxes=boxes, index=np.arange(count))
        np.testing.assert_array_equal(a["image"], b["image"], err_msg=f"trial {trial}")
        np.testing.assert_allclose(np.reshape(a["bboxes"], (-1, 4)), np.reshape(b["bboxes"], (-1, 4)), atol=1e-3)
        assert list(a["index"]) == list(b["index"])
