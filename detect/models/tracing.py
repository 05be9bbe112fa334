"""Whether the model is being traced for export.

Several layers take a faster path on the CPU that tracing would freeze into the graph (a data-dependent
shape, a oneDNN call, a host-side loop); each asks this one function whether to take the plain
torch / torchvision path instead, so that `detect export` records operators ONNX has.
"""

from __future__ import annotations

import torch


def is_exporting() -> bool:
    """True inside torch.jit tracing or torch.onnx export."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
