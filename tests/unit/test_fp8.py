"""FP8 current scaling (TE ``Float8CurrentScaling``, HYBRID format) emulation."""

from __future__ import annotations

import numpy as np
import torch

from openrecipe.model.precision.fp8 import current_scale, fake_quant_fp8, quantize_fp8

F32 = np.float32


def test_scale_is_fp8_max_over_current_amax():
    assert current_scale(torch.tensor(448.0), 448.0).item() == 1.0
    assert current_scale(torch.tensor(3.0), 448.0).item() == float(F32(448.0) / F32(3.0))
    assert current_scale(torch.tensor(3.0), 57344.0).item() == float(F32(57344.0) / F32(3.0))


def test_scale_special_cases():
    assert current_scale(torch.tensor(0.0), 448.0).item() == 1.0
    assert current_scale(torch.tensor(float("inf")), 448.0).item() == 1.0
    assert current_scale(torch.tensor(1e-44), 448.0).item() == torch.finfo(torch.float32).max
    assert current_scale(torch.tensor(0.0), 448.0, amax_epsilon=1.0).item() == 448.0


def test_e4m3_ties_and_saturation_with_unit_scale():
    """amax 448 gives scale 1, so values are cast as they are (E4M3 step 1/8 in [1, 2))."""
    x = torch.tensor([448.0, 1.0625, 1.1875, -1.0625, 0.0])
    values, scale_inv = quantize_fp8(x, "e4m3")
    assert scale_inv.item() == 1.0
    assert values.tolist() == [448.0, 1.0, 1.25, -1.0, 0.0]


def test_e5m2_for_gradients():
    """amax 57344 gives scale 1; E5M2 step in [1, 2) is 1/4: 1.125 -> 1, 1.375 -> 1.5."""
    x = torch.tensor([57344.0, 1.125, 1.375, 2.0**-16])
    values, _ = quantize_fp8(x, "e5m2")
    assert values.tolist() == [57344.0, 1.0, 1.5, 2.0**-16]


def test_fake_quant_relative_error_and_zero():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 64, generator=g)
    for fmt, mant in (("e4m3", 3), ("e5m2", 2)):
        out = fake_quant_fp8(x, fmt)
        normal = x.abs() > x.abs().max() * 2.0**-6
        rel = ((out - x).abs() / x.abs())[normal]
        assert rel.max().item() <= 2.0 ** -(mant + 1) * 1.0001
    assert not fake_quant_fp8(torch.zeros(3, 4), "e4m3").any()


def test_dequant_uses_fp32_reciprocal_of_scale():
    x = torch.tensor([3.0, 1.0, -0.3])
    values, scale_inv = quantize_fp8(x, "e4m3")
    scale = F32(448.0) / F32(3.0)
    assert scale_inv.item() == float(F32(1.0) / scale)
    assert torch.equal(fake_quant_fp8(x, "e4m3"), values * scale_inv)
