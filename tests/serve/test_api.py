"""The HTTP API through an in-process client: every endpoint, every bad input, and that the server
keeps serving after each."""

from __future__ import annotations

import base64
import json
import threading

import cv2
import numpy as np
import pytest

from detect.serve.model import MODEL_SCORE_THRESHOLD
from tests.serve.conftest import encode, noise_image


def upload(*images: tuple[str, bytes]):
    return [("files", (name, data, "application/octet-stream")) for name, data in images]


def test_detect_answers_the_detections_json_schema_in_original_pixels(client, served_model):
    image = noise_image(50, 70, seed=1)
    answer = client.post("/v1/detect?score_threshold=0.3", files=upload(("a.png", encode(image))))
    assert answer.status_code == 200
    [record] = answer.json()["images"]
    assert (record["id"], record["file"], record["height"], record["width"]) == (0, "a.png", 50, 70)
    expected = served_model.detector.detect_arrays([image], score_threshold=0.3)[0].to_list()
    assert len(record["detections"]) == len(expected) > 0
    for got, want in zip(record["detections"], expected):
        assert got["label"] == want["label"] and got["class_name"] == want["class_name"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
        assert got["box"] == pytest.approx(want["box"], abs=0.05)
        x1, y1, x2, y2 = got["box"]
        assert 0 <= x1 <= x2 <= 70 and 0 <= y1 <= y2 <= 50


def test_detect_records_are_detect_infers_detections_json_records(client, served_model, tmp_path, monkeypatch):
    """The same image through `detect infer --json` and POST /v1/detect: the same record, but for
    `file` (the path given there, the upload's name here) and infer's `output` (its drawn copy)."""
    from detect.infer import run_inference

    path = tmp_path / "noise.png"
    path.write_bytes(encode(noise_image(50, 70, seed=7)))
    detector = served_model.detector
    monkeypatch.setattr(detector, "score_threshold", 0.3)  # `detect infer --score-threshold 0.3`
    run_inference(detector, [str(path)], tmp_path / "out", write_json=True, progress=False)
    [written] = json.loads((tmp_path / "out" / "detections.json").read_text())["images"]
    with path.open("rb") as stream:
        answer = client.post(f"/v1/detect?score_threshold={detector.score_threshold}",
                             files=[("files", ("noise.png", stream, "image/png"))])
    [served] = answer.json()["images"]
    assert set(written) - set(served) == {"output"} and set(served) <= set(written)
    assert (served["file"], written["file"]) == ("noise.png", str(path))
    assert (served["id"], served["height"], served["width"]) == (written["id"], written["height"], written["width"])
    assert len(served["detections"]) == len(written["detections"]) > 0
    for got, want in zip(served["detections"], written["detections"]):
        assert set(got) == set(want) and (got["label"], got["class_name"]) == (want["label"], want["class_name"])
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
        assert got["box"] == pytest.approx(want["box"], abs=0.05)


def test_no_endpoint_takes_a_url_to_fetch(client):
    """Images arrive as uploaded bytes only: the API's only inputs are the files and three options."""
    inputs = set()
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        for operation in operations.values():
            inputs |= {(path, parameter["name"]) for parameter in operation.get("parameters", [])}
            if "requestBody" in operation:
                inputs |= {(path, "body")}
    assert inputs == {("/v1/detect", name) for name in ("score_threshold", "classes", "annotate", "body")}
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    [body] = [schema for name, schema in schemas.items() if name.startswith("Body_detect")]
    assert set(body["properties"]) == {"files"} and body["properties"]["files"]["type"] == "array"


def test_detect_several_images_keeps_their_order(client):
    images = [noise_image(40 + 10 * i, 60, seed=i) for i in range(3)]
    files = upload(*[(f"img{i}.jpg", encode(image, ".jpg")) for i, image in enumerate(images)])
    records = client.post("/v1/detect", files=files).json()["images"]
    assert [(r["id"], r["file"], r["height"]) for r in records] == [(0, "img0.jpg", 40), (1, "img1.jpg", 50),
                                                                     (2, "img2.jpg", 60)]


def test_score_threshold_and_classes_filter_the_answer(client):
    data = encode(noise_image(64, 64, seed=2))
    everything = client.post(f"/v1/detect?score_threshold={MODEL_SCORE_THRESHOLD}",
                             files=upload(("a.png", data))).json()
    all_found = everything["images"][0]["detections"]
    median = float(np.median([d["score"] for d in all_found]))
    high = client.post(f"/v1/detect?score_threshold={median}", files=upload(("a.png", data))).json()
    squares = client.post(f"/v1/detect?score_threshold={MODEL_SCORE_THRESHOLD}&classes=square,",
                          files=upload(("a.png", data))).json()
    assert [d for d in all_found if d["score"] >= median] == high["images"][0]["detections"]
    assert 0 < len(high["images"][0]["detections"]) < len(all_found)
    assert [d for d in all_found if d["class_name"] == "square"] == squares["images"][0]["detections"]


def test_annotate_returns_the_image_with_its_boxes_as_jpeg(client):
    image = noise_image(48, 80, seed=3)
    record = client.post("/v1/detect?annotate=true", files=upload(("a.png", encode(image)))).json()["images"][0]
    drawn = cv2.imdecode(np.frombuffer(base64.b64decode(record["annotated_jpeg"]), np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == (48, 80, 3)
    plain = client.post("/v1/detect", files=upload(("a.png", encode(image)))).json()["images"][0]
    assert "annotated_jpeg" not in plain


def test_model_describes_architecture_classes_input_and_checkpoint(client, checkpoint):
    info = client.get("/v1/model").json()
    assert (info["arch"], info["backbone"], info["classes"]) == ("ssd", "tiny_resnet", ["circle", "square", "triangle"])
    assert info["input"] == {"resize": "fixed", "size": 64, "size_divisible": 1}
    meta = info["checkpoint"]
    expected = (checkpoint.name, checkpoint.stat().st_size, 3, 120)
    assert (meta["file"], meta["bytes"], meta["epoch"], meta["step"]) == expected
    assert len(meta["sha256"]) == 64


def test_probes_docs_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert "/v1/detect" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="view"' in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_readyz_is_503_before_the_warm_up(served_model):
    from fastapi.testclient import TestClient

    from detect.serve.app import create_app

    not_started = TestClient(create_app(served_model))  # no `with`: the lifespan has not run
    assert not_started.get("/readyz").status_code == 503


def test_metrics_count_answers_by_status_and_batch_sizes(client):
    client.post("/v1/detect", files=upload(("a.png", encode(noise_image(32, 32, seed=4)))))
    client.post("/v1/detect", files=upload(("a.txt", b"plain text")))
    text = client.get("/metrics").text
    assert 'detect_requests_total{route="/v1/detect",status="200"} 1.0' in text
    assert 'detect_requests_total{route="/v1/detect",status="415"} 1.0' in text
    assert 'detect_request_seconds_bucket{le="+Inf",route="/v1/detect"} 2.0' in text
    assert "detect_batch_size_count 1.0" in text  # the warm-up call is outside the queue
    assert "process_resident_memory_bytes" in text
    client.get("/no/such/path")
    assert 'detect_requests_total{route="other",status="404"} 1.0' in client.get("/metrics").text


# ---------------------------------------------------------------------------------------------------
# Bad input: a clear 4xx in JSON, and the server keeps serving


def truncated_jpeg() -> bytes:
    data = encode(noise_image(64, 64, seed=5), ".jpg")
    return data[: len(data) // 2]


@pytest.mark.parametrize("name, data, status, words", [
    ("notes.txt", b"not an image at all", 415, "not an image"),
    ("empty.png", b"", 415, "empty"),
    ("half.jpg", None, 422, "truncated"),
    ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 422, "fake.png"),
])
def test_bad_files_get_their_4xx_naming_the_file(client, name, data, status, words):
    answer = client.post("/v1/detect", files=upload((name, truncated_jpeg() if data is None else data)))
    assert answer.status_code == status
    assert words in answer.json()["error"] and name in answer.json()["error"]
    assert client.post("/v1/detect", files=upload(("ok.png", encode(noise_image(32, 32, 0))))).status_code == 200


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGB pixels but holds one row of data and no IEND chunk (a
    few hundred bytes that would unpack to width * height * 3)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * (3 * width + 1)))


def test_too_many_pixels_is_422_before_any_decoding(make_client, monkeypatch):
    """The size in the header is checked before anything decodes the pixels: a truncated PNG's second
    opinion (Pillow decoding it whole) would first allocate its full size."""
    import detect.data.image_io as image_io

    def no_decoding(data):
        raise AssertionError("decoded an image over the pixel limit")

    monkeypatch.setattr(image_io, "decodes_fully", no_decoding)
    client = make_client(max_pixels=1_000_000)
    answer = client.post("/v1/detect", files=upload(("huge.png", png_header_only(5000, 4000))))
    assert answer.status_code == 422
    assert answer.json()["error"] == ("huge.png: PNG of 5000x4000 pixels is over the limit of 1000000 pixels "
                                      "(max_pixels); not decoded")
    assert client.post("/v1/detect", files=upload(("ok.png", encode(noise_image(32, 32, 0))))).status_code == 200


@pytest.mark.parametrize("query, words", [
    ("score_threshold=1.5", "score_threshold"),
    ("score_threshold=abc", "score_threshold"),
    ("classes=dog", "unknown class(es) dog"),
    ("classes=,", "classes"),
    ("annotate=maybe", "annotate"),
])
def test_bad_options_are_422(client, query, words):
    answer = client.post(f"/v1/detect?{query}", files=upload(("a.png", encode(noise_image(32, 32, 0)))))
    assert answer.status_code == 422
    assert words in answer.json()["error"]


def test_missing_file_field_is_422(client):
    answer = client.post("/v1/detect", data={"other": "x"})
    assert answer.status_code == 422 and "files" in answer.json()["error"]
    assert client.post("/v1/detect").status_code == 422


def test_too_many_files_is_422(make_client):
    client = make_client(max_files=2)
    data = encode(noise_image(16, 16, 0))
    answer = client.post("/v1/detect", files=upload(*[(f"{i}.png", data) for i in range(3)]))
    assert answer.status_code == 422 and "limit is 2" in answer.json()["error"]


def test_upload_over_the_limit_is_413(make_client):
    client = make_client(max_upload_mb=0.01)  # 10 KiB
    big = encode(noise_image(100, 100, seed=6))  # ~30 KB of noise PNG
    answer = client.post("/v1/detect", files=upload(("big.png", big)))
    assert answer.status_code == 413 and "limit is 0.01 MB" in answer.json()["error"]
    chunked = client.post("/v1/detect", content=(big[i:i + 1024] for i in range(0, len(big), 1024)),
                          headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert chunked.status_code == 413
    small = encode(noise_image(16, 16, seed=6))
    assert client.post("/v1/detect", files=upload(("small.png", small))).status_code == 200


def test_api_key_is_required_when_set(make_client):
    client = make_client(api_key="s3cret")
    files = upload(("a.png", encode(noise_image(32, 32, 0))))
    assert client.post("/v1/detect", files=files).status_code == 401
    assert client.post("/v1/detect", files=files, headers={"X-API-Key": "wrong"}).status_code == 401
    assert "API key" in client.get("/v1/model").json()["error"]
    assert client.get("/metrics").status_code == 401
    text = client.get("/metrics", headers={"X-API-Key": "s3cret"}).text
    assert 'detect_requests_total{route="/v1/detect",status="401"} 2.0' in text  # refused before routing
    assert client.post("/v1/detect", files=files, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/v1/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    for open_path in ("/", "/healthz", "/readyz", "/docs", "/static/app.js"):
        assert client.get(open_path).status_code == 200, open_path


def test_a_failing_model_call_is_a_json_500_and_the_server_goes_on(served_model, monkeypatch):
    from fastapi.testclient import TestClient

    from detect.serve.app import create_app

    calls = []

    def fails_once(images):
        calls.append(len(images))
        if len(calls) == 2:  # the first call is the warm-up
            raise RuntimeError("CUDA out of memory\nmore detail")
        return served_model.detector.detect_arrays(images)

    monkeypatch.setattr(served_model, "predict", fails_once)
    files = upload(("a.png", encode(noise_image(32, 32, 0))))
    with TestClient(create_app(served_model), raise_server_exceptions=False) as client:  # as a real server answers
        failed = client.post("/v1/detect", files=files)
        assert failed.status_code == 500
        assert failed.json() == {"error": "internal error: RuntimeError: CUDA out of memory"}
        assert client.post("/v1/detect", files=files).status_code == 200


def test_full_queue_is_503_with_retry_after(make_client, served_model, monkeypatch):
    """One image in the model (held), one waiting: the queue of 1 is full, the next request is 503."""
    release, entered = threading.Event(), threading.Event()
    predict = served_model.predict

    def held_predict(images):
        entered.set()
        assert release.wait(10)
        return predict(images)

    client = make_client(max_batch=1, queue_capacity=1, max_wait_ms=0)
    monkeypatch.setattr(client.app.state.queue, "predict", held_predict)
    files = upload(("a.png", encode(noise_image(32, 32, 0))))
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(client.post("/v1/detect", files=files).status_code))
               for _ in range(2)]
    threads[0].start()
    assert entered.wait(10)
    threads[1].start()
    _wait_for(lambda: client.app.state.queue.depth == 1)
    assert client.get("/healthz").status_code == 200  # the model is busy, the event loop is not
    assert client.get("/v1/model").status_code == 200
    full = client.post("/v1/detect", files=files)
    assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1 and "busy" in full.json()["error"]
    release.set()
    for thread in threads:
        thread.join(10)
    assert answers == [200, 200]


def _wait_for(condition, seconds: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.mark.parametrize("classes, message", [
    (",", "classes: no class name given"),
    (" , ,", "classes: no class name given"),
    ("hexagon", "classes: unknown class(es) hexagon"),
])
def test_classes_follow_the_rule_of_detect_infer(client, classes, message):
    answer = client.post(f"/v1/detect?classes={classes}", files=upload(("a.png", encode(noise_image(32, 32, 0)))))
    assert answer.status_code == 422 and answer.json()["error"].startswith(message)


def test_a_non_ascii_api_key_matches_its_utf8_bytes(make_client):
    client = make_client(api_key="clé-ünïcode-鍵")
    image = upload(("a.png", encode(noise_image(32, 32, 0))))
    key = "clé-ünïcode-鍵".encode("utf-8")
    assert client.post("/v1/detect", files=image, headers={"x-api-key": key}).status_code == 200
    assert client.post("/v1/detect", files=image, headers={"authorization": b"Bearer " + key}).status_code == 200
    assert client.post("/v1/detect", files=image, headers={"x-api-key": "cle-unicode".encode()}).status_code == 401
    assert client.post("/v1/detect", files=image, headers={"x-api-key": "clé".encode("latin-1")}).status_code == 401
