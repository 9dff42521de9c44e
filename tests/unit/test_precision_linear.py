"""PrecisionLinear's three GEMMs, apply_precision on NemotronH, and short training runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from openrecipe.hashing import derive_seed
from openrecipe.model.build import build_model, nemotronh_config
from openrecipe.model.precision import (
    FP8Config,
    NVFP4Config,
    PrecisionLinear,
    apply_precision,
    fake_quant_fp8,
    fake_quant_nvfp4,
    fake_quant_nvfp4_2d,
    load_precision_rng_states,
    precision_rng_states,
    random_hadamard_transform,
)


def _layer(precision, config=None, seed=11, bias=True):
    torch.manual_seed(0)
    lin = nn.Linear(40, 24, bias=bias)
    return lin, PrecisionLinear.from_linear(lin, precision=precision, config=config, seed=seed)


def test_nvfp4_gemms_match_manual_recipe():
    lin, layer = _layer("nvfp4")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 10, 40, generator=g, requires_grad=True)
    dy = torch.randn(3, 10, 24, generator=g)
    y = layer(x)
    x2 = x.detach().reshape(30, 40)
    w = lin.weight.detach()
    ref = fake_quant_nvfp4(x2) @ fake_quant_nvfp4_2d(w).t() + lin.bias.detach()
    assert torch.equal(y.detach().reshape(30, 24), ref)
    y.backward(dy)
    gen = torch.Generator().manual_seed(11)
    dy2 = dy.reshape(30, 24)
    dx = fake_quant_nvfp4(dy2, stochastic=True, generator=gen) @ fake_quant_nvfp4_2d(w)
    dyt = fake_quant_nvfp4(random_hadamard_transform(dy2.t()), stochastic=True, generator=gen)
    xt = fake_quant_nvfp4(random_hadamard_transform(x2.t()))
    assert dyt.shape == (24, 32)  # 30 tokens padded to 32
    assert torch.equal(x.grad.reshape(30, 40), dx)
    assert torch.equal(lin.weight.grad, dyt @ xt.t())
    assert torch.equal(lin.bias.grad, dy2.sum(0))
    assert layer.weight is lin.weight  # shared parameter


def test_nvfp4_gradients_close_to_exact():
    lin, layer = _layer("nvfp4")
    x = torch.randn(64, 40, generator=torch.Generator().manual_seed(2), requires_grad=True)
    layer(x).square().sum().backward()
    dw_q, dx_q = lin.weight.grad.clone(), x.grad.clone()
    lin.weight.grad, x.grad = None, None
    torch.nn.functional.linear(x, lin.weight, lin.bias).square().sum().backward()
    for got, exact in ((dw_q, lin.weight.grad), (dx_q, x.grad)):
        assert (got - exact).norm() / exact.norm() < 0.25


def test_switches_remove_rht_sr_and_2d():
    cfg = NVFP4Config(
        disable_rht=True, disable_stochastic_rounding=True, disable_2d_quantization=True
    )
    lin, layer = _layer("nvfp4", cfg)
    x = torch.randn(32, 40, generator=torch.Generator().manual_seed(3), requires_grad=True)
    dy = torch.randn(32, 24, generator=torch.Generator().manual_seed(4))
    y = layer(x)
    w = lin.weight.detach()
    assert torch.equal(
        y.detach(), fake_quant_nvfp4(x.detach()) @ fake_quant_nvfp4(w).t() + lin.bias
    )
    y.backward(dy)
    assert torch.equal(x.grad, fake_quant_nvfp4(dy) @ fake_quant_nvfp4(w.t()).t())
    assert torch.equal(
        lin.weight.grad, fake_quant_nvfp4(dy.t()) @ fake_quant_nvfp4(x.detach().t()).t()
    )


def test_fp8_gemms_match_manual_recipe():
    lin, layer = _layer("fp8", FP8Config(), bias=False)
    x = torch.randn(16, 40, generator=torch.Generator().manual_seed(5), requires_grad=True)
    dy = torch.randn(16, 24, generator=torch.Generator().manual_seed(6))
    y = layer(x)
    w, xd = lin.weight.detach(), x.detach()
    assert torch.equal(y.detach(), fake_quant_fp8(xd, "e4m3") @ fake_quant_fp8(w, "e4m3").t())
    y.backward(dy)
    assert torch.equal(x.grad, fake_quant_fp8(dy, "e5m2") @ fake_quant_fp8(w, "e4m3"))
    assert torch.equal(lin.weight.grad, fake_quant_fp8(dy, "e5m2").t() @ fake_quant_fp8(xd, "e4m3"))


def test_autocast_output_dtype():
    _, layer = _layer("nvfp4")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(torch.randn(4, 40))
    assert y.dtype == torch.bfloat16


def _tiny_nemotronh():
    model = {
        "hybrid_override_pattern": "M-M*M-",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 128,
        "mamba_num_heads": 4,
        "mamba_head_dim": 16,
        "ssm_state_size": 16,
        "n_groups": 1,
        "chunk_size": 32,
    }
    return build_model(nemotronh_config(model, vocab_size=96), seed=0)


def test_apply_precision_on_nemotronh():
    model = _tiny_nemotronh()
    keys = list(model.state_dict())
    names = apply_precision(model, "nvfp4", bf16_first_layers=1, bf16_last_layers=1, seed=5)
    assert names == sorted(names)
    layers = {int(n.split(".")[2]) for n in names}
    assert layers == {1, 2, 3, 4}
    assert "model.layers.1.mixer.up_proj" in names and "model.layers.2.mixer.in_proj" in names
    assert "model.layers.3.mixer.q_proj" in names
    assert type(model.lm_head) is nn.Linear
    assert type(model.model.layers[0].mixer.in_proj) is nn.Linear
    mod = model.get_submodule("model.layers.2.mixer.in_proj")
    assert isinstance(mod, PrecisionLinear) and mod.seed == derive_seed(
        5, "precision", "model.layers.2.mixer.in_proj"
    )
    assert list(model.state_dict()) == keys
    ids = torch.randint(0, 96, (2, 32), generator=torch.Generator().manual_seed(0))
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    assert out.loss.isfinite()
    assert mod.weight.grad is not None and mod.weight.grad.isfinite().all()
    assert apply_precision(_tiny_nemotronh(), "bf16", 1, 1) == []
    assert apply_precision(_tiny_nemotronh(), "fp8", 3, 3) == []
    with pytest.raises(ValueError, match="precision must be one of"):
        apply_precision(model, "fp4", 0, 0)


class _Blocks(nn.Module):
    """An MLP laid out like NemotronH (``model.layers``) so apply_precision can swap it."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32)) for _ in range(2)
        )
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        for layer in self.model.layers:
            x = x + layer(x)
        return self.head(x)


def _train(precision, steps=20, seed=0):
    torch.manual_seed(0)
    net = _Blocks()
    apply_precision(net, precision, 0, 0, seed=seed)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 32, generator=g)
    target = torch.sin(x[:, :4].sum(1, keepdim=True))
    losses = []
    for _ in range(steps):
        loss = (net(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return net, losses


def test_training_close_to_bf16_and_reproducible():
    """20 AdamW steps of a residual MLP: nvfp4/fp8 track the unquantised run; same seed, same bits."""
    _, ref = _train("bf16")
    net_a, fp4 = _train("nvfp4")
    net_b, _ = _train("nvfp4")
    _, fp8 = _train("fp8")
    # Mean loss over the run: the final losses are small enough that their ratio is mostly noise.
    mean = lambda losses: sum(losses) / len(losses)  # noqa: E731
    assert fp4[-1] < 0.2 * fp4[0]
    assert abs(mean(fp4) - mean(ref)) / mean(ref) < 0.05  # measured 2.9%
    assert abs(mean(fp8) - mean(ref)) / mean(ref) < 0.02  # measured 0.8%
    for pa, pb in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    net_c, _ = _train("nvfp4", steps=2, seed=1)
    net_d, _ = _train("nvfp4", steps=2, seed=0)
    assert not torch.equal(net_c.head.weight, net_d.head.weight)  # SR noise follows the seed


def test_rng_state_roundtrip_resumes_identically():
    net, _ = _train("nvfp4", steps=2)
    states = precision_rng_states(net)
    assert sorted(states) == [f"model.layers.{i}.{j}" for i in range(2) for j in (0, 2)]
    x = torch.randn(32, 32)
    net.zero_grad()
    net(x).sum().backward()
    first = [p.grad.clone() for p in net.parameters()]
    load_precision_rng_states(net, states)
    net.zero_grad()
    net(x).sum().backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(first, net.parameters(), strict=True))
    with pytest.raises(ValueError, match="precision RNG states"):
        load_precision_rng_states(net, {})
