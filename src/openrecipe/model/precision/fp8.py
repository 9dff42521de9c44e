"""Transformer Engine's FP8 current-scaling recipe (``recipe.Float8CurrentScaling``), emulated.

Each tensor gets one fp32 scale from its own amax at the moment it is cast (no amax history):
scale = fl(fp8_max / amax), with TE's special cases from ``compute_scale_from_amax``
(``common/recipe/recipe_common.cuh``): amax below ``amax_epsilon`` is raised to it, amax = 0 or
inf gives scale 1, and an fp32-overflowing scale becomes FLT_MAX. Values are cast as
fl(x * scale) -> fp8 with saturation and decoded as q * fl(1 / scale). The format is TE's default
HYBRID: E4M3 for forward tensors (inputs, weights), E5M2 for gradients. Power-of-2 scales
(``power_2_scale``, off by default) are not emulated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from openrecipe.model.precision.formats import E4M3_MAX, E5M2_MAX, FLT_MAX, round_e4m3, round_e5m2

_FORMATS = {"e4m3": (E4M3_MAX, round_e4m3), "e5m2": (E5M2_MAX, round_e5m2)}


@dataclass(frozen=True)
class FP8Config:
    """The emulated fields of ``Float8CurrentScaling`` (format fixed to HYBRID)."""

    amax_epsilon: float = 0.0


def current_scale(amax: torch.Tensor, fp8_max: float, amax_epsilon: float = 0.0) -> torch.Tensor:
    """fp32 scale = fl(fp8_max / max(amax, eps)); 1 for amax 0 or inf; FLT_MAX on overflow."""
    amax = torch.clamp(amax.float(), min=amax_epsilon)
    one = torch.ones((), dtype=torch.float32, device=amax.device)
    scale = torch.tensor(fp8_max, dtype=torch.float32, device=amax.device) / amax
    scale = torch.where(scale.isinf(), torch.full_like(scale, FLT_MAX), scale)
    return torch.where((amax == 0) | amax.isinf(), one, scale)


def quantize_fp8(
    x: torch.Tensor, fmt: str, amax_epsilon: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp8 values as fp32, scale_inv) of ``x`` in format ``fmt`` ("e4m3" or "e5m2")."""
    fp8_max, cast = _FORMATS[fmt]
    xf = x.float()
    mag = xf.abs()
    mag = torch.where(mag.isnan(), torch.zeros_like(mag), mag)  # NaN does not count in amax
    amax = mag.max() if mag.numel() else torch.zeros((), dtype=torch.float32, device=x.device)
    scale = current_scale(amax, fp8_max, amax_epsilon)
    scale_inv = torch.ones_like(scale) / scale
    return cast(xf * scale), scale_inv


def fake_quant_fp8(x: torch.Tensor, fmt: str, amax_epsilon: float = 0.0) -> torch.Tensor:
    """Quantise with a per-tensor current scale and dequantise (fp32)."""
    values, scale_inv = quantize_fp8(x, fmt, amax_epsilon)
    return values * scale_inv
