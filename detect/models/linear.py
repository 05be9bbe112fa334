"""Fully connected layers whose float32 CPU products run on oneDNN, forward and backward.

    OneDNNLinear(in_features, out_features)   an nn.Linear: the same parameters and state dict keys
    use_onednn_linear(module)                 every nn.Linear inside `module` becomes one, in place
                                              (sharing its parameters)

Why our own: nn.Linear's float32 products on a CPU go to MKL's sgemm, which on the AMD EPYC CPUs we
benchmark on runs at about half the speed of oneDNN's (docs/benchmarks.md, CPU fast paths), and the box heads of Faster
R-CNN (VGG16's fc6 / fc7, the FPN's two-layer MLP) spend most of a CPU step there. The products are
the same sums in another order (relative differences around 1e-6).

oneDNN's product is `torch.ops.mkldnn._linear_pointwise` (what torch.compile emits for a CPU linear
layer), on ordinary dense tensors; the backward pass runs its two products through it as well.
Anywhere else (CUDA, other dtypes, autocast, tracing for ONNX export, a PyTorch without oneDNN) the
layer is the plain nn.Linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detect.models.tracing import is_exporting


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _product(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """inputs [M, K] @ weight [N, K]^T (+ bias [N]) -> [M, N] on oneDNN (strided operands are fine)."""
    return torch.ops.mkldnn._linear_pointwise(inputs, weight, bias, "none", [], "")


class _OneDNNLinearFunction(torch.autograd.Function):
    """y = x W^T + b for x [M, K], W [N, K], b [N] or None; each product of the backward on oneDNN too."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(inputs, weight)
        ctx.has_bias = bias is not None
        return _product(inputs, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        inputs, weight = ctx.saved_tensors
        grad_inputs = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_inputs = _product(grad, weight.t(), None)  # [M, N] @ W [N, K]
        if ctx.needs_input_grad[1]:
            grad_weight = _product(grad.t(), inputs.t(), None)  # [N, M] @ x [M, K]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=0)
        return grad_inputs, grad_weight, grad_bias


class OneDNNLinear(nn.Linear):
    """nn.Linear with oneDNN products for float32 CPU tensors (see the module docstring)."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self._on_onednn(inputs):
            return F.linear(inputs, self.weight, self.bias)
        flat = inputs.reshape(-1, inputs.shape[-1])
        return _OneDNNLinearFunction.apply(flat, self.weight, self.bias).reshape(*inputs.shape[:-1], -1)

    def _on_onednn(self, inputs: torch.Tensor) -> bool:
        return (inputs.device.type == "cpu" and inputs.dtype == torch.float32 and self.weight.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu") and not is_exporting() and onednn_available())


def use_onednn_linear(module: nn.Module) -> nn.Module:
    """Make every plain nn.Linear inside `module` a OneDNNLinear holding the same parameters (in place;
    `module` itself is returned, or its replacement when it is an nn.Linear)."""
    if type(module) is nn.Linear:
        return _converted(module)
    for name, child in module.named_children():
        setattr(module, name, use_onednn_linear(child))
    return module


def _converted(linear: nn.Linear) -> OneDNNLinear:
    converted = OneDNNLinear(linear.in_features, linear.out_features, bias=linear.bias is not None,
                             device="meta")  # no throwaway initialisation: the parameters come next
    converted.weight = linear.weight
    converted.bias = linear.bias
    return converted.train(linear.training)
