"""Exact rounding of fp32 values to the narrow formats of Transformer Engine's recipes.

E4M3 (``fn``: no infinities, max 448, subnormals down to 2^-9) and E5M2 (max 57344) use torch's
float8 dtypes, whose fp32 -> fp8 casts round to nearest, ties to even (checked against an
enumeration of every code in tests/unit/test_nvfp4.py). Torch turns out-of-range values into NaN
(e4m3fn) or inf (e5m2), whereas TE's casts saturate (CUDA's ``__NV_SATFINITE``), so values are
clamped to +-max first. E2M1 (0, 0.5, 1, 1.5, 2, 3, 4, 6) has no torch cast on CPU, so it is rounded here.
"""

from __future__ import annotations

import torch

E4M3_MAX = 448.0
E5M2_MAX = 57344.0
E2M1_MAX = 6.0
FLT_MAX = torch.finfo(torch.float32).max


def _saturating_cast(x: torch.Tensor, dtype: torch.dtype, limit: float) -> torch.Tensor:
    """fp32 -> fp8 -> fp32, RNE, saturating at +-limit; NaN stays NaN."""
    x = x.float()
    return x.clamp(-limit, limit).to(dtype).float()


def round_e4m3(x: torch.Tensor) -> torch.Tensor:
    """Nearest E4M3 (fn) value of each element, as fp32, saturating at +-448."""
    return _saturating_cast(x, torch.float8_e4m3fn, E4M3_MAX)


def round_e5m2(x: torch.Tensor) -> torch.Tensor:
    """Nearest E5M2 value of each element, as fp32, saturating at +-57344 (inf too)."""
    return _saturating_cast(x, torch.float8_e5m2, E5M2_MAX)


def _step(mag: torch.Tensor) -> torch.Tensor:
    """E2M1 spacing at a magnitude in [0, 6]: 0.5 below 2, 1 in [2, 4), 2 in [4, 6]."""
    return torch.where(mag < 2, 0.5, torch.where(mag < 4, 1.0, 2.0))


def _clamped_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|x| saturated at 6 (inf included), NaN read as 0 (the caller puts NaN back)."""
    mag = x.abs().clamp(max=E2M1_MAX)
    return torch.where(mag.isnan(), torch.zeros_like(mag), mag)


def round_e2m1(x: torch.Tensor) -> torch.Tensor:
    """Nearest E2M1 value (fp32), ties to the even code, |x| > 6 saturating to 6, NaN kept.

    Matches ``cvt.rn.satfinite.e2m1x2.f32``. Within each binade the grid is evenly spaced and its
    codes run in step with the multiples of the spacing h, so the code is even exactly when
    mag / h is an even integer: torch.round (half to even) of mag / h (exact in fp32: h is a power
    of 2) gives ties to the even code: 0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4.
    A value just below a binade edge that rounds up lands on the edge, the next binade's first point.
    """
    x = x.float()
    mag = _clamped_magnitude(x)
    h = _step(mag)
    q = torch.round(mag / h) * h
    return torch.where(x.isnan(), x, torch.copysign(q, x))


def stochastic_round_e2m1(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Unbiased stochastic rounding to E2M1: E[q] = x for |x| <= 6; |x| > 6 saturates to 6.

    Rounds up to the next grid point with probability (|x| - low) / h. TE's kernels draw 8
    Philox bits per element for ``cvt.rs``; that stream cannot be reproduced off-GPU, so a seeded
    torch generator supplies fp32 uniforms instead (same distribution up to the hardware's 1/256
    probability granularity).
    """
    x = x.float()
    mag = _clamped_magnitude(x)
    h = _step(mag)
    low = torch.floor(mag / h) * h
    u = torch.rand(x.shape, generator=generator, dtype=torch.float32, device=x.device)
    q = torch.where(u * h < mag - low, low + h, low)
    return torch.where(x.isnan(), x, torch.copysign(q, x))
