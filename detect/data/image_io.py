"""Read an image file robustly into an HxWx3 uint8 RGB numpy array.

The format is decided by the file's bytes, not its extension (a PNG named .jpg decodes fine).
Grayscale, RGBA and 16-bit images are converted to 8-bit RGB. A missing file, an empty file, bytes
that are not an image, and a truncated JPEG or PNG raise DataError with one line naming the file.

Why the end-marker check: OpenCV decodes a truncated JPEG partially (grey lower half, a warning on
stderr) and returns it as if it were whole; a training run would then learn from half an image.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detect.errors import DataError

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
_PNG_START = b"\x89PNG\r\n\x1a\n"
# Some writers pad a file after its end marker; look for the marker this far from the end.
_TAIL_BYTES = 1024


def read_image(path: str | Path) -> np.ndarray:
    """Returns the image at `path` as uint8 RGB [H, W, 3]; raises DataError naming the file."""
    path = Path(path)
    return decode_image(read_image_bytes(path), path)


def decode_image(data: bytes, path: str | Path = "<image>") -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) -> uint8 RGB [H, W, 3]; DataError naming `path` when they
    are truncated or not an image. (What `read_image` does once the file is read; the server decodes
    uploads with it.)"""
    check_complete(data, path)
    # IMREAD_UNCHANGED keeps 16-bit depth and alpha so we convert them ourselves, and ignores EXIF
    # orientation: VOC and COCO boxes are drawn on the stored pixels, so the stored pixels are used.
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: cannot decode image (not an image format OpenCV reads, or corrupt)")
    if image.size == 0 or image.shape[0] == 0 or image.shape[1] == 0:
        raise DataError(f"{path}: image has size 0 ({image.shape})")
    return to_rgb8(image, path)


def read_image_bytes(path: Path) -> bytes:
    """The file's bytes; DataError when it is missing, unreadable or empty."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read image file ({error.strerror or error})") from None
    if len(data) == 0:
        raise DataError(f"{path}: image file is empty (0 bytes)")
    return data


def check_complete(data: bytes, path: str | Path) -> None:
    """DataError when JPEG or PNG bytes lack their end marker (a truncated file)."""
    tail = data[-_TAIL_BYTES:]
    if data.startswith(_JPEG_START) and _JPEG_END not in tail and not decodes_fully(data):
        raise DataError(f"{path}: truncated JPEG (no end-of-image marker)")
    if data.startswith(_PNG_START) and b"IEND" not in tail and not decodes_fully(data):
        raise DataError(f"{path}: truncated PNG (no IEND chunk)")


def decodes_fully(data: bytes) -> bool:
    """Second opinion for a file without its end marker near the end (some cameras append kilobytes
    of their own data after it): Pillow raises on truncated image data where OpenCV does not.
    Without Pillow the marker check stands."""
    try:
        from PIL import Image
    except ImportError:
        return False
    import io

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception:  # Pillow raises OSError, SyntaxError or ValueError on broken data
        return False
    return True


def to_rgb8(image: np.ndarray, path: Path | str = "<image>") -> np.ndarray:
    """OpenCV's decoded array (gray, BGR or BGRA; 8-bit, 16-bit or float) -> uint8 RGB [H, W, 3]."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DataError(f"{path}: unsupported pixel type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise DataError(f"{path}: unsupported number of channels {channels}")
