"""SOURCE parsing (every kind), image reading, and opening videos, cameras and streams."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.data.image_io import read_image
from detect.errors import DataError, DetectError
from detect.infer.sources import (
    ImageSource,
    VideoSource,
    capture_properties,
    open_capture,
    parse_source,
    parse_sources,
    read_frames,
)


def write_png(path: Path, height: int = 20, width: int = 30, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))
    return path


def write_video(path: Path, frames: int = 5, fps: float = 10.0, size: tuple[int, int] = (48, 32)) -> Path:
    """A short clip: a black first frame, then random noise (seeded)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    rng = np.random.default_rng(0)
    for index in range(frames):
        shape = (size[1], size[0], 3)
        frame = rng.integers(0, 256, shape, dtype=np.uint8) if index else np.zeros(shape, np.uint8)
        writer.write(frame)
    writer.release()
    return path


def _boxes(data, start: int, end: int):
    """(position, size, type) of the MP4 boxes between start and end."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        yield pos, size, kind
        pos += size

def _find(data, start: int, end: int, kind: bytes) -> tuple[int, int]:
    for pos, size, found in _boxes(data, start, end):
        if found == kind:
            return pos, size
    raise KeyError(kind)

def write_vfr_video(path: Path, frame_times_s: list[float], size: tuple[int, int] = (48, 32)) -> Path:
    """A variable-frame-rate MP4: OpenCV writes it at a constant rate, then its time-to-sample table
    (stts) is rewritten to give each frame the time asked for, the durations follow, and the edit
    list (which would cut the track at the constant-rate length) is blanked."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    rng = np.random.default_rng(0)
    for _ in frame_times_s:
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    data = bytearray(open(path, "rb").read())
    chain = [_find(data, 0, len(data), b"moov")]
    for kind in (b"trak", b"mdia", b"minf", b"stbl", b"stts"):
        pos, size_ = chain[-1]
        chain.append(_find(data, pos + 8, pos + size_, kind))
    mdia_pos, mdia_size = chain[2]
    mdhd, _ = _find(data, mdia_pos + 8, mdia_pos + mdia_size, b"mdhd")
    timescale = struct.unpack(">I", data[mdhd + 20:mdhd + 24])[0]  # version 0: 4 bytes of flags, 8 of times
    ticks = [round(t * timescale) for t in frame_times_s]
    deltas = [b - a for a, b in zip(ticks, ticks[1:])]
    deltas.append(deltas[-1])
    entries = b"".join(struct.pack(">II", 1, d) for d in deltas)
    stts = struct.pack(">I4sII", 16 + len(entries), b"stts", 0, len(deltas)) + entries
    stts_pos, stts_size = chain[-1]
    growth = len(stts) - stts_size
    data[stts_pos:stts_pos + stts_size] = stts
    for pos, size_ in chain[:-1]:
        struct.pack_into(">I", data, pos, size_ + growth)
    # The durations, and no edit list: it would cut the track at the constant-rate length.
    total = ticks[-1] + deltas[-1]
    struct.pack_into(">I", data, mdhd + 24, total)
    moov_pos, moov_size = chain[0]
    mvhd, _ = _find(data, moov_pos + 8, moov_pos + moov_size + growth, b"mvhd")
    movie_scale = struct.unpack(">I", data[mvhd + 20:mvhd + 24])[0]
    struct.pack_into(">I", data, mvhd + 24, round(total / timescale * movie_scale))
    trak_pos, trak_size = chain[1]
    tkhd, _ = _find(data, trak_pos + 8, trak_pos + trak_size + growth, b"tkhd")
    struct.pack_into(">I", data, tkhd + 28, round(total / timescale * movie_scale))
    try:
        edts, _ = _find(data, trak_pos + 8, trak_pos + trak_size + growth, b"edts")
        data[edts + 4:edts + 8] = b"free"
    except KeyError:
        pass
    open(path, "wb").write(bytes(data))
    return path


def test_image_file(tmp_path):
    image = write_png(tmp_path / "a.png")
    assert parse_source(str(image)) == ([ImageSource(image, "a.png")], [])


def test_folder_is_recursive_sorted_and_keeps_relative_names(tmp_path):
    write_png(tmp_path / "b.jpg")
    write_png(tmp_path / "sub" / "a.PNG")
    (tmp_path / "notes.txt").write_text("not an image")  # other files in a folder are ignored
    write_video(tmp_path / "sub" / "clip.mp4")
    images, videos = parse_source(str(tmp_path))
    assert [source.name for source in images] == ["b.jpg", "sub/a.PNG"]
    assert videos == [VideoSource(str(tmp_path / "sub" / "clip.mp4"), "file", "sub/clip")]


def test_glob_keeps_names_below_its_fixed_part(tmp_path):
    write_png(tmp_path / "x" / "one.png")
    write_png(tmp_path / "y" / "two.png")
    write_png(tmp_path / "y" / "skip.jpg")
    images, videos = parse_source(str(tmp_path / "*" / "*.png"))
    assert [source.name for source in images] == ["x/one.png", "y/two.png"] and videos == []


def test_video_camera_and_streams():
    assert parse_source("0") == ([], [VideoSource(0, "camera", "camera0")])
    _, [stream] = parse_source("rtsp://user@cam.local:554/live/1?x=2")
    assert (stream.kind, stream.target, stream.name, stream.is_live) == (
        "stream", "rtsp://user@cam.local:554/live/1?x=2", "user_cam.local_554_live_1", True)
    _, [http] = parse_source("https://example.org/feed.mjpg")
    assert http.kind == "stream"


def test_video_file(tmp_path):
    clip = write_video(tmp_path / "clip.MOV")
    assert parse_source(str(clip)) == ([], [VideoSource(str(clip), "file", "clip")])


def test_a_file_named_twice_is_read_once(tmp_path):
    image = write_png(tmp_path / "a.png")
    images, _ = parse_sources([str(tmp_path), str(image)])
    assert len(images) == 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: str(tmp / "missing.jpg"), "no such file or folder"),
        (lambda tmp: str(tmp / "*.jpg"), "matches no files"),
        (lambda tmp: str((tmp / "empty").mkdir() or tmp / "empty"), "no images or videos"),
        (lambda tmp: str(write_png(tmp / "a.png").with_name("a.xyz").write_text("x") and tmp / "a.xyz"),
         "unsupported file type '.xyz'"),
    ],
)
def test_bad_sources_are_one_line_errors(tmp_path, make, message):
    spec = make(tmp_path)
    with pytest.raises(DetectError, match=message) as error:
        parse_sources([spec])
    assert "\n" not in str(error.value) and spec.split("/")[-1] in str(error.value)


def test_no_source_at_all():
    with pytest.raises(DetectError, match="no SOURCE"):
        parse_sources([])


def test_read_image_is_rgb_and_corrupt_files_name_themselves(tmp_path):
    path = tmp_path / "colour.png"
    cv2.imwrite(str(path), np.array([[[255, 0, 0]]], np.uint8))  # BGR blue
    assert read_image(path).tolist() == [[[0, 0, 255]]]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="corrupt.jpg: truncated or corrupt JPEG"):
        read_image(corrupt)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.png"):
        read_image(empty)


def test_video_frames_fps_and_count(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames=6, fps=12.0)
    capture = open_capture(VideoSource(str(clip), "file", "clip"))
    fps, count = capture_properties(capture)
    frames = list(read_frames(capture))
    capture.release()
    assert fps == pytest.approx(12.0) and count == 6
    assert len(frames) == 6 and frames[0].shape == (32, 48, 3) and frames[0].dtype == np.uint8
    capture = open_capture(VideoSource(str(clip), "file", "clip"))
    assert len(list(read_frames(capture, max_frames=2))) == 2
    capture.release()


def test_unreadable_video_camera_and_stream_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    for source, message in [
        (VideoSource(str(broken), "file", "broken"), "broken.mp4: cannot open the video file"),
        (VideoSource(str(tmp_path / "gone.mp4"), "file", "gone"), "gone.mp4: no such video file"),
        (VideoSource(99, "camera", "camera99"), "99: cannot open the camera"),
        (VideoSource("rtsp://127.0.0.1:1/none", "stream", "none"), "cannot open the stream"),
    ]:
        with pytest.raises(DetectError, match=message) as error:
            open_capture(source)
        assert "\n" not in str(error.value)


def test_streams_without_a_frame_rate_get_the_default():
    class NoFps:
        def get(self, prop):
            return 0.0

    assert capture_properties(NoFps(), default_fps=25.0) == (25.0, None)
