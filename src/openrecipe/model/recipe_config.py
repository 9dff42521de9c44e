"""The ``model``, ``pretrain`` and ``parallelism`` recipe sections, typed (``openrecipe.stage_config``).

Shared by the stages that read them whole: ``pretrain`` (the reference trainer) and ``plan``
(the Megatron launch plan). The schema (``workflow/schemas/recipe.schema.yaml``) fills the
defaults it has, so those fields are always present; the fields it leaves to the recipe
(a MoE model's expert sizes, a published token count, ...) are :func:`optional_key` fields and
read None when the recipe leaves them out. The layers below (``nemotronh_config``,
``compile_plan``) take the section back as the recipe wrote it (``stage_config.plain``), so
absent stays absent there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from openrecipe.stage_config import optional_key


@dataclass(frozen=True)
class ModelParams:
    """``model``: the NemotronH hybrid's shape (Hugging Face field names)."""

    hybrid_override_pattern: str
    """M Mamba-2, * attention, - MLP, E MoE; one character per layer."""
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    conv_kernel: int
    mlp_hidden_act: Literal["relu2"]
    tie_word_embeddings: bool
    initializer_range: float
    head_dim: int | None = optional_key()
    intermediate_size: int | None = optional_key()
    mamba_num_heads: int | None = optional_key()
    mamba_head_dim: int | None = optional_key()
    ssm_state_size: int | None = optional_key()
    n_groups: int | None = optional_key()
    chunk_size: int | None = optional_key()
    n_routed_experts: int | None = optional_key()
    num_experts_per_tok: int | None = optional_key()
    moe_intermediate_size: int | None = optional_key()
    moe_shared_expert_intermediate_size: int | None = optional_key()
    moe_latent_size: int | None = optional_key()
    routed_scaling_factor: float | None = optional_key()
    mtp_num_layers: int | None = optional_key()
    mtp_hybrid_override_pattern: str | None = optional_key()
    position_embedding_type: Literal["none", "rope"] | None = optional_key()


@dataclass(frozen=True)
class Nvfp4Params:
    """``pretrain.nvfp4``: switches of Transformer Engine's NVFP4BlockScaling recipe."""

    disable_rht: bool
    disable_stochastic_rounding: bool
    disable_2d_quantization: bool


@dataclass(frozen=True)
class OptimizerParams:
    """``pretrain.optimizer``: AdamW and its clipping."""

    lr: float
    min_lr: float
    betas: tuple[float, ...]
    eps: float
    weight_decay: float
    grad_clip: float


@dataclass(frozen=True)
class ScheduleParams:
    """``pretrain.schedule``: warmup-stable-decay fractions and the decay's shape."""

    kind: Literal["wsd"]
    warmup_fraction: float
    decay_fraction: float
    decay_shape: Literal["linear", "minus_sqrt", "cosine"]


@dataclass(frozen=True)
class PretrainParams:
    """``pretrain``: precision, batch shape, length, logging and checkpoints, optimizer and
    schedule."""

    precision: Literal["bf16", "fp8", "nvfp4"]
    bf16_first_layers: int
    bf16_last_layers: int
    nvfp4: Nvfp4Params
    seq_length: int
    micro_batch_size: int
    grad_accum: int
    steps: int
    log_every: int
    checkpoint_every: int
    optimizer: OptimizerParams
    schedule: ScheduleParams
    tokens: float | None = optional_key()
    """Published pretraining tokens (the release's; steps are derived from it)."""
    global_batch_size: int | None = optional_key()
    """Sequences per optimizer step across data-parallel ranks (Megatron)."""


@dataclass(frozen=True)
class ParallelismParams:
    """``parallelism``: the Megatron launch layout of the scale backend."""

    tp: int
    pp: int
    ep: int
    etp: int
    cp: int
    sequence_parallel: bool
    nodes: int
    gpus_per_node: int
