"""Device helpers: `--device` resolution with one-line errors, autocast only on CUDA, sync on CPU."""

from __future__ import annotations

import contextlib

import pytest
import torch

from detect.config import load_config
from detect.device import autocast_context, resolve_device, synchronize
from detect.errors import DetectError


def test_resolve_device_names_and_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_resolve_device_refuses_bad_names_in_one_line():
    with pytest.raises(DetectError, match=r"--device 'gpu7': not a device \(auto, cpu, cuda, cuda:N\)"):
        resolve_device("gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(DetectError, match="--device 'cuda:1': CUDA is not available on this machine"):
            resolve_device("cuda:1")


def test_autocast_is_a_no_op_on_cpu_and_synchronize_returns():
    config = load_config("synthetic_ssd", ["train.amp=true"])
    assert isinstance(autocast_context(config, torch.device("cpu")), contextlib.nullcontext)
    synchronize(torch.device("cpu"))
    synchronize("cpu")
