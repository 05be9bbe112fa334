"""Shared test fixtures: the small real datasets in ../shared/data, when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """`$DETECT_SHARED_DATA`, else `<repo>/../shared/data` (where the project's real datasets live)."""
    env = os.environ.get("DETECT_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_dataset():
    """Returns a function: name -> path of ../shared/data/<name>, skipping the test when it is absent."""

    def get(name: str) -> Path:
        path = shared_data_dir() / name
        if not path.is_dir():
            pytest.skip(f"real dataset '{name}' not found at {path} (set DETECT_SHARED_DATA)")
        return path

    return get


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test: on a small machine shared with other jobs, more threads
    only wait on each other (timing-heavy tests use it)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_tool(name: str):
    """Import tools/<name>.py (the tools are scripts, not a package)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network and an empty torch hub cache: what a weight download meets on an offline cluster."""
    import socket

    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    return tmp_path


def run_detect(args, capsys) -> tuple[int, str, str]:
    """`detect ARGS` in this process: (exit code, standard output, standard error)."""
    from detect.cli import main

    capsys.readouterr()
    try:
        main([str(arg) for arg in args])
        code = 0
    except SystemExit as exited:
        code = exited.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
