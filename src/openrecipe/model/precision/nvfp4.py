"""Transformer Engine's NVFP4 recipe (``recipe.NVFP4BlockScaling``, TE >= 2.14), emulated on CPU.

Every step follows shared/reference/releases.md "NVFP4 numerics" (from TE's
``common/cast/nvfp4/core_nvfp4.cuh``, ``quantize_transpose_nvfp4.cuh``, ``dequantize_nvfp4.cuh``
and ``pytorch/custom_recipes/reference_nvfp4.py``): all scale arithmetic is fp32 with one rounding
per operation, spelled out below as fp32 tensor operations (torch's CPU fp32 ``*`` and ``/`` are
IEEE correctly rounded).

Dequantisation uses ``q * fl(fl(s * amax) * fl(1/2688))``, as TE's dequantise kernel does, and not
the ``s * S_dec`` that quantisation divided by. The two agree to within 2 fp32 ulps whenever
``2688 / amax`` is a normal fp32 number (checked in tests/unit/test_nvfp4.py); they part ways
only where S_enc is forced: amax = 0 (both give 0), amax = inf (S_enc = 1 but the dequant factor is
inf, so an overflowed tensor stays non-finite, as in TE) and amax < 2688 / FLT_MAX ~ 7.9e-36
(S_enc clamped to FLT_MAX, dequant shrinks by amax * FLT_MAX / 2688 < 1 - a tensor that small is
zero for training purposes). We keep TE's formula so that results match the kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from openrecipe.model.precision.formats import (
    E2M1_MAX,
    E4M3_MAX,
    FLT_MAX,
    round_e2m1,
    round_e4m3,
    stochastic_round_e2m1,
)

BLOCK = 16
# E4M3_MAX * E2M1_MAX: the tensor amax maps to the largest block scale times the largest element.
_FP4_RANGE = E4M3_MAX * E2M1_MAX  # 2688

# TE's fixed RHT sign vector (``get_wgrad_sign_vector``), shared by every layer.
RHT_SIGNS = (1, 1, 1, -1, 1, -1, -1, -1, -1, -1, -1, 1, -1, 1, -1, -1)


@dataclass(frozen=True)
class NVFP4Config:
    """The switches of TE's ``NVFP4BlockScaling`` recipe (all default off, as in TE).

    Assumed from TE's recipe module (not fetchable here): ``disable_rht`` drops the RHT on the
    wgrad copies of inputs and gradients; ``disable_stochastic_rounding`` makes output-gradient
    casts round to nearest; ``disable_2d_quantization`` quantises weights in 1x16 blocks (along K
    for fprop, along the output dim for dgrad) instead of 16x16 tiles. The FP4 format is E2M1.
    """

    disable_rht: bool = False
    disable_stochastic_rounding: bool = False
    disable_2d_quantization: bool = False


@dataclass(frozen=True)
class NVFP4Quantized:
    """An NVFP4 tensor: signed E2M1 values (fp32) on a zero-padded grid, E4M3 scales, fp32 amax.

    ``block`` is (1, 16) or (16, 16); ``scales`` holds one E4M3 value per block; ``shape`` is the
    unpadded shape, restored by ``dequantize``.
    """

    values: torch.Tensor
    scales: torch.Tensor
    amax: torch.Tensor
    block: tuple[int, int]
    shape: torch.Size


def _f32(value: float, device: torch.device) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float32, device=device)


def _pad_to_block(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad the given trailing dims to multiples of 16 (zeros change no amax or scale)."""
    pad: list[int] = []
    for d in range(x.dim() - 1, -1, -1):
        extra = (-x.shape[d]) % BLOCK if d in dims else 0
        pad += [0, extra]
    return F.pad(x, pad) if any(pad) else x


def _abs_nan_as_zero(x: torch.Tensor) -> torch.Tensor:
    """|x| with NaN replaced by 0: TE's amax reductions skip NaN (fmaxf ignores a NaN operand)."""
    a = x.abs()
    return torch.where(a.isnan(), torch.zeros_like(a), a)


def encode_scale(amax: torch.Tensor) -> torch.Tensor:
    """S_enc = min(fl(2688 / amax), FLT_MAX), and 1 when amax is 0 or inf."""
    one = _f32(1.0, amax.device)
    s_enc = torch.clamp(_f32(_FP4_RANGE, amax.device) / amax, max=FLT_MAX)
    return torch.where((amax == 0) | amax.isinf(), one, s_enc)


def _scales_and_values(
    x: torch.Tensor,
    block_amax: torch.Tensor,
    amax: torch.Tensor,
    expand,
    stochastic: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block scales s and E2M1 values for fp32 ``x``; ``expand`` broadcasts per-block to x."""
    dev = x.device
    s_enc = encode_scale(amax)
    s_dec = _f32(1.0, dev) / s_enc
    sixth = _f32(1.0, dev) / _f32(E2M1_MAX, dev)
    # s = E4M3_RNE_sat(amax_block * fl(S_enc * fl(1/6))); no lower clamp, so s may be subnormal/0.
    scales = round_e4m3(block_amax * (s_enc * sixth))
    # r = min(fl(1 / fl(s * S_dec)), FLT_MAX); s = 0 gives r = FLT_MAX (block dequantises to 0).
    recip = torch.clamp(_f32(1.0, dev) / (scales * s_dec), max=FLT_MAX)
    scaled = x * expand(recip)
    values = stochastic_round_e2m1(scaled, generator) if stochastic else round_e2m1(scaled)
    return scales, values


def quantize_nvfp4_1d(
    x: torch.Tensor, *, stochastic: bool = False, generator: torch.Generator | None = None
) -> NVFP4Quantized:
    """1x16 blocks along the last dim, one fp32 amax for the whole tensor."""
    xf = _pad_to_block(x.float(), (x.dim() - 1,))
    blocks = xf.reshape(*xf.shape[:-1], -1, BLOCK)
    mag = _abs_nan_as_zero(blocks)
    amax = mag.max() if mag.numel() else _f32(0.0, x.device)
    block_amax = mag.amax(dim=-1)
    scales, values = _scales_and_values(
        blocks, block_amax, amax, lambda t: t.unsqueeze(-1), stochastic, generator
    )
    return NVFP4Quantized(values.reshape(xf.shape), scales, amax, (1, BLOCK), x.shape)


def quantize_nvfp4_2d_weight(w: torch.Tensor) -> NVFP4Quantized:
    """16x16 tiles of a 2D weight: one scale per tile, so W and W^T quantise identically."""
    if w.dim() != 2:
        raise ValueError(f"2D NVFP4 quantisation needs a matrix, got shape {tuple(w.shape)}")
    wf = _pad_to_block(w.float(), (0, 1))
    rows, cols = wf.shape
    tiles = wf.reshape(rows // BLOCK, BLOCK, cols // BLOCK, BLOCK)
    mag = _abs_nan_as_zero(tiles)
    amax = mag.max() if mag.numel() else _f32(0.0, w.device)
    tile_amax = mag.amax(dim=(1, 3))
    scales, values = _scales_and_values(
        tiles, tile_amax, amax, lambda t: t[:, None, :, None], False, None
    )
    return NVFP4Quantized(values.reshape(rows, cols), scales, amax, (BLOCK, BLOCK), w.shape)


def dequant_scale(q: NVFP4Quantized) -> torch.Tensor:
    """Per-block decode factor fl(fl(s * amax) * fl(1/2688)) (TE's dequantise kernel)."""
    inv_range = _f32(1.0, q.amax.device) / _f32(_FP4_RANGE, q.amax.device)
    return (q.scales * q.amax) * inv_range


def dequantize(q: NVFP4Quantized) -> torch.Tensor:
    """fp32 tensor of ``q``'s shape: each E2M1 value times its block's decode factor."""
    factor = dequant_scale(q)
    if q.block == (1, BLOCK):
        blocks = q.values.reshape(*q.values.shape[:-1], -1, BLOCK)
        out = (blocks * factor.unsqueeze(-1)).reshape(q.values.shape)
    else:
        rows, cols = q.values.shape
        tiles = q.values.reshape(rows // BLOCK, BLOCK, cols // BLOCK, BLOCK)
        out = (tiles * factor[:, None, :, None]).reshape(rows, cols)
    return out[tuple(slice(0, n) for n in q.shape)]


def hadamard_matrix(device: torch.device | None = None) -> torch.Tensor:
    """TE's RHT matrix diag(signs) @ H16 / 4 in bf16 (entries +-1/4, exact); orthogonal."""
    idx = torch.arange(BLOCK)
    parity = torch.bitwise_and(idx[:, None], idx[None, :])
    bits = sum(((parity >> b) & 1) for b in range(4))
    h = 1.0 - 2.0 * (bits % 2).float()  # Sylvester: H[i, j] = (-1)^popcount(i & j)
    signs = torch.tensor(RHT_SIGNS, dtype=torch.float32)
    return (signs[:, None] * h * 0.25).to(device=device, dtype=torch.bfloat16)


def random_hadamard_transform(x: torch.Tensor) -> torch.Tensor:
    """RHT of each 16-element chunk of the last dim (zero-padded to a multiple of 16), in bf16.

    The chunk (a row vector) is multiplied by the RHT matrix with fp32 accumulation and the
    result rounded to bf16, as TE's bf16 tensor-core kernel does. Applied identically to both
    wgrad operands along the token dim, the orthogonal matrix cancels in the GEMM.
    """
    xb = _pad_to_block(x, (x.dim() - 1,)).to(torch.bfloat16).float()
    chunks = xb.reshape(*xb.shape[:-1], -1, BLOCK)
    out = chunks @ hadamard_matrix(x.device).float()
    return out.to(torch.bfloat16).float().reshape(xb.shape)


def fake_quant_nvfp4(
    x: torch.Tensor, *, stochastic: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Quantise (1x16 along the last dim) and dequantise: what the emulated GEMM consumes."""
    return dequantize(quantize_nvfp4_1d(x, stochastic=stochastic, generator=generator))


def fake_quant_nvfp4_2d(w: torch.Tensor) -> torch.Tensor:
    """Quantise a weight in 16x16 tiles and dequantise."""
    return dequantize(quantize_nvfp4_2d_weight(w))
