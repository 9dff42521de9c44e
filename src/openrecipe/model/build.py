"""Build ``transformers.NemotronHForCausalLM`` from a recipe's model section.

The recipe speaks Megatron's pattern grammar (``M`` Mamba-2, ``*`` attention, ``-`` MLP, ``E``
MoE); transformers accepts the same string as ``hybrid_override_pattern`` and expands it to
``layer_types``. Parameter counts for full-size configs are computed on the meta device, so a
550B configuration costs no memory.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import NemotronHConfig, NemotronHForCausalLM

# recipe field -> NemotronHConfig field, where the names differ (none yet: the recipe uses HF names)
_RENAMES: dict[str, str] = {}


def nemotronh_config(
    model: dict[str, Any],
    vocab_size: int,
    *,
    bos_id: int | None = None,
    eos_id: int | None = None,
    pad_id: int | None = None,
    max_position_embeddings: int = 4096,
) -> NemotronHConfig:
    """NemotronHConfig from a recipe model section (defaults already filled by the schema)."""
    fields = {_RENAMES.get(k, k): v for k, v in model.items()}
    pattern = fields.pop("hybrid_override_pattern")
    hidden = fields["hidden_size"]
    fields.setdefault("head_dim", hidden // fields["num_attention_heads"])
    if "mamba_num_heads" in fields and "mamba_head_dim" in fields:
        # Mamba-2 inner width is heads x head_dim; NemotronH takes that from the two fields and
        # only uses the integer ``expand`` where they are absent.
        inner = fields["mamba_num_heads"] * fields["mamba_head_dim"]
        fields.setdefault("expand", max(1, inner // hidden))
    return NemotronHConfig(
        vocab_size=vocab_size,
        hybrid_override_pattern=pattern,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        max_position_embeddings=max_position_embeddings,
        **fields,
    )


def config_for_tokenizer(model: dict[str, Any], tokenizer: Any) -> NemotronHConfig:
    """``nemotronh_config`` sized to ``tokenizer`` (added tokens included) with its special ids,
    as every stage that builds a model from the run's tokenizer needs it."""
    return nemotronh_config(
        model,
        len(tokenizer),
        bos_id=tokenizer.bos_token_id,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
    )


def build_model(
    config: NemotronHConfig, *, seed: int, dtype: torch.dtype = torch.float32
) -> NemotronHForCausalLM:
    """A freshly initialised model; the seed alone decides its weights."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = NemotronHForCausalLM(config).to(dtype)
    torch.random.set_rng_state(generator_state)
    return model


def count_parameters(config: NemotronHConfig) -> dict[str, int]:
    """Total and per-kind parameter counts without allocating weights (meta device)."""
    with torch.device("meta"):
        model = NemotronHForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.get_input_embeddings().weight.numel()
    head = 0 if config.tie_word_embeddings else model.get_output_embeddings().weight.numel()
    return {
        "total": total,
        "embedding": embeddings,
        "lm_head": head,
        "non_embedding": total - embeddings - head,
    }
