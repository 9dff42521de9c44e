"""Behaviour of the emulated-precision linear that ``test_precision_linear.py`` left unpinned
(found by ``bench/mutation.py --only model/precision/linear.py``): the FP8 config reaching every
quantised operand, the layer's defaults, gradient dtypes, a frozen weight, fresh stochastic
rounding noise each step and a restored generator state, and exact refusals."""

from __future__ import annotations

import pytest
import torch
from test_precision_linear import _tiny_nemotronh
from torch import nn

from openrecipe.hashing import derive_seed
from openrecipe.model.precision import (
    FP8Config,
    NVFP4Config,
    PrecisionLinear,
    apply_precision,
    fake_quant_fp8,
)


def _pair(precision: str, config=None, dtype=torch.float32):  # noqa: ANN001, ANN202
    torch.manual_seed(0)
    lin = nn.Linear(32, 16, dtype=dtype)
    return lin, PrecisionLinear.from_linear(lin, precision=precision, config=config, seed=3)


def test_fp8_amax_epsilon_reaches_all_five_operands() -> None:
    """Small activations and gradients (amax far below the epsilon): every operand is scaled by
    the epsilon, as TE's Float8CurrentScaling(amax_epsilon=...) does."""
    eps = 4.0
    lin, layer = _pair("fp8", FP8Config(amax_epsilon=eps))
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(8, 32, generator=g) * 1e-3).requires_grad_()
    dy = torch.randn(8, 16, generator=g) * 1e-3
    y = layer(x)
    w = lin.weight.detach()
    q = {"x": fake_quant_fp8(x.detach(), "e4m3", eps), "w": fake_quant_fp8(w, "e4m3", eps)}
    assert torch.equal(y.detach(), q["x"] @ q["w"].t() + lin.bias.detach())
    y.backward(dy)
    grad = fake_quant_fp8(dy, "e5m2", eps)
    assert torch.equal(x.grad, grad @ q["w"])
    assert torch.equal(lin.weight.grad, grad.t() @ q["x"])
    default = _pair("fp8")[1](x.detach())
    assert not torch.equal(default, y.detach())  # the epsilon changed the numbers


def test_defaults_of_a_new_layer() -> None:
    layer = PrecisionLinear(8, 4)
    assert layer.bias is not None and layer.seed == 0 and layer.precision == "nvfp4"
    assert "precision=nvfp4" in repr(layer)
    assert PrecisionLinear(8, 4, bias=False).bias is None
    meta = PrecisionLinear(8, 4, device="meta", dtype=torch.float64)
    assert meta.weight.device.type == "meta" and meta.weight.dtype == torch.float64


def test_gradients_come_back_in_the_parameters_and_inputs_dtypes() -> None:
    lin, layer = _pair("fp8", dtype=torch.bfloat16)
    x = torch.randn(4, 32, dtype=torch.bfloat16, requires_grad=True)
    layer(x).float().sum().backward()
    assert x.grad.dtype == torch.bfloat16
    assert lin.weight.grad.dtype == torch.bfloat16 and lin.bias.grad.dtype == torch.bfloat16


def test_a_frozen_weight_still_passes_the_gradient_to_the_input() -> None:
    lin, layer = _pair("nvfp4")
    lin.weight.requires_grad_(False)
    lin.bias.requires_grad_(False)
    x = torch.randn(4, 32, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def _step(layer: PrecisionLinear, x: torch.Tensor) -> torch.Tensor:
    layer.weight.grad = None
    layer(x).square().sum().backward()
    return layer.weight.grad.clone()


def test_each_step_draws_fresh_rounding_noise_and_a_restored_state_replays_it() -> None:
    """NVFP4 gradients round stochastically: the generator advances across steps (one layer, one
    generator), and restoring a saved state replays the next step exactly."""
    _, layer = _pair("nvfp4")
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(9))
    cpu = torch.device("cpu")
    assert layer.generator(cpu) is layer.generator(cpu)
    fresh = layer.rng_state().clone()
    first = _step(layer, x)
    saved = layer.rng_state().clone()
    assert not torch.equal(saved, fresh)
    second = _step(layer, x)
    assert not torch.equal(first, second)
    _, other = _pair("nvfp4")
    other.set_rng_state(saved)
    assert torch.equal(_step(other, x), second)


def test_apply_precision_passes_its_config_and_default_seed() -> None:
    config = NVFP4Config(disable_2d_quantization=True, disable_rht=True)
    model = _tiny_nemotronh()
    names = apply_precision(model, "nvfp4", 0, 0, config=config)
    layer = model.get_submodule(names[0])
    twin = PrecisionLinear.from_linear(
        nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None),
        precision="nvfp4",
        config=config,
        seed=derive_seed(0, "precision", names[0]),
    )
    twin.weight, twin.bias = layer.weight, layer.bias
    assert layer.seed == twin.seed
    x = torch.randn(3, layer.in_features)
    assert torch.equal(layer(x), twin(x))
    plain = PrecisionLinear.from_linear(twin, precision="nvfp4", config=None, seed=twin.seed)
    assert not torch.equal(plain(x), twin(x))  # the config changed the numbers


@pytest.mark.parametrize(("first", "last"), [(-1, 0), (0, -1)])
def test_negative_bf16_layer_counts_are_refused(first: int, last: int) -> None:
    with pytest.raises(ValueError) as raised:
        apply_precision(_tiny_nemotronh(), "fp8", first, last)
    assert str(raised.value) == "bf16_first_layers and bf16_last_layers must be >= 0"


def test_an_unknown_emulated_precision_is_refused_by_name() -> None:
    with pytest.raises(ValueError) as raised:
        PrecisionLinear(8, 4, precision="bf16")
    assert str(raised.value) == (
        "precision must be one of 'fp8', 'nvfp4' for an emulated linear, got 'bf16'"
    )
