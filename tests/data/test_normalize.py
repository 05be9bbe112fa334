"""Device normalization (detect/data/normalize.py): uint8 batches normalized after the copy give what
the loader's float32 path gives, padding exactly zero."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detect.config import AugmentConfig, DataConfig, InputConfig, TransformSpec
from detect.data.build import build_dataset
from detect.data.loader import collate
from detect.data.normalize import normalize_batch, to_pixels, valid_mask
from detect.data.transforms import build_transforms

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def synthetic_train(tmp_path_factory):
    """The synthetic shapes dataset's train split (square images: crops below give other shapes)."""
    root = tmp_path_factory.mktemp("shapes")
    data_cfg = DataConfig(format="synthetic", root=str(root), synth={"num_images": 6, "image_size": 96})
    return build_dataset(data_cfg, "train", training=True)


def batch_through(pipeline: str, raw_dataset, seed: int = 0):
    """Items 0..3 of `raw_dataset` through the training pipeline (a random crop, keep-ratio resize to
    sizes not divisible by 32) with `normalize_on: pipeline`, collated."""
    input_cfg = InputConfig(resize="keep_ratio", min_size=50, max_size=90, normalize_on=pipeline)
    augment = AugmentConfig(train=[TransformSpec(name="random_crop", p=1.0), TransformSpec(name="horizontal_flip")])
    transform = build_transforms(input_cfg, augment, train=True)
    transform.set_seed(seed)
    return collate([transform(*raw_dataset[index]) for index in range(4)], input_cfg.size_divisible)


def image_sizes_of(targets) -> torch.Tensor:
    return torch.stack([target["image_size"] for target in targets])


def test_device_path_matches_the_loader_path_on_real_items(synthetic_train):
    floats, float_targets = batch_through("loader", synthetic_train)
    pixels, targets = batch_through("device", synthetic_train)
    assert pixels.dtype == torch.uint8 and floats.dtype == torch.float32
    assert pixels.shape == floats.shape and pixels.shape[0] == 4 and pixels.shape[2] % 32 == 0
    sizes = image_sizes_of(targets)
    assert torch.equal(sizes, image_sizes_of(float_targets))  # the same augmentation drawn for both
    assert len({tuple(size) for size in sizes.tolist()}) > 1  # images of several sizes: padding differs
    for target, float_target in zip(targets, float_targets):
        assert torch.equal(target["boxes"], float_target["boxes"])

    normalized = normalize_batch(pixels, sizes, MEAN, STD)
    assert normalized.dtype == torch.float32 and normalized.shape == pixels.shape
    torch.testing.assert_close(normalized, floats, atol=1e-5, rtol=0)
    outside = ~valid_mask(sizes, pixels.shape[-2:]).expand_as(normalized)
    assert outside.any() and torch.all(normalized[outside] == 0)  # exactly zero, as the float path's
    assert torch.all(floats[outside] == 0)


def test_float_batches_pass_through_unchanged():
    images = torch.randn(2, 3, 8, 8)
    assert normalize_batch(images, torch.tensor([[8, 8], [4, 6]]), MEAN, STD) is images
    assert normalize_batch(images, torch.tensor([[8, 8], [4, 6]]), None, None) is images


def test_padding_is_zero_after_normalization():
    """A zero pixel normalizes to -mean/std; in the padding the result is 0, and only there."""
    images = torch.zeros(2, 3, 6, 8, dtype=torch.uint8)
    sizes = torch.tensor([[6, 8], [3, 5]])
    out = normalize_batch(images, sizes, MEAN, STD)
    expected_inside = torch.tensor([-m / s for m, s in zip(MEAN, STD)]).view(3, 1, 1)
    torch.testing.assert_close(out[0], expected_inside.expand(3, 6, 8))
    torch.testing.assert_close(out[1, :, :3, :5], expected_inside.expand(3, 3, 5))
    assert torch.all(out[1, :, 3:] == 0) and torch.all(out[1, :, :, 5:] == 0)


def test_every_pixel_value_matches_the_loader_table():
    """All 256 values against prepare.py's float64-computed tables (the loader path)."""
    from detect.data.prepare import normalization_tables

    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16).contiguous()
    out = normalize_batch(values, torch.tensor([[16, 16]]), MEAN, STD)
    tables = torch.from_numpy(np.stack(normalization_tables(MEAN, STD))).view(1, 3, 16, 16)
    torch.testing.assert_close(out, tables, atol=1e-5, rtol=0)


def test_channels_last_is_kept():
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    out = normalize_batch(images, torch.tensor([[8, 8], [5, 7]]), MEAN, STD)
    assert out.is_contiguous(memory_format=torch.channels_last)
    expected = normalize_batch(images.contiguous(), torch.tensor([[8, 8], [5, 7]]), MEAN, STD)
    torch.testing.assert_close(out, expected)


def test_uint8_without_mean_and_other_dtypes_are_errors():
    with pytest.raises(ValueError, match="input.mean"):
        normalize_batch(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.tensor([[4, 4]]), None, None)
    with pytest.raises(TypeError, match="int32"):
        normalize_batch(torch.zeros(1, 3, 4, 4, dtype=torch.int32), torch.tensor([[4, 4]]), MEAN, STD)


def test_to_pixels_inverts_either_kind_of_batch():
    pixels = torch.randint(0, 256, (1, 3, 5, 7), dtype=torch.uint8)
    normalized = normalize_batch(pixels, torch.tensor([[5, 7]]), MEAN, STD)
    assert torch.equal(to_pixels(pixels[0], MEAN, STD), pixels[0])
    assert torch.equal(to_pixels(normalized[0], MEAN, STD), pixels[0])


def test_collate_of_uint8_items_is_a_zero_padded_uint8_batch():
    items = [(torch.full((3, 50, 70), 7, dtype=torch.uint8), {}), (torch.full((3, 65, 33), 9, dtype=torch.uint8), {})]
    images, _ = collate(items, size_divisible=32)
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 96, 96)
    assert torch.all(images[0, :, :50, :70] == 7) and images[0].sum() == 7 * 3 * 50 * 70
    assert torch.all(images[1, :, :65, :33] == 9) and images[1].sum() == 9 * 3 * 65 * 33
    with pytest.raises(TypeError, match="different dtypes"):
        collate([items[0], (torch.zeros(3, 4, 4), {})])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pinned_uint8_batch_moves_non_blocking_and_normalizes_on_cuda():
    pixels = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8).pin_memory()
    sizes = torch.tensor([[64, 96], [40, 70]])
    on_cuda = normalize_batch(pixels.to("cuda", non_blocking=True), sizes.to("cuda", non_blocking=True), MEAN, STD)
    torch.testing.assert_close(on_cuda.cpu(), normalize_batch(pixels, sizes, MEAN, STD), atol=1e-6, rtol=0)


def test_batch_to_device_gives_images_sizes_and_scales(synthetic_train):
    from detect.data.normalize import batch_to_device

    images, targets = batch_through("device", synthetic_train)
    moved, sizes, scales = batch_to_device(images, targets, torch.device("cpu"), MEAN, STD, channels_last=True)
    assert moved.dtype == torch.float32 and moved.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(moved, normalize_batch(images, image_sizes_of(targets), MEAN, STD))
    assert torch.equal(sizes, image_sizes_of(targets)) and sizes.dtype == torch.int64
    assert torch.equal(scales, torch.stack([torch.as_tensor(t["scale"], dtype=torch.float32) for t in targets]))
