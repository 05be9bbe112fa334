"""OneDNNLinear against nn.Linear: values and gradients, the conversion of a model's layers, and the
plain nn.Linear path where oneDNN is not used (tracing, autocast, without bias)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detect.models.linear import OneDNNLinear, onednn_available, use_onednn_linear

pytestmark = pytest.mark.skipif(not onednn_available(), reason="PyTorch built without oneDNN")


def _values_and_gradients(layer: nn.Module, inputs: torch.Tensor, output_grad: torch.Tensor):
    inputs = inputs.detach().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    output = layer(inputs)
    output.backward(output_grad)
    return output.detach(), inputs.grad, layer.weight.grad, layer.bias.grad if layer.bias is not None else None


@pytest.mark.parametrize("shape", [(37, 50), (2, 9, 50)])
@pytest.mark.parametrize("bias", [True, False])
def test_equals_nn_linear_values_and_gradients(shape, bias):
    generator = torch.Generator().manual_seed(0)
    plain = nn.Linear(50, 23, bias=bias)
    ours = use_onednn_linear(nn.Sequential(plain))[0]
    assert type(ours) is OneDNNLinear and ours.weight is plain.weight
    inputs = torch.randn(shape, generator=generator)
    output_grad = torch.randn((*shape[:-1], 23), generator=generator)
    expected = _values_and_gradients(plain, inputs, output_grad)
    found = _values_and_gradients(ours, inputs, output_grad)
    for value, reference in zip(found, expected):
        if reference is None:
            assert value is None
        else:
            torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-5)


def test_frozen_weights_get_no_gradient_and_inputs_still_do():
    layer = use_onednn_linear(nn.Linear(8, 4))
    layer.weight.requires_grad_(False)
    inputs = torch.randn(3, 8, requires_grad=True)
    layer(inputs).sum().backward()
    assert layer.weight.grad is None and inputs.grad is not None and layer.bias.grad is not None


def test_conversion_keeps_the_state_dict_and_the_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(1), nn.Linear(12, 6), nn.ReLU(), nn.Dropout(), nn.Linear(6, 2)).eval()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    converted = use_onednn_linear(model)
    assert converted is model and [type(m) for m in model if isinstance(m, nn.Linear)] == [OneDNNLinear] * 2
    assert all(not m.training for m in model)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items())


def test_traced_and_autocast_layers_are_plain_linear():
    layer = use_onednn_linear(nn.Linear(8, 4))
    inputs = torch.randn(3, 8)
    traced = torch.jit.trace(layer, inputs)
    assert "mkldnn" not in str(traced.graph) and "linear" in str(traced.graph)
    torch.testing.assert_close(traced(inputs), nn.functional.linear(inputs, layer.weight, layer.bias))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(inputs).dtype == torch.bfloat16
