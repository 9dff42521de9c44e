"""Parameter and training-FLOP accounting for full-size configurations (meta device, no memory).

Published MoE figures give *active* parameters: what one token passes through. For a NemotronH
MoE layer that is the router, the shared expert, the latent projections and ``top-k`` of the
routed experts; every other layer is dense and fully active.
"""

from __future__ import annotations

import torch
from transformers import NemotronHConfig, NemotronHForCausalLM


def _meta_model(config: NemotronHConfig) -> NemotronHForCausalLM:
    with torch.device("meta"):
        return NemotronHForCausalLM(config)


def parameter_counts(config: NemotronHConfig) -> dict[str, int]:
    """Total, active (per token) and embedding parameter counts.

    ``active`` counts the routed experts of each MoE layer at ``top_k / n_experts`` of their
    size (experts are equal-sized, so this is exactly ``top_k`` experts' weights). MTP layers are
    not built by transformers and not counted (published totals exclude them: Super's 120.6B
    matches the count without them).
    """
    model = _meta_model(config)
    total = sum(p.numel() for p in model.parameters())
    routed = 0
    for module in model.modules():
        if type(module).__name__ == "NemotronHMoE":
            routed += sum(p.numel() for p in module.experts.parameters())
    top_k, n_experts = config.num_experts_per_tok, config.n_routed_experts
    active_routed = routed * top_k // n_experts if routed else 0
    embedding = model.get_input_embeddings().weight.numel()
    head = 0 if config.tie_word_embeddings else model.get_output_embeddings().weight.numel()
    active = total - routed + active_routed
    return {
        "total": total,
        "active": active,
        "embedding": embedding,
        "lm_head": head,
        "active_non_embedding": active - embedding - head,
    }


def training_flops(config: NemotronHConfig, tokens: float, seq_length: int) -> dict[str, float]:
    """Training FLOPs: 6 N D for the matmuls plus the attention score/value products.

    N = active parameters minus the input embedding (a lookup, no multiply); the LM head is a
    matmul and stays in. Attention adds, per token and attention layer, 2 (QK^T and AV) x 2
    (multiply-add) x 3 (forward + backward) x seq x (heads x head_dim), the full (non-causal)
    count as in Megatron's and Chinchilla's accounting. The Mamba-2 scan is O(seq x state) per
    channel and is left out (it is a fraction of a percent at these widths).
    """
    counts = parameter_counts(config)
    n = counts["active"] - counts["embedding"]
    n_attention = config.layers_block_type.count("full_attention")
    width = config.num_attention_heads * config.head_dim
    dense = 6.0 * n * tokens
    attention = 12.0 * n_attention * seq_length * width * tokens
    return {"matmul": dense, "attention": attention, "total": dense + attention}
