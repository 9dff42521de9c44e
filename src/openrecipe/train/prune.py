"""Minitron-style structured pruning of a NemotronH parent to a child shape.

Importance is measured on activations, never on weights, as in Minitron (Muralidharan et al.,
2024, "Compact Language Models via Pruning and Knowledge Distillation"): the parent runs forward
on fixed calibration sequences and hooks accumulate, per axis,

- **depth**: the block influence of each layer, ``1 - cos(input, output)`` of its residual
  stream averaged over tokens (ShortGPT's score, which Minitron's depth ablation uses): a layer
  that barely turns the residual stream matters least;
- **hidden channels** (embedding width): the summed magnitude of every RMSNorm's output per
  channel (each block's pre-norm and the final norm), Minitron's embedding-channel score;
- **MLP neurons**: the mean ``|relu2(up_proj x)|`` per neuron, per MLP layer;
- **Mamba heads** and **attention heads**: the summed L2 norm of each head's output (the input
  of ``out_proj`` / ``o_proj``), per layer.

Pruning then keeps the most important indices of each axis (ties go to the lower index, so the
result is a pure function of the scores) in their original order, chooses which layers to keep
so that the child's ``hybrid_override_pattern`` is what remains (the kept layers maximise the
summed importance among every way of deleting layers to reach the child's pattern), and slices
every tensor. The child is built from the child config and loaded strictly, so a missing or
misshaped tensor is an error rather than a silently fresh weight.

What is pruned: hidden size, MLP intermediate size and layers (what the Nano 12B -> 9B v2 and
Nemotron-H 56B -> 47B derivations change). Mamba and attention head counts are scored and
reported but not pruned: neither release changes them, and a child that asks for it is
refused by name rather than approximated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import NemotronHConfig, NemotronHForCausalLM

from openrecipe.errors import RecipeError

# Config fields the child must share with the parent: what pruning leaves untouched.
SHARED_FIELDS = (
    "vocab_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "mamba_num_heads",
    "mamba_head_dim",
    "ssm_state_size",
    "n_groups",
    "conv_kernel",
    "mlp_hidden_act",
    "tie_word_embeddings",
    "use_bias",
    "use_conv_bias",
    "mlp_bias",
    "attention_bias",
)
# The block type transformers gives each pattern character.
_MLP, _MAMBA, _ATTENTION = "mlp", "mamba", "attention"
# Biases on a block's output, which lies on the hidden axis.
_HIDDEN_BIASES = frozenset({"mixer.out_proj.bias", "mixer.o_proj.bias", "mixer.down_proj.bias"})


class PruneError(RecipeError):
    """A child shape that cannot be pruned from the parent (named field, both values)."""


@dataclass(frozen=True)
class Importance:
    """Activation-based importance of every prunable axis of the parent."""

    layers: list[float]
    """Per parent layer: mean ``1 - cos(input, output)`` of the residual stream."""
    hidden: list[float]
    """Per hidden channel: summed |RMSNorm output| over norms, sequences and tokens."""
    mlp: dict[int, list[float]]
    """Per MLP layer index: mean |activation| of each intermediate neuron."""
    mamba_heads: dict[int, list[float]]
    """Per Mamba layer index: summed L2 norm of each head's output."""
    attention_heads: dict[int, list[float]]
    """Per attention layer index: summed L2 norm of each head's output."""


@dataclass(frozen=True)
class Plan:
    """What the child keeps of the parent: indices per axis, in the parent's order."""

    layers: list[int]
    hidden: list[int]
    mlp: dict[int, list[int]]  # keyed by parent layer index


def _block_kind(pattern_char: str) -> str:
    return {"-": _MLP, "M": _MAMBA, "*": _ATTENTION, "E": "moe"}[pattern_char]


def check_shared(parent: NemotronHConfig, child: NemotronHConfig) -> None:
    """Refuse a child that differs from the parent anywhere pruning does not reach."""
    for name in SHARED_FIELDS:
        mine, theirs = getattr(child, name, None), getattr(parent, name, None)
        if mine != theirs:
            raise PruneError(
                f"model.{name}: the child has {mine!r}, the parent {theirs!r}; distill prunes "
                "hidden_size, intermediate_size and layers only (Mamba and attention heads "
                "are kept, as in both published derivations)"
            )
    if "E" in parent.hybrid_override_pattern:
        raise PruneError(
            f"model.hybrid_override_pattern: the parent {parent.hybrid_override_pattern!r} "
            "has MoE layers (E); pruning experts is not implemented"
        )
    for name in ("hidden_size", "intermediate_size"):
        mine, theirs = getattr(child, name), getattr(parent, name)
        if mine > theirs:
            raise PruneError(f"model.{name}: the child's {mine} exceeds the parent's {theirs}")


def select_layers(parent: str, child: str, importance: Sequence[float]) -> list[int]:
    """Indices of the parent layers to keep so that their pattern characters spell ``child``,
    maximising the summed importance of the kept layers (ties: the lexicographically smallest
    index list). Refuses a child pattern that is not a deletion of the parent's."""
    n, m = len(parent), len(child)
    if len(importance) != n:
        raise ValueError(f"{len(importance)} layer scores for a {n}-layer parent")
    neg = float("-inf")
    # best[i][j]: the best total for parent[i:] spelling child[j:]
    best = [[neg] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        best[i][m] = 0.0
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            skip = best[i + 1][j]
            take = importance[i] + best[i + 1][j + 1] if parent[i] == child[j] else neg
            best[i][j] = max(skip, take)
    if best[0][0] == neg:
        raise PruneError(
            f"model.hybrid_override_pattern: the child's {child!r} is not the parent's "
            f"{parent!r} with layers deleted (depth pruning only removes layers; each kept "
            "layer keeps its type and order)"
        )
    kept, j = [], 0
    for i in range(n):
        if j < m and parent[i] == child[j]:
            take = importance[i] + best[i + 1][j + 1]
            if take >= best[i + 1][j]:  # taking the earlier layer on a tie
                kept.append(i)
                j += 1
    return kept


def top_k(scores: Sequence[float], k: int) -> list[int]:
    """The ``k`` highest-scoring indices in ascending order (ties: the lower index wins)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return sorted(int(i) for i in order[:k])


@torch.no_grad()
def measure(model: NemotronHForCausalLM, batches: Sequence[torch.Tensor]) -> Importance:
    """Run ``model`` (float32, eval mode) over ``batches`` of token ids and score every axis."""
    config = model.config
    layers = model.model.layers
    n = len(layers)
    kinds = [_block_kind(c) for c in config.hybrid_override_pattern]
    influence = torch.zeros(n, dtype=torch.float64)
    tokens = torch.zeros((), dtype=torch.float64)
    hidden = torch.zeros(config.hidden_size, dtype=torch.float64)
    mlp: dict[int, torch.Tensor] = {}
    heads: dict[int, torch.Tensor] = {}
    handles = []

    def block_hook(index: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            before = (args[0] if args else kwargs["hidden_states"]).double()
            after = (out[0] if isinstance(out, tuple) else out).double()
            cos = torch.nn.functional.cosine_similarity(before, after, dim=-1)
            influence[index] += (1.0 - cos).sum()

        return hook

    def norm_hook(module: Any, args: tuple[Any, ...], out: torch.Tensor) -> None:
        hidden.add_(out.double().abs().sum(dim=(0, 1)))

    def mlp_hook(index: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...]) -> None:
            act = args[0].double().abs().sum(dim=(0, 1))
            mlp[index] = mlp.get(index, torch.zeros_like(act)) + act

        return hook

    def head_hook(index: int, n_heads: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...]) -> None:
            y = args[0].double()
            per_head = y.reshape(*y.shape[:-1], n_heads, -1).norm(dim=-1).sum(dim=(0, 1))
            heads[index] = heads.get(index, torch.zeros_like(per_head)) + per_head

        return hook

    for index, (block, kind) in enumerate(zip(layers, kinds, strict=True)):
        handles.append(block.register_forward_hook(block_hook(index), with_kwargs=True))
        handles.append(block.norm.register_forward_hook(norm_hook))
        if kind == _MLP:
            handles.append(block.mixer.down_proj.register_forward_pre_hook(mlp_hook(index)))
        elif kind == _MAMBA:
            hook = head_hook(index, config.mamba_num_heads)
            handles.append(block.mixer.out_proj.register_forward_pre_hook(hook))
        elif kind == _ATTENTION:
            hook = head_hook(index, config.num_attention_heads)
            handles.append(block.mixer.o_proj.register_forward_pre_hook(hook))
    handles.append(model.model.norm_f.register_forward_hook(norm_hook))
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(input_ids=batch)
            tokens += batch.numel()
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    def scores(t: torch.Tensor, scale: torch.Tensor | float = 1.0) -> list[float]:
        return [float(v) for v in (t / scale).tolist()]

    return Importance(
        layers=scores(influence, tokens),
        hidden=scores(hidden),
        mlp={i: scores(v, tokens) for i, v in sorted(mlp.items())},
        mamba_heads={i: scores(v) for i, v in sorted(heads.items()) if kinds[i] == _MAMBA},
        attention_heads={i: scores(v) for i, v in sorted(heads.items()) if kinds[i] == _ATTENTION},
    )


def plan(parent: NemotronHConfig, child: NemotronHConfig, importance: Importance) -> Plan:
    """The indices the child keeps (refusing a child the parent cannot be pruned to)."""
    check_shared(parent, child)
    layers = select_layers(
        parent.hybrid_override_pattern, child.hybrid_override_pattern, importance.layers
    )
    return Plan(
        layers=layers,
        hidden=top_k(importance.hidden, child.hidden_size),
        mlp={
            i: top_k(importance.mlp[i], child.intermediate_size)
            for i in layers
            if parent.hybrid_override_pattern[i] == "-"
        },
    )


def _slice_hidden_in(weight: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    return weight.index_select(1, hidden)


def child_state_dict(
    parent: NemotronHForCausalLM, child_config: NemotronHConfig, keep: Plan
) -> dict[str, torch.Tensor]:
    """The parent's tensors sliced to ``keep``, named as the child's (layers renumbered)."""
    state = parent.state_dict()
    hidden = torch.tensor(keep.hidden, dtype=torch.long)
    out: dict[str, torch.Tensor] = {
        "model.embeddings.weight": _slice_hidden_in(state["model.embeddings.weight"], hidden),
        "model.norm_f.weight": state["model.norm_f.weight"].index_select(0, hidden),
    }
    if not child_config.tie_word_embeddings:
        out["lm_head.weight"] = _slice_hidden_in(state["lm_head.weight"], hidden)
    pattern = parent.config.hybrid_override_pattern
    for new, old in enumerate(keep.layers):
        src, dst = f"model.layers.{old}.", f"model.layers.{new}."
        local = {k[len(src) :]: v for k, v in state.items() if k.startswith(src)}
        sliced: dict[str, torch.Tensor] = {"norm.weight": local["norm.weight"][hidden]}
        kind = _block_kind(pattern[old])
        if kind == _MLP:
            neurons = torch.tensor(keep.mlp[old], dtype=torch.long)
            sliced["mixer.up_proj.weight"] = local["mixer.up_proj.weight"][neurons][:, hidden]
            sliced["mixer.down_proj.weight"] = local["mixer.down_proj.weight"][hidden][:, neurons]
        elif kind == _MAMBA:
            sliced["mixer.in_proj.weight"] = _slice_hidden_in(local["mixer.in_proj.weight"], hidden)
            sliced["mixer.out_proj.weight"] = local["mixer.out_proj.weight"].index_select(0, hidden)
        elif kind == _ATTENTION:
            for name in ("q_proj", "k_proj", "v_proj"):
                key = f"mixer.{name}.weight"
                sliced[key] = _slice_hidden_in(local[key], hidden)
            sliced["mixer.o_proj.weight"] = local["mixer.o_proj.weight"].index_select(0, hidden)
        if kind == _MLP and "mixer.up_proj.bias" in local:
            sliced["mixer.up_proj.bias"] = local["mixer.up_proj.bias"][neurons]
        for key, value in local.items():  # the rest: Mamba A, D, dt, conv, gated norm, biases
            if key not in sliced:
                sliced[key] = value.index_select(0, hidden) if key in _HIDDEN_BIASES else value
        out.update({dst + k: v.clone() for k, v in sliced.items()})
    return out


def prune(
    parent: NemotronHForCausalLM, child_config: NemotronHConfig, keep: Plan
) -> NemotronHForCausalLM:
    """A ``NemotronHForCausalLM`` with ``child_config`` holding the parent's kept weights."""
    with torch.device("meta"):
        child = NemotronHForCausalLM(child_config)
    state = child_state_dict(parent, child_config, keep)
    expected = child.state_dict()
    for key, value in expected.items():
        if key in state and tuple(state[key].shape) != tuple(value.shape):
            raise PruneError(
                f"pruned tensor {key}: shape {tuple(state[key].shape)}, the child config "
                f"needs {tuple(value.shape)}"
            )
    child.load_state_dict(state, strict=True, assign=True)
    child.to(torch.float32)
    return child


def report(importance: Importance, keep: Plan, parent: NemotronHConfig, child: Any) -> dict:
    """``pruning.json``: the scores, the kept indices and the shapes per axis."""
    return {
        "method": "minitron-activation",
        "depth": {
            "score": "mean 1 - cos(layer input, layer output) over calibration tokens",
            "parent_pattern": parent.hybrid_override_pattern,
            "child_pattern": child.hybrid_override_pattern,
            "importance": importance.layers,
            "kept": keep.layers,
            "dropped": [i for i in range(len(importance.layers)) if i not in keep.layers],
        },
        "hidden": {
            "score": "summed |RMSNorm output| per channel (every block norm and norm_f)",
            "parent": parent.hidden_size,
            "child": child.hidden_size,
            "importance": importance.hidden,
            "kept": keep.hidden,
        },
        "mlp": {
            "score": "mean |relu2(up_proj x)| per neuron",
            "parent": parent.intermediate_size,
            "child": child.intermediate_size,
            "importance": {str(i): v for i, v in importance.mlp.items()},
            "kept": {str(i): v for i, v in keep.mlp.items()},
        },
        "mamba_heads": {
            "score": "summed L2 norm of each head's output (out_proj input); not pruned",
            "parent": parent.mamba_num_heads,
            "child": child.mamba_num_heads,
            "importance": {str(i): v for i, v in importance.mamba_heads.items()},
        },
        "attention_heads": {
            "score": "summed L2 norm of each head's output (o_proj input); not pruned",
            "parent": parent.num_attention_heads,
            "child": child.num_attention_heads,
            "importance": {str(i): v for i, v in importance.attention_heads.items()},
        },
    }
