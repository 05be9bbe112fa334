from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.data.image_io import read_image
from detect.errors import DataError


def encode(image: np.ndarray, ext: str) -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


def test_colour_order_is_rgb(tmp_path: Path):
    bgr = np.zeros((8, 6, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    path = tmp_path / "red.png"
    path.write_bytes(encode(bgr, ".png"))
    image = read_image(path)
    assert image.shape == (8, 6, 3) and image.dtype == np.uint8
    assert (image[..., 0] == 255).all() and (image[..., 1:] == 0).all()


def test_format_decided_by_content_not_extension(tmp_path: Path):
    bgr = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(encode(bgr, ".png"))
    np.testing.assert_array_equal(read_image(path), bgr[..., ::-1])


def test_grayscale_becomes_rgb(tmp_path: Path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    path = tmp_path / "gray.png"
    path.write_bytes(encode(gray, ".png"))
    image = read_image(path)
    assert image.shape == (4, 5, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_rgba_drops_alpha(tmp_path: Path):
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 0] = 200  # blue
    bgra[..., 3] = 7  # nearly transparent: the colour is kept, alpha dropped
    path = tmp_path / "rgba.png"
    path.write_bytes(encode(bgra, ".png"))
    image = read_image(path)
    assert image.shape == (4, 4, 3)
    assert (image[..., 2] == 200).all() and (image[..., :2] == 0).all()


def test_16_bit_becomes_8_bit(tmp_path: Path):
    deep = np.array([[0, 256 * 100, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(encode(deep, ".png"))
    image = read_image(path)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, :, 0], [0, 100, 255])


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.jpg", b"", r"empty \(0 bytes\)"),
        ("text.jpg", b"this is not an image", "cannot decode"),
    ],
)
def test_bad_files(tmp_path: Path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        read_image(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_missing_file(tmp_path: Path):
    path = tmp_path / "nowhere.jpg"
    with pytest.raises(DataError, match="not found") as error:
        read_image(path)
    assert str(error.value).startswith(str(path))


@pytest.mark.parametrize("ext, message", [(".jpg", "truncated JPEG"), (".png", "truncated PNG")])
def test_truncated_files(tmp_path: Path, ext, message):
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(noise, ext)
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=message) as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_jpeg_with_padding_after_end_marker_reads(tmp_path: Path):
    noise = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    path = tmp_path / "padded.jpg"
    path.write_bytes(encode(noise, ".jpg") + b"\x00" * 100)
    assert read_image(path).shape == (16, 16, 3)


def test_jpeg_with_long_trailer_after_end_marker_reads(tmp_path: Path):
    noise = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    path = tmp_path / "trailer.jpg"
    path.write_bytes(encode(noise, ".jpg") + b"camera maker data " * 200)  # 3.6 kB past the end marker
    assert read_image(path).shape == (16, 16, 3)


def smooth_jpeg(height: int = 96, width: int = 128) -> bytes:
    """A JPEG of a smooth gradient (no pixel of it is the decoder's fill grey), with its end marker."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([ys * 2, xs, 255 - xs], axis=2).clip(0, 255).astype(np.uint8)
    data = encode(image, ".jpg")
    assert data.endswith(b"\xff\xd9")
    return data


def test_missing_share_counts_the_grey_tail_of_the_last_block_rows():
    from detect.data.image_io import missing_share

    image = np.full((10, 20, 3), 60, np.uint8)
    image[6:8, 15:] = 128  # the last blocks of a block row
    image[8:] = 128  # whole rows below it
    image[2, 19] = 128  # grey content higher up is not missing data
    assert missing_share(image) == pytest.approx((2 * 5 + 2 * 20) / 200)
    assert missing_share(np.full((4, 4, 3), 60, np.uint8)) == 0.0


def test_a_jpeg_missing_only_its_last_bytes_is_read_with_a_warning(tmp_path: Path, caplog):
    data = smooth_jpeg()
    path = tmp_path / "no_end.jpg"
    path.write_bytes(data[:-2])  # no end-of-image marker, every block there
    with caplog.at_level("WARNING", logger="detect.data.image_io"):
        image = read_image(path)
    assert image.shape == (96, 128, 3)
    np.testing.assert_array_equal(image, read_image_from_bytes(tmp_path, data))
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: truncated JPEG (no end-of-image marker) read, 0.00% of the image is missing (grey)"]
    messages = []
    read_image(path, warn=messages.append)  # a dataset's own report
    assert messages == [caplog.records[0].getMessage()]


def read_image_from_bytes(tmp_path: Path, data: bytes) -> np.ndarray:
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(data)
    return read_image(whole)


def test_a_jpeg_missing_a_visible_part_is_an_error_unless_the_threshold_allows_it(tmp_path: Path):
    data = smooth_jpeg()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as error:
        read_image(path)
    message = str(error.value)
    assert message.startswith(f"{path}: truncated JPEG (no end-of-image marker), ")
    assert message.endswith("of the image is missing (data.max_missing_share is 0.01)")
    share = float(message.split(", ")[1].split("%")[0]) / 100
    assert 0.3 < share < 0.95
    warnings = []
    image = read_image(path, max_missing_share=0.9, warn=warnings.append)
    assert image.shape == (96, 128, 3) and (image[-8:] == 128).all()
    assert len(warnings) == 1 and "of the image is missing (grey)" in warnings[0]


def test_a_dataset_reports_the_truncated_jpeg_with_its_threshold(tmp_path: Path):
    from detect.config import DataConfig
    from detect.data.build import build_dataset
    from tests.data.test_voc import write_voc

    root = write_voc(tmp_path, {"a": [("cat", 1, 1, 5, 5)]}, {"train": ["a"]})
    image_path = root / "JPEGImages" / "a.jpg"
    data = image_path.read_bytes()
    image_path.write_bytes(data[:-2])
    dataset = build_dataset(DataConfig(format="voc", root=str(root), classes=["cat"]), "train")
    assert dataset.max_missing_share == 0.01
    dataset[0]
    assert [(p.severity, p.kind) for p in dataset.problems] == [("warning", "truncated_image")]
    assert str(dataset.problems[0]).startswith(f"warning: {image_path}: truncated JPEG (no end-of-image marker) read")
    image_path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="of the image is missing"):
        build_dataset(DataConfig(format="voc", root=str(root), classes=["cat"]), "train")[0]
    lenient = build_dataset(DataConfig(format="voc", root=str(root), classes=["cat"], max_missing_share=1.0), "train")
    assert lenient[0][0].shape[:2] == read_image_from_bytes(tmp_path, data).shape[:2]
