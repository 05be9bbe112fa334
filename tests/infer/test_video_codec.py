"""The videos `detect infer` writes: H.264 in MP4 with yuv420p pixels and the index first, which
headless Chromium plays to its full duration; the OpenCV writer only where PyAV is missing."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
import time

import cv2
import numpy as np
import pytest

from detect.infer.video_output import VideoOutput
from tests.infer.test_sources import _boxes
from tests.serve.browsers import missing, start

FPS, FRAMES, SIZE = 12.0, 30, (96, 64)


def write_clip(path, codec="h264"):
    output = VideoOutput(path, path.with_suffix(".jsonl"), FPS, lambda frame, found: frame, codec=codec)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8) for _ in range(FRAMES)]
    output.put(frames, [type("Found", (), {"to_list": lambda self: []})() for _ in frames],
               [i / FPS for i in range(FRAMES)])
    assert output.close() == FRAMES
    return path


def test_the_video_is_h264_yuv420p_with_the_index_first(tmp_path):
    av = pytest.importorskip("av", reason="PyAV is a dependency of detect (pip install av)")
    path = write_clip(tmp_path / "clip.mp4")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (stream.codec_context.width, stream.codec_context.height) == SIZE
        assert float(stream.average_rate) == pytest.approx(FPS)
    kinds = [kind for _, _, kind in _boxes(path.read_bytes(), 0, path.stat().st_size)]
    assert kinds.index(b"moov") < kinds.index(b"mdat")  # faststart: playable while it downloads
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    capture.release()


def test_without_pyav_the_opencv_writer_is_used_with_a_warning(tmp_path, monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("no av")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    monkeypatch.setattr("detect.video_writer._warned", False)  # said once a process
    path = write_clip(tmp_path / "clip.mp4")
    assert "PyAV is not installed" in caplog.text
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") in (b"mp4v", b"FMP4")  # MPEG-4 Part 2
    capture.release()


@contextlib.contextmanager
def http_folder(folder):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_headless_chromium_plays_the_video_to_its_full_duration(tmp_path):
    lacking = missing("chromium")
    if lacking:
        reason = f"the video playback test needs {', '.join(lacking)}: see tools/install_browser.sh"
        if os.environ.get("DETECT_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    write_clip(tmp_path / "clip.mp4")
    (tmp_path / "index.html").write_text('<video id="v" src="clip.mp4" muted preload="auto"></video>')
    driver = start("chromium")
    try:
        with http_folder(tmp_path) as url:
            driver.get(f"{url}/index.html")
            deadline = time.monotonic() + 30
            state = None
            while time.monotonic() < deadline:
                state = driver.execute_script(
                    "const v = document.getElementById('v');"
                    "return [v.readyState, v.duration, v.error ? v.error.code : null];")
                if state[0] >= 2 or state[2] is not None:
                    break
                time.sleep(0.2)
    finally:
        driver.quit()
    ready, duration, error = state
    assert error is None and ready >= 2, state
    assert duration == pytest.approx(FRAMES / FPS, abs=1 / FPS)
