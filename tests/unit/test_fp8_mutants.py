"""FP8 current scaling: what the recipe promises beyond tests/unit/test_fp8.py (mutation
campaign, issue 21): the scale is fp32 whatever torch's default dtype, ``amax_epsilon`` reaches
the scale through every entry point (and is 0 unless asked), and an empty tensor quantises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openrecipe.model.precision.fp8 import current_scale, fake_quant_fp8, quantize_fp8

F32 = np.float32


@pytest.fixture
def float64_default():
    """torch's default dtype set to float64, as a caller doing numerics in double might."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def test_scale_is_fp32_under_a_float64_default_dtype(float64_default) -> None:
    """TE computes fl32(fp8_max / amax): the division is rounded to fp32, never done in double."""
    scale = current_scale(torch.tensor(3.0, dtype=torch.float32), 448.0)
    assert scale.dtype == torch.float32
    assert scale.item() == float(F32(448.0) / F32(3.0))
    for special in (0.0, float("inf")):
        one = current_scale(torch.tensor(special, dtype=torch.float32), 448.0)
        assert one.dtype == torch.float32 and one.item() == 1.0


def test_empty_tensor_quantises_to_empty_with_unit_scale(float64_default) -> None:
    for fmt in ("e4m3", "e5m2"):
        values, scale_inv = quantize_fp8(torch.zeros(0, 4, dtype=torch.float32), fmt)
        assert values.shape == (0, 4)
        assert scale_inv.dtype == torch.float32 and scale_inv.shape == ()
        assert scale_inv.item() == 1.0
        assert fake_quant_fp8(torch.zeros(0, dtype=torch.float32), fmt).shape == (0,)


def test_small_tensors_get_their_own_scale_by_default() -> None:
    """amax_epsilon defaults to 0 (TE's default): a tensor of amax 0.01 is scaled up to fill the
    format, so its relative error stays at the format's half-ulp."""
    x = torch.tensor([0.01, -0.0037, 0.0051, 0.0003])
    values, scale_inv = quantize_fp8(x, "e4m3")
    assert scale_inv.item() == float(F32(1.0) / (F32(448.0) / F32(0.01)))
    assert values.abs().max().item() == 448.0
    out = fake_quant_fp8(x, "e4m3")
    assert ((out - x).abs() / x.abs()).max().item() <= 2.0**-4 * 1.0001


def test_amax_epsilon_reaches_the_scale_through_every_entry_point() -> None:
    """With amax_epsilon 1 a tensor of amax 0.01 is scaled as if its amax were 1: scale 448."""
    x = torch.tensor([0.01, -0.0037, 0.0051])
    values, scale_inv = quantize_fp8(x, "e4m3", amax_epsilon=1.0)
    assert scale_inv.item() == float(F32(1.0) / F32(448.0))
    assert torch.equal(values, torch.tensor([4.5, -1.625, 2.25]))
    assert torch.equal(fake_quant_fp8(x, "e4m3", amax_epsilon=1.0), values * scale_inv)
    assert not torch.equal(fake_quant_fp8(x, "e4m3", amax_epsilon=1.0), fake_quant_fp8(x, "e4m3"))


def test_scale_stays_on_the_tensors_device_even_when_empty() -> None:
    """The scale lives where the tensor lives (a GPU tensor's scale on the GPU, with no host
    round trip); torch's "meta" device stands in for a second device on a CPU-only machine."""
    for shape in ((0, 4), (3,)):
        values, scale_inv = quantize_fp8(torch.zeros(shape, device="meta"), "e4m3")
        assert values.device.type == "meta" and scale_inv.device.type == "meta"
