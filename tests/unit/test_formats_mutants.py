"""Stochastic E2M1 rounding draws its uniforms in fp32 on the tensor's own device (mutation
campaign, issue 21): a seed gives the same rounding whatever torch's default dtype, and the
draw never leaves the device."""

from __future__ import annotations

import torch

from openrecipe.model.precision.formats import stochastic_round_e2m1

X = torch.tensor([0.1, 0.3, 0.7, 1.2, 1.6, 2.2, 2.9, 3.3, 4.5, 5.9, -2.6, 0.26] * 8)


def test_a_seed_rounds_the_same_under_a_float64_default_dtype() -> None:
    """The uniforms are fp32 (as the docstring says), so the default dtype changes nothing; a
    float64 draw would consume the stream differently and round other elements up."""
    expected = stochastic_round_e2m1(X, torch.Generator().manual_seed(11))
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = stochastic_round_e2m1(X, torch.Generator().manual_seed(11))
    finally:
        torch.set_default_dtype(before)
    # (the result itself comes back in the default dtype: _step's constants follow it)
    assert torch.equal(got.float(), expected)


def test_the_draw_is_made_on_the_tensors_device() -> None:
    """torch's "meta" device stands in for a GPU: uniforms drawn on the CPU could not be
    combined with the tensor there."""
    out = stochastic_round_e2m1(torch.ones(5, device="meta"), None)
    assert out.device.type == "meta" and out.shape == (5,)


def test_fp8_casts_saturate_on_the_negative_side_too() -> None:
    """TE's casts saturate at -max as at +max (torch alone would give NaN for e4m3fn, -inf
    for e5m2)."""
    from openrecipe.model.precision.formats import round_e4m3, round_e5m2

    big = torch.tensor([-1e6, -449.0, -float("inf"), 1e6])
    assert round_e4m3(big).tolist() == [-448.0, -448.0, -448.0, 448.0]
    assert round_e5m2(torch.tensor([-1e6, -float("inf"), 1e6])).tolist() == [
        -57344.0,
        -57344.0,
        57344.0,
    ]
