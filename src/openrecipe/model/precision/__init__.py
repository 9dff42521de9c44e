"""Emulated low-precision training recipes of Transformer Engine (FP8 current scaling, NVFP4).

``apply_precision`` swaps a NemotronH model's decoder-layer linears for ``PrecisionLinear``,
whose GEMMs consume operands quantised and dequantised with TE's exact numerics.
"""

from openrecipe.model.precision.fp8 import FP8Config, fake_quant_fp8, quantize_fp8
from openrecipe.model.precision.linear import (
    PRECISIONS,
    PrecisionLinear,
    apply_precision,
    load_precision_rng_states,
    precision_rng_states,
)
from openrecipe.model.precision.nvfp4 import (
    NVFP4Config,
    NVFP4Quantized,
    dequantize,
    fake_quant_nvfp4,
    fake_quant_nvfp4_2d,
    quantize_nvfp4_1d,
    quantize_nvfp4_2d_weight,
    random_hadamard_transform,
)

__all__ = [
    "FP8Config",
    "NVFP4Config",
    "NVFP4Quantized",
    "PRECISIONS",
    "PrecisionLinear",
    "apply_precision",
    "dequantize",
    "fake_quant_fp8",
    "fake_quant_nvfp4",
    "fake_quant_nvfp4_2d",
    "load_precision_rng_states",
    "precision_rng_states",
    "quantize_fp8",
    "quantize_nvfp4_1d",
    "quantize_nvfp4_2d_weight",
    "random_hadamard_transform",
]
