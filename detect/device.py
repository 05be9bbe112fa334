"""Where and in what precision a model runs: the `--device` option, autocast, and waiting for the GPU.

    device = resolve_device("auto")                 # torch.device; a one-line DetectError if unusable
    with autocast_context(config, device): ...      # bf16 / fp16 on CUDA when train.amp, else fp32
    synchronize(device)                             # wait for queued CUDA work (timing); no-op on CPU
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

import torch

from detect.errors import DetectError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """`auto`: CUDA when available, else CPU; otherwise a torch device (`cpu`, `cuda`, `cuda:1`)."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DetectError(f"--device '{name}': not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DetectError(f"--device '{name}': CUDA is not available on this machine (use --device cpu)")
    return device


def autocast_context(config, device: torch.device):
    """bf16 (default) or fp16 autocast on CUDA when the config's train.amp; fp32 on CPU."""
    if device.type != "cuda" or not config.train.amp:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if config.train.amp_dtype == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def synchronize(device: torch.device | str) -> None:
    """Wait until the device has finished its queued work (CUDA); nothing to wait for on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else the platform's processor string: what every
    measured figure names beside it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
