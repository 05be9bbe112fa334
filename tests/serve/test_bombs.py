"""Decompression bombs and pixel floods against POST /v1/detect: every image's size comes from its
header before any decoder runs; a request's pixels in all, and those held by all requests in
flight, are bounded too."""

from __future__ import annotations

import cv2
import pytest

from tests.bombs import BOMBS
from tests.serve.conftest import encode, noise_image


def upload(*images: tuple[str, bytes]):
    return [("files", (name, data, "application/octet-stream")) for name, data in images]


@pytest.fixture
def no_decoding(monkeypatch):
    """Any call of OpenCV's decoder or Pillow's second opinion fails the test."""
    real = cv2.imdecode

    def guarded(*args, **kwargs):
        raise AssertionError("a decoder saw the bytes of an image over the pixel limit")

    monkeypatch.setattr(cv2, "imdecode", guarded)
    monkeypatch.setattr("detect.data.image_io.decodes_fully", guarded)
    return real


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_each_bomb_is_422_from_its_header_without_decoding(client, no_decoding, name):
    answer = client.post("/v1/detect", files=upload((name, BOMBS[name]())))
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(f"{name}: ")
    assert "is over the limit of 40000000 pixels (max_pixels); not decoded" in answer.json()["error"]


def test_four_bombs_in_one_request_are_refused_before_any_decoding(client, no_decoding, monkeypatch):
    """The campaign's 4 KB request of four 20000 x 20000 files."""
    files = [(name, BOMBS[name]()) for name in ("bmp_rle8_info100.bmp", "png_bad_text_crc.png",
                                                 "png_broken_iccp.png", "png_empty_srgb.png")]
    assert sum(len(data) for _, data in files) < 4096
    answer = client.post("/v1/detect", files=upload(*files))
    assert answer.status_code == 422 and answer.json()["error"].startswith("bmp_rle8_info100.bmp: BMP of 20000x20000")
    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    assert client.post("/v1/detect", files=upload(("ok.png", encode(noise_image(32, 32, 0))))).status_code == 200


def test_a_request_is_bounded_in_pixels_in_all(make_client):
    """16 images each under the per-image limit: refused as a whole, from their headers."""
    client = make_client(max_pixels=2_000, max_request_pixels=10_000)
    images = [(f"{index}.png", encode(noise_image(40, 40, index))) for index in range(7)]  # 1,600 pixels each
    answer = client.post("/v1/detect", files=upload(*images))
    assert answer.status_code == 422
    assert answer.json()["error"] == ("7 images of 11200 pixels in all; the limit for one request is 10000 pixels "
                                      "(--max-request-pixels)")
    assert client.post("/v1/detect", files=upload(*images[:6])).status_code == 200


def test_pixels_held_by_requests_in_flight_are_bounded(make_client):
    """While other requests hold most of the budget, a request that does not fit is answered 503 with
    Retry-After; the budget is given back after each answer, errors included."""
    client = make_client(max_pixels=2_000, max_request_pixels=4_000, max_held_pixels=5_000)
    budget = client.app.state.pixel_budget
    images = upload(*[(f"{index}.png", encode(noise_image(40, 40, index))) for index in range(2)])  # 3,200
    with budget.reserve(2_000):  # what a request in flight holds
        busy = client.post("/v1/detect", files=images)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "3200 of the 5000 allowed at once" in busy.json()["error"]
        assert client.post("/v1/detect", files=images[:1]).status_code == 200  # 1,600 still fit
    assert budget.held == 0
    assert client.post("/v1/detect", files=images).status_code == 200
    assert client.post("/v1/detect?classes=nope", files=images).status_code == 422
    assert budget.held == 0


def test_the_limits_are_serve_options_that_reach_the_settings(checkpoint, monkeypatch):
    from detect.cli import main
    from detect.serve.app import ServeSettings

    calls = []
    monkeypatch.setattr("detect.serve.server.run_server", lambda checkpoint, **options: calls.append(options))
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(checkpoint), "--max-pixels", "1000", "--max-request-pixels", "3000",
              "--max-held-pixels", "5000"])
    assert exit_info.value.code == 0
    settings = calls[-1]["settings"]
    assert (settings.max_pixels, settings.max_request_pixels, settings.max_held_pixels) == (1000, 3000, 5000)
    defaults = ServeSettings()
    assert (defaults.max_pixels, defaults.max_request_pixels, defaults.max_held_pixels) == (
        40_000_000, 80_000_000, 160_000_000)
    # A request limit below one image's, or a server budget below one request's, is raised to it.
    raised = ServeSettings(max_pixels=1000, max_request_pixels=10, max_held_pixels=10)
    assert (raised.max_request_pixels, raised.max_held_pixels) == (1000, 1000)
