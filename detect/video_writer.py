"""Writing video files: H.264 in MP4 (yuv420p pixels, the index at the front: browsers play it) through
PyAV, whose wheels carry FFmpeg; OpenCV's MPEG-4 Part 2 writer, with a warning, where PyAV is missing.

    writer = open_writer(path, shown_path, fps, width, height, codec="h264")   even width and height
    writer.write(frame_bgr uint8 [H, W, 3]); writer.release()
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from detect.errors import DetectError

log = logging.getLogger(__name__)

DEFAULT_CODEC = "h264"
CODECS = {"h264": "libx264", "hevc": "libx265", "mpeg4": "mpeg4"}  # --codec -> PyAV's encoder
_warned = False


def open_writer(path: Path, shown_path: Path, fps: float, width: int, height: int, codec: str = DEFAULT_CODEC):
    """A writer of BGR frames (`write`, `release`): PyAV's FFmpeg encoder for `codec`, in MP4 with yuv420p
    pixels and the index at the front (faststart), which browsers play; OpenCV's MPEG-4 Part 2 writer,
    with a warning, where PyAV is not installed."""
    try:
        import av  # noqa: F401
    except ImportError:
        global _warned
        if not _warned:
            _warned = True
            log.warning("PyAV is not installed: videos are written as MPEG-4 Part 2 (mp4v) through OpenCV, which "
                        "browsers do not play; pip install av")
        return _opencv_writer(path, shown_path, fps, width, height)
    return PyAVWriter(path, shown_path, fps, width, height, codec)


def _opencv_writer(path: Path, shown_path: Path, fps: float, width: int, height: int):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise DetectError(f"{shown_path}: cannot open a video writer (mp4v, {width}x{height} at {fps:g} fps)")
    return writer


class PyAVWriter:
    def __init__(self, path: Path, shown_path: Path, fps: float, width: int, height: int, codec: str) -> None:
        import av

        if codec not in CODECS:
            raise DetectError(f"--codec must be one of {', '.join(CODECS)}, got '{codec}'")
        rate = Fraction(fps).limit_denominator(1001)
        try:
            self.container = av.open(str(path), "w", format="mp4", options={"movflags": "faststart"})
            self.stream = self.container.add_stream(CODECS[codec], rate=rate)
        except (av.error.FFmpegError, ValueError) as error:
            raise DetectError(f"{shown_path}: cannot open a video writer ({codec}, {width}x{height} at {fps:g} "
                              f"fps): {error}") from None
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"

    def write(self, frame_bgr: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgr), format="bgr24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def release(self) -> None:
        for packet in self.stream.encode():  # the frames the encoder still holds
            self.container.mux(packet)
        self.container.close()
