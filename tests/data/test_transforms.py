"""Augmentation geometry, resize scale, box filtering, and config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detect.config import AugmentConfig, InputConfig, TransformSpec
from detect.data.transforms import build_augmentation, build_transforms
from detect.errors import ConfigError

# No-op normalization (mean 0, std 1/255 -> values stay 0..255) so masks can be read back.
PLAIN_INPUT = InputConfig(resize="fixed", size=200, mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))


def raw_target(boxes, labels=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    labels = np.arange(1, n + 1, dtype=np.int64) if labels is None else np.asarray(labels, np.int64)
    return {"boxes": boxes, "labels": labels, "difficult": np.arange(n) % 2 == 1, "iscrowd": np.zeros(n, bool),
            "image_id": "img", "orig_size": np.array([200, 200])}


def box_image(box, size=200):
    image = np.zeros((size, size, 3), np.uint8)
    x0, y0, x1, y1 = (int(v) for v in box)
    image[y0:y1, x0:x1] = 255
    return image


def mask_box(image: torch.Tensor) -> np.ndarray:
    ys, xs = np.nonzero(image[0].numpy() > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "horizontal_flip", "p": 1.0},
        {"name": "shift", "p": 1.0, "limit": 0.2},
        {"name": "scale", "p": 1.0, "limits": [0.7, 1.3]},
        {"name": "shear", "p": 1.0, "degrees": 15},
        {"name": "rotate", "p": 1.0, "degrees": 20},
        {"name": "random_crop", "p": 1.0},
        {"name": "iou_random_crop", "min_ious": [0.1, 0.3]},
        {"name": "expand", "p": 1.0, "max_ratio": 2.0},
    ],
    ids=lambda s: s["name"],
)
def test_box_follows_the_pixels(spec):
    """The mask of a filled box and the box transform alike (within 2 px)."""
    box = [60, 50, 130, 140]
    augment = AugmentConfig(train=[TransformSpec(**spec)], min_visibility=0.0)
    transform = build_transforms(PLAIN_INPUT, augment, train=True)
    for seed in range(5):
        transform.set_seed(seed)
        image, target = transform(box_image(box), raw_target([box]))
        assert target["boxes"].shape == (1, 4)
        np.testing.assert_allclose(target["boxes"][0].numpy(), mask_box(image), atol=2.0)


def test_flip_twice_is_identity():
    box = [[10, 20, 90, 150], [100, 5, 199, 60]]
    augment = AugmentConfig(train=[TransformSpec(name="horizontal_flip", p=1.0)] * 2)
    image = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    out_image, target = build_transforms(PLAIN_INPUT, augment, train=True)(image, raw_target(box))
    np.testing.assert_allclose(target["boxes"].numpy(), np.array(box, np.float32), atol=1e-4)
    np.testing.assert_allclose(out_image.permute(1, 2, 0).numpy(), image.astype(np.float32), atol=1e-3)


@pytest.mark.parametrize("resize", ["keep_ratio", "fixed"])
def test_resize_records_scale(resize):
    input_cfg = InputConfig(resize=resize, min_size=600, max_size=1000, size=300)
    image = np.zeros((375, 500, 3), np.uint8)
    boxes = np.array([[10, 20, 200, 300], [300.5, 100, 499, 374]], np.float32)
    out, target = build_transforms(input_cfg, AugmentConfig(), train=False)(image, raw_target(boxes))
    h, w = target["image_size"].tolist()
    assert out.shape == (3, h, w)
    expected = (300, 300) if resize == "fixed" else (600, 800)
    assert (h, w) == expected
    back = target["boxes"] / target["scale"].repeat(2)
    np.testing.assert_allclose(back.numpy(), boxes, atol=1e-3)
    assert target["orig_size"].tolist() == [375, 500]
    assert target["scale"].dtype == torch.float32 and target["image_size"].dtype == torch.int64


def test_keep_ratio_caps_the_longer_side():
    input_cfg = InputConfig(resize="keep_ratio", min_size=600, max_size=1000)
    transform = build_transforms(input_cfg, AugmentConfig(), train=False)
    _, target = transform(np.zeros((100, 400, 3), np.uint8), raw_target([]))
    assert target["image_size"].tolist() == [250, 1000]


@pytest.mark.parametrize("normalize_on", ["loader", "device"])
def test_eval_pipeline_is_deterministic_and_normalized(normalize_on):
    from detect.data.normalize import normalize_batch

    input_cfg = InputConfig(resize="keep_ratio", min_size=64, max_size=128, normalize_on=normalize_on)
    image = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    transform = build_transforms(input_cfg, AugmentConfig(), train=False)
    a, ta = transform(image, raw_target([[1, 2, 30, 40]]))
    b, tb = transform(image, raw_target([[1, 2, 30, 40]]))
    assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])
    assert a.dtype == (torch.float32 if normalize_on == "loader" else torch.uint8)
    grey = np.full((50, 70, 3), np.round(np.array(input_cfg.mean) * 255), np.uint8)
    c, tc = transform(grey, raw_target([]))
    c = normalize_batch(c[None], tc["image_size"][None], input_cfg.mean, input_cfg.std)
    assert c.abs().max() < 0.02  # the mean maps to about zero


def test_boxes_below_min_visibility_are_dropped_with_labels_and_flags():
    # A zero shift keeps every box and its flags in order.
    boxes = [[5, 5, 60, 60], [150, 100, 195, 190], [120, 10, 180, 40]]
    augment = AugmentConfig(train=[TransformSpec(name="shift", p=1.0, limit=0.0)], min_visibility=0.3)
    transform = build_transforms(PLAIN_INPUT, augment, train=True)
    target = raw_target(boxes, labels=[3, 1, 2])
    _, same = transform(box_image([0, 0, 1, 1]), target)
    assert same["labels"].tolist() == [3, 1, 2] and same["difficult"].tolist() == [False, True, False]
    # A crop that keeps only the left 100 px: box 0 fully, box 2 not at all, box 1 not at all.
    import albumentations as A

    from detect.data.transforms import DetectionTransform, _bbox_params

    pipeline = DetectionTransform(
        A.Compose([A.Crop(0, 0, 130, 200)], bbox_params=_bbox_params(min_visibility=0.3)),
        build_transforms(PLAIN_INPUT, AugmentConfig(train=[]), train=False).finish,
    )
    _, out = pipeline(box_image([0, 0, 1, 1]), target)
    # box 2 keeps 10 of 60 px width (17% < 30%): dropped; box 1 entirely outside: dropped.
    assert out["labels"].tolist() == [3]
    assert out["difficult"].tolist() == [False]
    assert out["boxes"].shape == (1, 4)


def test_partially_visible_box_is_clipped():
    augment = AugmentConfig(train=[TransformSpec(name="shift", p=1.0, limit=0.0)], min_visibility=0.3)
    transform = build_transforms(PLAIN_INPUT, augment, train=True)
    _, out = transform(np.zeros((200, 200, 3), np.uint8), raw_target([[150, 10, 200, 50]]))
    assert out["boxes"][0, 2] <= 200


def test_empty_targets_pass_through_every_transform():
    specs = [{"name": n, "p": 1.0} for n in
             ["photometric_distort", "expand", "iou_random_crop", "random_crop", "horizontal_flip", "shift", "scale",
              "shear", "rotate", "brightness_contrast"]]
    augment = AugmentConfig(train=[TransformSpec(**s) for s in specs])
    transform = build_transforms(InputConfig(resize="fixed", size=64), augment, train=True)
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    for seed in range(3):
        transform.set_seed(seed)
        out, target = transform(image, raw_target([]))
        assert out.shape == (3, 64, 64)
        assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_ssd_config_pipeline_runs_and_is_seeded():
    from detect.config import load_config

    cfg = load_config("voc_ssd300")
    transform = build_transforms(cfg.input, cfg.augment, train=True)
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    target = raw_target([[10, 10, 80, 100], [90, 30, 150, 110]])
    results = []
    for _ in range(2):
        transform.set_seed(7)
        results.append([transform(image, target) for _ in range(4)])
    for (a, ta), (b, tb) in zip(*results):
        assert a.shape == (3, 300, 300) and torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])
        assert len(ta["labels"]) == len(ta["boxes"]) == len(ta["difficult"])
        assert (ta["boxes"] >= 0).all() and (ta["boxes"] <= 300).all()


def test_unknown_transform_name_is_a_config_error():
    with pytest.raises(ConfigError, match=r"augment\.train\[1\].*'flip_sideways'.*allowed: .*horizontal_flip"):
        build_transforms(InputConfig(), AugmentConfig(train=[TransformSpec(name="horizontal_flip"),
                                                              TransformSpec(name="flip_sideways")]), train=True)


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match=r"augment\.train\[0\] \(expand\): unknown parameter 'ratio'.*max_ratio"):
        build_augmentation(TransformSpec(name="expand", ratio=2), InputConfig(), "augment.train[0]")
    with pytest.raises(ConfigError, match=r"augment\.train\[2\] \(expand\): bad parameter.*max_ratio"):
        build_augmentation(TransformSpec(name="expand", max_ratio=0.5), InputConfig(), "augment.train[2]")
    with pytest.raises(ConfigError, match=r"normalize"):
        build_augmentation(TransformSpec(name="normalize"), InputConfig(), "augment.train[0]")


def test_expand_and_iou_crop_are_fused_and_boxes_follow_the_pixels():
    from detect.data.ssd_augment import ExpandThenCrop

    box = [60, 50, 130, 140]
    augment = AugmentConfig(train=[TransformSpec(name="expand", p=1.0, max_ratio=3.0),
                                   TransformSpec(name="iou_random_crop", min_ious=[0.3, 0.5])], min_visibility=0.0)
    transform = build_transforms(PLAIN_INPUT, augment, train=True)
    assert [type(t) for t in transform.augment.transforms] == [ExpandThenCrop]
    for seed in range(8):
        transform.set_seed(seed)
        image, target = transform(box_image(box), raw_target([box]))
        assert target["boxes"].shape == (1, 4)
        np.testing.assert_allclose(target["boxes"][0].numpy(), mask_box(image), atol=2.0)
