"""`detect serve`: options reach the server, user errors are one line, and the real command serves."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from detect.cli import main
from tests.conftest import REPO_ROOT


@pytest.fixture
def captured_run(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "detect.serve.server.run_server", lambda checkpoint, **options: calls.append((checkpoint, options)))
    return calls


def test_defaults_bind_loopback_and_options_reach_the_settings(captured_run, monkeypatch, checkpoint):
    monkeypatch.delenv("DETECT_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(checkpoint)])
    assert exit_info.value.code == 0
    _, options = captured_run[-1]
    chosen = (options["host"], options["port"], options["device"], options["backend"])
    assert chosen == ("127.0.0.1", 8000, "auto", "auto")  # auto: the file's suffix picks the backend
    assert options["settings"].api_key is None and options["settings"].max_batch == 8

    monkeypatch.setenv("DETECT_API_KEY", "from-env")
    with pytest.raises(SystemExit):
        main(["serve", str(checkpoint), "--max-batch", "4", "--max-wait-ms", "3", "--max-upload-mb", "2",
              "--max-queue", "2", "--port", "9000"])
    _, options = captured_run[-1]
    settings = options["settings"]
    chosen = (settings.max_batch, settings.max_wait_ms, settings.max_upload_mb, settings.api_key)
    assert chosen == (4, 3.0, 2.0, "from-env")
    assert settings.queue_capacity == 4 and options["port"] == 9000  # the queue holds at least one batch


def test_missing_checkpoint_is_a_one_line_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(tmp_path / "nothing.pt")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "nothing.pt" in error and "not found" in error


def test_unknown_backend_is_a_one_line_error(capsys, checkpoint):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(checkpoint), "--backend", "nope"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--backend nope: unknown backend" in error


def test_the_command_serves_until_stopped(checkpoint):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "detect", "serve", str(checkpoint), "--port", str(port),
                               "--device", "cpu"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "not ready in 90 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model", timeout=10) as answer:
            assert json.load(answer)["name"] == checkpoint.name
    finally:
        server.terminate()
        server.wait(30)
    assert "page at http://127.0.0.1:" in server.stdout.read()
