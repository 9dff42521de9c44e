"""Linear layers that run their three GEMMs on TE-quantised operands (emulated, CPU or GPU).

y = x W^T + b with, as Transformer Engine's ``Linear`` does under a recipe:
- fprop: Q_fwd(x) @ Q_w(W)^T
- dgrad: dx = Q_grad(dy) @ Q_w^T(W)          (the weight's column-wise copy)
- wgrad: dW = Q_grad^T(dy)^T @ Q_fwd^T(x)    (column-wise copies: quantised along the tokens)
- bias and its gradient in high precision.
For NVFP4, Q_fwd is 1x16 round-to-nearest, Q_w 16x16 tiles, Q_grad 1x16 with stochastic rounding;
the column-wise copies of x and dy get the RHT along the token dim before amax. For FP8 current
scaling, one per-tensor scale each, E4M3 forward and E5M2 for gradients. The GEMMs themselves
run in fp32 on the dequantised operands (tensor cores accumulate in fp32). Quantised operands are
recomputed in backward from the saved x and W: a deterministic function of them, so identical to
what TE caches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from openrecipe.hashing import derive_seed
from openrecipe.model.precision.fp8 import FP8Config, fake_quant_fp8
from openrecipe.model.precision.nvfp4 import (
    NVFP4Config,
    fake_quant_nvfp4,
    fake_quant_nvfp4_2d,
    random_hadamard_transform,
)

PRECISIONS = ("bf16", "fp8", "nvfp4")


class _NVFP4Operands:
    """The five quantised operands of the three GEMMs under ``NVFP4BlockScaling``."""

    def __init__(self, config: NVFP4Config) -> None:
        self.cfg = config

    def fprop_input(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quant_nvfp4(x)

    def fprop_weight(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quant_nvfp4(w) if self.cfg.disable_2d_quantization else fake_quant_nvfp4_2d(w)

    def dgrad_weight(self, w: torch.Tensor) -> torch.Tensor:
        """W as the dgrad GEMM reads it, (out, in): 1x16 blocks run along ``out`` here."""
        if self.cfg.disable_2d_quantization:
            return fake_quant_nvfp4(w.t()).t()
        return fake_quant_nvfp4_2d(w)

    def dgrad_grad(self, dy: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return fake_quant_nvfp4(
            dy, stochastic=not self.cfg.disable_stochastic_rounding, generator=gen
        )

    def _columnwise(self, t: torch.Tensor) -> torch.Tensor:
        """(tokens, features) -> (features, padded tokens), RHT along the tokens unless disabled."""
        tt = t.t()
        return tt if self.cfg.disable_rht else random_hadamard_transform(tt)

    def wgrad_input(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quant_nvfp4(self._columnwise(x))

    def wgrad_grad(self, dy: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        sr = not self.cfg.disable_stochastic_rounding
        return fake_quant_nvfp4(self._columnwise(dy), stochastic=sr, generator=gen)


class _FP8Operands:
    """The operands under ``Float8CurrentScaling`` (HYBRID: E4M3 forward, E5M2 gradients).

    A per-tensor scale makes the row- and column-wise copies identical, so wgrad operands are
    plain transposes.
    """

    def __init__(self, config: FP8Config) -> None:
        self.eps = config.amax_epsilon

    def fprop_input(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quant_fp8(x, "e4m3", self.eps)

    def fprop_weight(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quant_fp8(w, "e4m3", self.eps)

    dgrad_weight = fprop_weight

    def dgrad_grad(self, dy: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return fake_quant_fp8(dy, "e5m2", self.eps)

    def wgrad_input(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quant_fp8(x, "e4m3", self.eps).t()

    def wgrad_grad(self, dy: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return fake_quant_fp8(dy, "e5m2", self.eps).t()


def _operands(precision: str, config: NVFP4Config | FP8Config | None) -> Any:
    if precision == "nvfp4":
        return _NVFP4Operands(config if isinstance(config, NVFP4Config) else NVFP4Config())
    if precision == "fp8":
        return _FP8Operands(config if isinstance(config, FP8Config) else FP8Config())
    raise ValueError(
        f"precision must be one of 'fp8', 'nvfp4' for an emulated linear, got {precision!r}"
    )


class _QuantizedLinearFn(torch.autograd.Function):
    """y = x W^T + b with all three GEMMs on quantised operands; fp32 GEMMs with autocast off."""

    @staticmethod
    def forward(ctx, x, weight, bias, ops, generator, out_dtype):  # noqa: ANN001 - autograd API
        ctx.save_for_backward(x, weight)
        ctx.ops, ctx.generator, ctx.has_bias = ops, generator, bias is not None
        x2d = x.reshape(-1, x.shape[-1])
        with torch.autocast(x.device.type, enabled=False):
            y = ops.fprop_input(x2d) @ ops.fprop_weight(weight).t()
            if bias is not None:
                y = y + bias.float()
        return y.to(out_dtype).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001 - autograd API
        x, weight = ctx.saved_tensors
        ops, gen = ctx.ops, ctx.generator
        x2d = x.reshape(-1, x.shape[-1])
        dy = grad_out.reshape(-1, grad_out.shape[-1])
        dx = dw = db = None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                dx = (ops.dgrad_grad(dy, gen) @ ops.dgrad_weight(weight)).to(x.dtype)
                dx = dx.reshape(x.shape)
            if ctx.needs_input_grad[1]:
                dw = (ops.wgrad_grad(dy, gen) @ ops.wgrad_input(x2d).t()).to(weight.dtype)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                db = dy.float().sum(0).to(weight.dtype)
        return dx, dw, db, None, None, None


class PrecisionLinear(nn.Linear):
    """``nn.Linear`` whose GEMMs use TE's fp8 or nvfp4 numerics; same parameters and state_dict.

    The stochastic-rounding generator is seeded from ``seed`` so training is reproducible; save
    and restore its state with ``rng_state``/``set_rng_state`` (via ``precision_rng_states``) to
    resume bit-identically.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        precision: str = "nvfp4",
        config: NVFP4Config | FP8Config | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.precision = precision
        self._ops = _operands(precision, config)
        self.seed = seed
        self._generator: torch.Generator | None = None

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, *, precision: str, config: NVFP4Config | FP8Config | None, seed: int
    ) -> PrecisionLinear:
        """Wrap an existing layer, sharing (not copying) its weight and bias Parameters."""
        new = cls(
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            precision=precision,
            config=config,
            seed=seed,
            device="meta",
        )
        new.weight = linear.weight
        new.bias = linear.bias
        new.train(linear.training)
        return new

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
        return self._generator

    def rng_state(self) -> torch.Tensor:
        return self.generator(self.weight.device).get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        self.generator(self.weight.device).set_state(state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = x.device.type
        out_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        gen = self.generator(x.device)
        return _QuantizedLinearFn.apply(x, self.weight, self.bias, self._ops, gen, out_dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, precision={self.precision}"


def apply_precision(
    model: nn.Module,
    precision: str,
    bf16_first_layers: int,
    bf16_last_layers: int,
    config: NVFP4Config | FP8Config | None = None,
    seed: int = 0,
) -> list[str]:
    """Swap the ``nn.Linear`` modules of ``model.model.layers`` for ``PrecisionLinear``.

    The first ``bf16_first_layers`` and last ``bf16_last_layers`` decoder layers stay in high
    precision (Megatron's ``num_layers_at_start_in_bf16``/``..._at_end_in_bf16``), and so do the
    embeddings and the LM head (they are outside ``model.model.layers``). Parameters are shared,
    so the state_dict keys and any optimizer built afterwards are unchanged. Each layer's
    generator is seeded by ``derive_seed(seed, "precision", name)``. Returns the swapped names,
    sorted. NemotronH's MoE experts (plain Parameters) and router (``F.linear``) are not
    ``nn.Linear`` and stay in high precision; on a GPU with mamba-ssm, the fused Mamba kernel
    reads ``out_proj.weight`` directly and so bypasses the swap.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if bf16_first_layers < 0 or bf16_last_layers < 0:
        raise ValueError("bf16_first_layers and bf16_last_layers must be >= 0")
    if precision == "bf16":
        return []
    layers = model.model.layers
    n = len(layers)
    swapped: list[str] = []
    for i in range(bf16_first_layers, n - bf16_last_layers):
        for sub_name, module in list(layers[i].named_modules()):
            for child_name, child in list(module.named_children()):
                if type(child) is not nn.Linear:
                    continue
                name = ".".join(p for p in ("model.layers", str(i), sub_name, child_name) if p)
                new = PrecisionLinear.from_linear(
                    child,
                    precision=precision,
                    config=config,
                    seed=derive_seed(seed, "precision", name),
                )
                setattr(module, child_name, new)
                swapped.append(name)
    return sorted(swapped)


def precision_rng_states(model: nn.Module) -> dict[str, torch.Tensor]:
    """Generator state of every ``PrecisionLinear``, by module name (for checkpoints)."""
    return {n: m.rng_state() for n, m in model.named_modules() if isinstance(m, PrecisionLinear)}


def load_precision_rng_states(model: nn.Module, states: dict[str, torch.Tensor]) -> None:
    """Restore states saved by ``precision_rng_states``; every PrecisionLinear must be named."""
    modules = {n: m for n, m in model.named_modules() if isinstance(m, PrecisionLinear)}
    if set(modules) != set(states):
        raise ValueError(
            f"precision RNG states name {sorted(states)} but the model has {sorted(modules)}"
        )
    for name, module in modules.items():
        module.set_rng_state(states[name])
