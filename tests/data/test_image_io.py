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
