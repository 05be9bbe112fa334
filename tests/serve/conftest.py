"""A tiny SSD checkpoint (random weights, fixed seed) served in-process, and images to send it.

The SSD of tests/infer (64 px, three feature maps) finds its random-weight detections in bright or
noisy images in a few milliseconds on a CPU; the server asks it for scores from 0.01, so every
noise image gets detections to filter.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import numpy as np
import pytest
import torch
import uvicorn

from detect.config import config_to_dict
from detect.models.build import build_model
from detect.serve.app import ServeSettings, create_app
from detect.serve.model import load_served_model
from tests.infer.conftest import CLASS_NAMES, tiny_config


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = tiny_config("ssd")
    model = build_model(config.model, config.input, len(CLASS_NAMES)).eval()
    path = tmp_path_factory.mktemp("serve") / "tiny_ssd.pt"
    torch.save({"model": model.state_dict(), "config": config_to_dict(config), "class_names": CLASS_NAMES,
                "epoch": 3, "step": 120, "best_metric": 0.25}, path)
    return path


@pytest.fixture(scope="session", params=["torch", "openvino"])
def served_model(request, checkpoint):
    """The served model, once per backend: every server test runs with the checkpoint's PyTorch model
    and with the same model exported and compiled by OpenVINO (`detect serve --backend openvino`)."""
    if request.param == "openvino":
        pytest.importorskip("openvino", reason="--backend openvino needs the extra: pip install -e '.[openvino]'")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: a second thread only spin-waits on a busy machine
    yield load_served_model(checkpoint, device="cpu", backend=request.param)
    torch.set_num_threads(previous)


@pytest.fixture
def make_client(served_model):
    """settings -> a started TestClient (lifespan run: queue worker up, model warmed); closed after."""
    from fastapi.testclient import TestClient

    clients = []

    def make(**settings) -> TestClient:
        client = TestClient(create_app(served_model, ServeSettings(**settings)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def noise_image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(image_rgb: np.ndarray, extension: str = ".png") -> bytes:
    import cv2

    ok, encoded = cv2.imencode(extension, image_rgb[:, :, ::-1])
    assert ok
    return encoded.tobytes()


@contextlib.contextmanager
def serving(app):
    """Serve `app` by uvicorn on a free loopback port, in a thread of this process; yields its base URL
    once the app is ready and stops the server on exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not (server.started and app.state.ready):
            assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_server(served_model):
    """(model=None, **settings) -> base URL of the app serving `model` (default: the tiny SSD), by
    `serving`; stopped after the test."""
    with contextlib.ExitStack() as servers:
        def start(model=None, **settings) -> str:
            return servers.enter_context(serving(create_app(model or served_model, ServeSettings(**settings))))

        yield start
