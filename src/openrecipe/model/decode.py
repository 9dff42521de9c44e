"""Cached single-token decoding for ``NemotronHForCausalLM``: preallocated state, one step per token.

Why this module exists (transformers 5.23, torch 2.13, CPU, fp32; figures from
``results/bench/hybrid_decode.json``, ``python bench/hybrid_decode.py --library --mamba-only``,
the 53M-parameter pair of that bench, one thread on the loaded 2-core machine):

* transformers' own cached decode *is* recurrent on CPU: with ``use_cache=True`` the Mamba-2 mixer
  takes ``causal_conv1d_update`` + ``mamba2_selective_state_update`` for a single token (no scan
  over the prefix), so its step time does not grow with context. It is not *lean*: a step does a
  ``torch.cat`` + depthwise ``conv1d`` per Mamba layer for a 4-tap filter, a contiguous copy of
  B and C expanded to every head, builds two masks per step, and ``DynamicCache`` grows each
  attention layer's K/V by ``torch.cat`` every token, i.e. copies the whole cache per token - a
  cost that is the cache's, not attention's. At 1k context, batch 1, the library step takes
  67.9 ms for the hybrid and 68.1 ms for the all-attention model against 52.6 ms and 56.2 ms
  here (1.29x and 1.21x).
* transformers' ``DynamicCache`` cannot run a model without attention layers at all
  (``get_seq_length`` raises "can only be called on Attention layers"), so an all-Mamba model
  cannot decode through ``model.forward`` with a cache.
* its single-token path does not clamp ``dt`` to ``time_step_limit`` while the chunked scan of
  the full forward does; the step here follows the full forward.

So both sides of the hybrid-vs-attention comparison decode here under the same rules: attention
K/V in buffers allocated once for the whole generation (written in place, read as a prefix, GQA
as a grouped matmul without repeating K/V), the Mamba conv window and SSM state updated in
place, MLP/MoE blocks called as they are. Every weight is the model's own parameter (nothing
copied). The prefix is prefilled by the model's own forward (``prefill``), in chunks, and the
cache it leaves is moved into the buffers once. ``tests/unit/test_decode.py`` checks each decoded
position's logits against the model's full (uncached) forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import DynamicCache, NemotronHForCausalLM

from openrecipe.errors import OpenRecipeError


class DecodeError(OpenRecipeError):
    """A decode request the cached step cannot serve (context too long, wrong batch)."""


@dataclass
class DecodeState:
    """Everything a step needs besides the weights, for ``batch`` sequences of equal length.

    ``keys``/``values``: per attention layer, ``(batch, kv_heads, capacity, head_dim)`` buffers
    whose first ``length`` positions are filled. ``conv``: per Mamba layer, the last
    ``conv_kernel`` inputs of its depthwise convolution, ``(batch, conv_dim, conv_kernel)``.
    ``ssm``: per Mamba layer, the recurrent state ``(batch, heads, head_dim, state_size)``.
    """

    length: int
    capacity: int
    keys: dict[int, torch.Tensor] = field(default_factory=dict)
    values: dict[int, torch.Tensor] = field(default_factory=dict)
    conv: dict[int, torch.Tensor] = field(default_factory=dict)
    ssm: dict[int, torch.Tensor] = field(default_factory=dict)

    def nbytes(self) -> int:
        """Bytes held by the cache: what decoding must read per token besides the weights."""
        kv = [*self.keys.values(), *self.values.values()]
        kv_used = sum(t[:, :, : self.length].nbytes for t in kv)
        return kv_used + sum(t.nbytes for t in [*self.conv.values(), *self.ssm.values()])


def _layers(model: NemotronHForCausalLM) -> list[tuple[int, str, torch.nn.Module]]:
    return [(i, block.block_type, block) for i, block in enumerate(model.model.layers)]


def prefill(
    model: NemotronHForCausalLM,
    input_ids: torch.Tensor,
    *,
    chunk: int = 1024,
    on_chunk: Callable[[int, torch.Tensor, DynamicCache], None] | None = None,
) -> tuple[torch.Tensor, DynamicCache]:
    """Run the prefix through the model's own forward in chunks of ``chunk`` tokens (so a 32k
    prefix never materialises a 32k-wide activation), returning the last position's logits and
    the filled cache. ``position_ids`` are passed explicitly: the library derives them from the
    attention cache, which an all-Mamba model does not have; for such a model the (unused,
    all-None) masks are passed too, since building them asks the cache for that length again.
    ``on_chunk(end, logits, cache)`` is called after each chunk (``end`` tokens prefilled), so
    one long prefill can leave snapshots at shorter lengths."""
    cache = DynamicCache(config=model.config)
    length = input_ids.shape[1]
    no_attention = all(kind != "full_attention" for _, kind, _ in _layers(model))
    masks = {"full_attention": None, "linear_attention": None} if no_attention else None
    logits = None
    with torch.no_grad():
        for start in range(0, length, chunk):
            ids = input_ids[:, start : start + chunk]
            positions = torch.arange(start, start + ids.shape[1]).expand(ids.shape[0], -1)
            out = model(
                ids,
                attention_mask=masks,
                past_key_values=cache,
                use_cache=True,
                position_ids=positions,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1]
            if on_chunk is not None:
                on_chunk(start + ids.shape[1], logits, cache)
    return logits, cache


def state_from_cache(
    model: NemotronHForCausalLM,
    cache: DynamicCache,
    length: int,
    *,
    extra: int,
    batch: int | None = None,
    conv: dict[int, torch.Tensor] | None = None,
    ssm: dict[int, torch.Tensor] | None = None,
) -> DecodeState:
    """A ``DecodeState`` holding the first ``length`` positions of ``cache`` with room for
    ``extra`` more tokens. ``batch`` > the cache's batch repeats its rows (a decode step costs
    the same whatever the rows hold, so one prefill can serve a batch-8 measurement). ``conv``
    and ``ssm`` override the Mamba states (snapshots taken at ``length`` during a longer
    prefill); by default they are the cache's own, which are valid only if ``length`` is the
    cache's full length."""
    state = DecodeState(length=length, capacity=length + extra)
    for index, kind, _ in _layers(model):
        layer = cache.layers[index]
        if kind == "full_attention":
            if layer.keys is None or layer.keys.shape[-2] < length:
                raise DecodeError(f"layer {index}: the cache holds fewer than {length} positions")
            keys, values = layer.keys[:, :, :length], layer.values[:, :, :length]
            rows = batch or keys.shape[0]
            shape = (rows, keys.shape[1], state.capacity, keys.shape[-1])
            state.keys[index] = keys.new_empty(shape)
            state.values[index] = values.new_empty(shape)
            state.keys[index][:, :, :length] = keys.expand(rows, -1, -1, -1)
            state.values[index][:, :, :length] = values.expand(rows, -1, -1, -1)
        elif kind == "linear_attention":
            conv_state = (conv or {}).get(index, layer.conv_states[0])
            ssm_state = (ssm or {}).get(index, layer.recurrent_states[0])
            rows = batch or conv_state.shape[0]
            state.conv[index] = conv_state.expand(rows, -1, -1).clone()
            state.ssm[index] = ssm_state.to(torch.float32).expand(rows, -1, -1, -1).clone()
    return state


def mamba_snapshot(
    model: NemotronHForCausalLM, cache: DynamicCache
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Copies of every Mamba layer's conv and SSM state as they are now (during a prefill)."""
    conv, ssm = {}, {}
    for index, kind, _ in _layers(model):
        if kind == "linear_attention":
            conv[index] = cache.layers[index].conv_states[0].clone()
            ssm[index] = cache.layers[index].recurrent_states[0].clone()
    return conv, ssm


def _mamba_step(mixer: torch.nn.Module, x: torch.Tensor, conv: torch.Tensor, ssm: torch.Tensor):
    """One token through a ``NemotronHMamba2Mixer``; ``conv`` and ``ssm`` are updated in place.

    x: (B, hidden) -> (B, hidden). Same arithmetic as the mixer's chunked scan for one position:
    conv over the last ``conv_kernel`` inputs, dt = clamp(softplus(dt + dt_bias)),
    h = exp(dt A) h + dt x B^T, y = h C + D x, gated RMSNorm, out_proj.
    """
    batch = x.shape[0]
    heads, head_dim, n = mixer.num_heads, mixer.head_dim, mixer.ssm_state_size
    groups = mixer.n_groups
    projected = mixer.in_proj(x)  # (B, I + conv_dim + H)
    gate, xbc, dt = projected.split([mixer.intermediate_size, mixer.conv_dim, heads], dim=-1)
    # depthwise causal conv over the window of the last K inputs: shift left, append, dot
    conv[:, :, :-1] = conv[:, :, 1:].clone()
    conv[:, :, -1] = xbc
    xbc = (conv * mixer.conv1d.weight[:, 0]).sum(-1)  # (B, conv_dim)
    if mixer.conv1d.bias is not None:
        xbc = xbc + mixer.conv1d.bias
    xbc = mixer.act(xbc)
    hidden, b, c = xbc.split([mixer.intermediate_size, groups * n, groups * n], dim=-1)
    dt = F.softplus(dt + mixer.dt_bias).clamp(*mixer.time_step_limit).float()  # (B, H)
    a = -torch.exp(mixer.A_log.float())  # (H,)
    hidden = hidden.view(
        batch, groups, heads // groups, head_dim
    ).float()  # head h in group h // (H/G)
    b = b.view(batch, groups, 1, n).float()
    c = c.view(batch, groups, n, 1).float()
    h = ssm.view(batch, groups, heads // groups, head_dim, n)
    h.mul_(torch.exp(dt * a).view(batch, groups, heads // groups, 1, 1))
    dtx = hidden * dt.view(batch, groups, heads // groups, 1)  # (B, G, H/G, P)
    h.add_(dtx.unsqueeze(-1) * b.unsqueeze(2))  # += dt x B^T
    y = (h.flatten(2, 3) @ c).view(batch, heads, head_dim)  # (B, H, P): h C
    y = y + mixer.D.float().view(1, heads, 1) * hidden.view(batch, heads, head_dim)
    y = mixer.norm(y.reshape(batch, -1).to(x.dtype), gate)
    return mixer.out_proj(y.to(x.dtype))


def _attention_step(
    attn: torch.nn.Module, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, pos: int
) -> torch.Tensor:
    """One token through a ``NemotronHAttention`` (no positional embedding in NemotronH): write
    its K/V at ``pos``, attend over positions 0..pos. GQA as (B, kv_heads, group, D) queries
    against the shared K/V, so K/V are read once per KV head and never repeated."""
    batch, d = x.shape[0], attn.head_dim
    kv_heads = keys.shape[1]
    q = attn.q_proj(x).view(batch, kv_heads, -1, d)  # (B, Hkv, Hq/Hkv, D)
    keys[:, :, pos] = attn.k_proj(x).view(batch, kv_heads, d)
    values[:, :, pos] = attn.v_proj(x).view(batch, kv_heads, d)
    out = F.scaled_dot_product_attention(
        q, keys[:, :, : pos + 1], values[:, :, : pos + 1], scale=attn.scaling
    )  # (B, Hkv, Hq/Hkv, D)
    return attn.o_proj(out.reshape(batch, -1))


@torch.no_grad()
def step(model: NemotronHForCausalLM, state: DecodeState, tokens: torch.Tensor) -> torch.Tensor:
    """Logits (B, vocab) for ``tokens`` (B,) appended at position ``state.length``; the state
    advances by one position."""
    if state.length >= state.capacity:
        raise DecodeError(f"decode state is full ({state.capacity} positions)")
    x = model.model.embeddings(tokens)  # (B, hidden)
    for index, kind, block in _layers(model):
        residual = x
        h = block.norm(x.to(block.norm.weight.dtype))
        if kind == "linear_attention":
            h = _mamba_step(block.mixer, h, state.conv[index], state.ssm[index])
        elif kind == "full_attention":
            h = _attention_step(
                block.mixer, h, state.keys[index], state.values[index], state.length
            )
        else:  # mlp / moe: position-wise
            h = block.mixer(h.unsqueeze(1)).squeeze(1)
        x = residual + h
    state.length += 1
    return model.lm_head(model.model.norm_f(x)).float()
