"""Image sizes read from file headers (detect.data.image_header) against what the decoder gives, and
the bombs of tests/bombs.py refused before any decoding."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from detect.data.image_header import check_pixel_limit, header_size
from detect.data.image_io import read_image
from detect.errors import DataError
from tests.bombs import BOMBS


def _opencv(extension: str, params=()):
    def encode(image):
        ok, data = cv2.imencode(extension, image[:, :, ::-1], list(params))
        assert ok
        return data.tobytes()
    return encode


def _pillow(format_name: str, **options):
    def encode(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format_name, **options)
        return buffer.getvalue()
    return encode


ENCODERS = {
    "jpeg": _opencv(".jpg"),
    "jpeg_progressive": _pillow("JPEG", progressive=True),
    "png": _opencv(".png"),
    "bmp": _opencv(".bmp"),
    "bmp_core_header": None,  # written by hand below
    "gif": _pillow("GIF"),
    "tiff_little_endian": _opencv(".tif"),
    "tiff_big_endian": None,  # Pillow writes the byte order of the machine: swapped below
    "webp_lossy": _opencv(".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
    "webp_lossless": _opencv(".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
    "ppm": _opencv(".ppm"),
    "pgm": lambda image: cv2.imencode(".pgm", image[:, :, 0])[1].tobytes(),
    "pam": _opencv(".pam"),
}


def _bmp_core_header(image: np.ndarray) -> bytes:
    """A 24-bit BMP with the old 12-byte core header (16-bit sizes)."""
    import struct

    height, width = image.shape[:2]
    row = (width * 3 + 3) // 4 * 4
    pixels = b"".join(image[y, :, ::-1].tobytes().ljust(row, b"\x00") for y in range(height - 1, -1, -1))
    info = struct.pack("<IHHHH", 12, width, height, 1, 24)
    return b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26) + info + pixels


def _big_endian_tiff(image: np.ndarray) -> bytes:
    """A TIFF in Motorola byte order (Pillow writes it from a big-endian 16-bit image)."""
    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0].astype(">u2")).save(buffer, "TIFF")
    data = buffer.getvalue()
    assert data.startswith(b"MM")
    return data


@pytest.mark.parametrize("kind", sorted(ENCODERS))
def test_the_header_size_is_the_decoded_size(kind):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    data = {"bmp_core_header": _bmp_core_header, "tiff_big_endian": _big_endian_tiff}.get(kind, ENCODERS[kind])(image)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None
    _, width, height = header_size(data)
    assert (height, width) == decoded.shape[:2] == (37, 53)


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_every_bomb_is_refused_before_decoding(name, tmp_path, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("a decoder saw the bytes of an image over the pixel limit")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    monkeypatch.setattr("detect.data.image_io.decodes_fully", no_decoding)
    path = tmp_path / name
    path.write_bytes(BOMBS[name]())
    assert path.stat().st_size < 2048
    with pytest.raises(DataError, match=rf"^{path}: (JPEG|PNG|BMP|GIF) of \d+x\d+ pixels is over the limit of "
                                        rf"40000000 pixels \(max_pixels\); not decoded$"):
        read_image(path)


def test_the_limit_is_a_parameter_and_none_switches_it_off(tmp_path):
    path = tmp_path / "small.png"
    path.write_bytes(_opencv(".png")(np.zeros((20, 30, 3), np.uint8)))
    assert read_image(path, max_pixels=600).shape == (20, 30, 3)
    with pytest.raises(DataError, match="PNG of 30x20 pixels is over the limit of 599 pixels"):
        read_image(path, max_pixels=599)
    assert check_pixel_limit(b"anything", "x", None) is None


@pytest.mark.parametrize("data, message", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "truncated or corrupt JPEG: the header holds no readable image size"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated or corrupt PNG"),
    (b"BM\x00", "truncated or corrupt BMP"),
    (b"II*\x00\xff\xff\xff\x00", "truncated or corrupt TIFF"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "truncated or corrupt WebP"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "cannot decode: not a JPEG, PNG, BMP, GIF, TIFF, WebP or PNM file"),
])
def test_unreadable_headers_are_refused_with_the_format_named(data, message):
    with pytest.raises(DataError, match=rf"^upload\.bin: {message}"):
        check_pixel_limit(data, "upload.bin", 1000)


def test_a_zero_size_header_is_refused():
    from tests.bombs import png_bomb

    with pytest.raises(DataError, match="declares a size of 0x5 pixels"):
        check_pixel_limit(png_bomb(0, 5, extra="none"), "zero.png", 1000)


def test_a_jpeg_whose_size_comes_after_64_kib_of_metadata(tmp_path):
    """Long EXIF / ICC segments may put the frame size past the first 64 KiB: the file is read further."""
    import cv2
    import numpy as np

    from detect.data.image_header import file_header_size

    ok, encoded = cv2.imencode(".jpg", np.zeros((30, 50, 3), np.uint8))
    data = encoded.tobytes()
    segment = b"\xff\xe1" + (40000).to_bytes(2, "big") + b"\0" * 39998  # two APP1 segments of 40 kB
    path = tmp_path / "long_exif.jpg"
    path.write_bytes(data[:2] + segment + segment + data[2:])
    assert header_size(path.read_bytes()[:1 << 16]) is None
    assert file_header_size(path) == ("JPEG", 50, 30)
