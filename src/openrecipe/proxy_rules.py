"""Field-by-field check of a release proxy against the rules it derives by.

A proxy recipe (``recipes/<release>_proxy.yaml``) is written by hand, ~150 lines, mostly copied.
This module states, for every field of the resolved proxy, where its value must come from, so a
copy that drifted from its release (or from the tiny recipe's CPU scale) is caught and named:

- **tiny**: the CPU scale, taken from the tiny recipe as it is (sources, curation limits,
  tokenizer, model widths, step counts, post-training and evaluation budgets, threads);
- **kept**: what defines the release, equal to the release's value (precision recipe, schedule
  shape, optimizer settings, citations, unverified fields, parallelism of the full-size plan, ...);
- **derived**: computed from the release by the rules in :mod:`openrecipe.releases` (blend by
  source role, BF16 layer counts scaled to the depth, the min/max LR ratio) and the width ratios
  the proxies declare (FFN, Mamba and expert widths as the release's ratio to its hidden size);
- **chosen**: picked by hand within a rule (the layer pattern keeps the release's layer types,
  ends and shares; the expert count and top-k are smaller than the release's).

Any field of the proxy no rule covers is reported too, so a new recipe field needs a rule here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openrecipe.releases import pattern_shares, proxy_bf16_layers, proxy_phases

# Recipe subtrees (dotted prefixes) a proxy takes from the tiny recipe unchanged: the CPU scale.
FROM_TINY: tuple[str, ...] = (
    "data.sources",  # identical entries, so data/raw/ is shared and never refetched
    "data.curation",
    "data.exclude",
    "tokenizer",
    "model.hidden_size",
    "model.num_attention_heads",
    "model.head_dim",
    "model.mamba_head_dim",
    "model.ssm_state_size",
    "model.n_groups",
    "model.chunk_size",
    "model.initializer_range",  # an init std belongs to a width; the release's is for its own
    "pretrain.seq_length",
    "pretrain.micro_batch_size",
    "pretrain.steps",
    "pretrain.log_every",
    "pretrain.optimizer.lr",
    "sft",
    "rl",
    "eval",
    "resources.threads",
    "resources.device",
)

# Set by the proxy rules themselves, not copied from either recipe.
PROXY_BACKEND = "reference"
PROXY_KV_HEADS = 1  # grouped-query attention, as every release uses: one KV group at 4 heads
SHARE_TOLERANCE = 0.02  # each layer type's share of the pattern, proxy vs release
MAX_PROXY_LAYERS = 20
EXPERT_ROW_MULTIPLE = 4  # expert FFN rounded down so fp32 rows are 16-byte aligned (grouped_mm)

# DPO at CPU scale. The tiny recipe has no DPO step, so a proxy whose release ran DPO (its
# published post-training sequence, published_releases.yaml) declares the sequence and takes
# these sizes; loss, label_smoothing and max_length are the dpo section's schema defaults.
PROXY_DPO: dict[str, Any] = {
    "beta": 0.1,
    "steps": 6,
    "lr": 1.0e-4,
    "batch_size": 2,
    "checkpoint_every": 2,
    "loss": "sigmoid",
    "label_smoothing": 0.0,
    "max_length": 512,
    "pairs": {
        "source": "rollouts",
        "prompts": 48,
        "samples": 4,
        "temperature": 1.0,
        "max_new_tokens": 48,
    },
}
# openrecipe's post-training steps by the name a published sequence gives them.
STEP_BY_PUBLISHED_NAME = {"SFT": "sft", "GRPO": "rl", "DPO": "dpo"}

# Fields a proxy chooses by hand (checked by a predicate, not an expected value).
CHOSEN = ("model.hybrid_override_pattern", "model.n_routed_experts", "model.num_experts_per_tok")


@dataclass(frozen=True)
class Rule:
    """Where one proxy field comes from: an expected value, or a predicate on the value."""

    source: str  # tiny | kept | derived | chosen | proxy
    expected: Any = None
    check: Callable[[Any], str | None] | None = None  # returns a complaint, or None
    why: str = ""


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaves of a recipe; lists are leaves (compared whole)."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def _under(dotted: str, prefixes: tuple[str, ...]) -> bool:
    return any(dotted == p or dotted.startswith(p + ".") for p in prefixes)


def _ratio_width(proxy_hidden: int, full_width: float, full_hidden: int) -> int:
    return round(proxy_hidden * full_width / full_hidden)


def _expert_width(proxy_hidden: int, full_width: float, full_hidden: int) -> int:
    exact = proxy_hidden * full_width / full_hidden
    return int(exact // EXPERT_ROW_MULTIPLE) * EXPERT_ROW_MULTIPLE


def _model_rules(
    full: dict[str, Any], tiny: dict[str, Any], proxy: dict[str, Any]
) -> dict[str, Rule]:
    fm, tm, pm = full["model"], tiny["model"], proxy["model"]
    hidden = tm["hidden_size"]
    moe = "E" in fm["hybrid_override_pattern"]
    rules: dict[str, Rule] = {}
    rules["model.num_key_value_heads"] = Rule(
        "derived", PROXY_KV_HEADS, why="grouped-query attention with one KV group"
    )
    mamba_width = fm["mamba_num_heads"] * fm["mamba_head_dim"] / fm["hidden_size"]
    rules["model.mamba_num_heads"] = Rule(
        "derived",
        round(mamba_width * hidden / tm["mamba_head_dim"]),
        why=f"the release's Mamba width {mamba_width:.3g}x hidden, in heads of "
        f"{tm['mamba_head_dim']}",
    )
    width = _expert_width if moe else _ratio_width
    rules["model.intermediate_size"] = Rule(
        "derived",
        width(hidden, fm["intermediate_size"], fm["hidden_size"]),
        why=f"the release's FFN {fm['intermediate_size']}/{fm['hidden_size']} of hidden"
        + (f", rounded down to a multiple of {EXPERT_ROW_MULTIPLE}" if moe else ""),
    )
    if "moe_intermediate_size" in fm:
        expert = _expert_width(hidden, fm["moe_intermediate_size"], fm["hidden_size"])
        rules["model.moe_intermediate_size"] = Rule(
            "derived",
            expert,
            why=f"the release's expert FFN {fm['moe_intermediate_size']}/{fm['hidden_size']} "
            f"of hidden, rounded down to a multiple of {EXPERT_ROW_MULTIPLE}",
        )
        if "moe_shared_expert_intermediate_size" in fm:
            shared = fm["moe_shared_expert_intermediate_size"] / fm["moe_intermediate_size"]
            rules["model.moe_shared_expert_intermediate_size"] = Rule(
                "derived",
                round(expert * shared),
                why=f"the release's shared/expert FFN ratio {shared:g}",
            )
    if "moe_latent_size" in fm:
        rules["model.moe_latent_size"] = Rule(
            "derived",
            _ratio_width(hidden, fm["moe_latent_size"], fm["hidden_size"]),
            why=f"the release's latent {fm['moe_latent_size']}/{fm['hidden_size']} of hidden",
        )
    rules["model.hybrid_override_pattern"] = Rule(
        "chosen", check=lambda p: _pattern_complaint(fm["hybrid_override_pattern"], p)
    )
    for key in ("n_routed_experts", "num_experts_per_tok"):
        if key in fm or key in pm:
            rules[f"model.{key}"] = Rule(
                "chosen",
                check=lambda v, k=key: _smaller_complaint(fm.get(k), v, k),
            )
    return rules


def _pattern_complaint(full: str, pattern: Any) -> str | None:
    if not isinstance(pattern, str) or not pattern:
        return "no layer pattern"
    if set(pattern) != set(full):
        return f"layer types {sorted(set(pattern))}, release {sorted(set(full))}"
    if (pattern[0], pattern[-1]) != (full[0], full[-1]):
        return f"starts/ends with {pattern[0]}/{pattern[-1]}, release {full[0]}/{full[-1]}"
    if len(pattern) > MAX_PROXY_LAYERS:
        return f"{len(pattern)} layers, more than {MAX_PROXY_LAYERS}"
    mine, theirs = pattern_shares(pattern), pattern_shares(full)
    for symbol, share in theirs.items():
        if abs(mine[symbol] - share) > SHARE_TOLERANCE:
            return f"share of {symbol!r} {mine[symbol]:.3f}, release {share:.3f}"
    return None


def _smaller_complaint(full: Any, value: Any, key: str) -> str | None:
    if full is None or value is None:
        return f"{key} present in only one of release and proxy"
    if not isinstance(value, int) or not 0 < value < full:
        return f"{value!r} is not a positive count below the release's {full}"
    return None


def _is_deletion(parent: str, child: str) -> bool:
    """Whether ``child`` is ``parent`` with some characters deleted (a depth-pruned pattern)."""
    rest = iter(parent)
    return all(c in rest for c in child)


def _derived_complaint(parent: str, layers: int, full: str, pattern: Any) -> str | None:
    if not isinstance(pattern, str) or not pattern:
        return "no layer pattern"
    if not _is_deletion(parent, pattern):
        return f"not the parent proxy's {parent!r} with layers deleted"
    if len(pattern) != layers:
        return f"{len(pattern)} layers, the release's depth ratio gives {layers}"
    if (pattern[0], pattern[-1]) != (full[0], full[-1]):
        return f"starts/ends with {pattern[0]}/{pattern[-1]}, release {full[0]}/{full[-1]}"
    return None


def _derive_rules(
    full: dict[str, Any], parent: tuple[dict[str, Any], dict[str, Any]], proxy: dict[str, Any]
) -> dict[str, Rule]:
    """A proxy derived by pruning (``derive:``) takes its shape from its parent proxy by the
    release's own child/parent ratios, not from the tiny recipe: hidden and FFN widths scaled,
    the head counts the parent's (both releases keep them), the pattern a deletion of the
    parent proxy's at the release's depth ratio."""
    parent_full, parent_proxy = parent
    fm, pfm, ppm = full["model"], parent_full["model"], parent_proxy["model"]
    rules: dict[str, Rule] = {}
    for key in ("hidden_size", "intermediate_size"):
        rules[f"model.{key}"] = Rule(
            "derived",
            round(ppm[key] * fm[key] / pfm[key]),
            why=f"the parent proxy's {ppm[key]} x the release's {fm[key]}/{pfm[key]}",
        )
    for key in ("mamba_num_heads", "num_attention_heads", "num_key_value_heads", "head_dim"):
        if fm.get(key) == pfm.get(key):
            rules[f"model.{key}"] = Rule(
                "derived", ppm[key], why="kept from the parent proxy, as the release keeps it"
            )
    depth = round(
        len(ppm["hybrid_override_pattern"])
        * len(fm["hybrid_override_pattern"])
        / len(pfm["hybrid_override_pattern"])
    )
    rules["model.hybrid_override_pattern"] = Rule(
        "chosen",
        check=lambda p: _derived_complaint(
            ppm["hybrid_override_pattern"], depth, fm["hybrid_override_pattern"], p
        ),
    )
    name = parent_proxy["name"]
    rules["derive.parent.recipe"] = Rule("proxy", name, why="the parent release's proxy")
    rules["derive.parent.stage"] = Rule("proxy", "pretrain", why="its pretrained model")
    rules["derive.data.stage"] = Rule("proxy", "pack", why="the parent's blend, packed")
    for key in ("parent", "data"):
        rules[f"derive.{key}.manifest_sha256"] = Rule(
            "chosen",
            check=lambda v: (
                None if isinstance(v, str) and len(v) == 64 else "not a pinned manifest sha256"
            ),
            why="the pinned parent run",
        )
    for key, value, why in (
        ("calibration_sequences", 32, "the schema's default calibration set at proxy scale"),
        ("temperature", 1.0, "Minitron's logit KD at T=1"),
        ("kd_weight", 1.0, "Minitron's logit-only KD loss"),
    ):
        rules[f"derive.{key}"] = Rule("proxy", value, why=why)
    return rules


def published_post_training(release: str) -> list[str]:
    """The steps of ``release``'s published post-training sequence openrecipe has a stage for,
    in the published order (``SFT -> GRPO -> GenRM RLHF -> DPO`` gives sft, rl, dpo); empty
    when the sequence is unpublished."""
    from openrecipe.fidelity import DATA_FILE, load_published

    row = load_published(DATA_FILE).get(release, {}).get("post_training") or {}
    names = [step.strip() for step in str(row.get("value", "")).split("->")]
    return [STEP_BY_PUBLISHED_NAME[n] for n in names if n in STEP_BY_PUBLISHED_NAME]


def _post_training_rules(full: dict[str, Any], proxy: dict[str, Any]) -> dict[str, Rule]:
    """A proxy that declares ``post_training`` runs the release's published sequence (the steps
    openrecipe has), with DPO at ``PROXY_DPO``'s CPU scale."""
    if proxy.get("post_training") is None:
        return {}
    rules = {
        "post_training": Rule(
            "derived",
            published_post_training(full["name"]),
            why="the release's published post-training steps that openrecipe has a stage for",
        )
    }
    if proxy.get("dpo") is not None:
        for dotted, value in flatten(PROXY_DPO, "dpo").items():
            rules[dotted] = Rule("proxy", value, why="DPO at CPU scale (proxy_rules.PROXY_DPO)")
    return rules


def _pretrain_rules(
    full: dict[str, Any], tiny: dict[str, Any], proxy: dict[str, Any]
) -> dict[str, Rule]:
    fp, tp = full["pretrain"], tiny["pretrain"]
    full_layers = len(full["model"]["hybrid_override_pattern"])
    layers = len(proxy["model"]["hybrid_override_pattern"])
    rules: dict[str, Rule] = {}
    for key in ("bf16_first_layers", "bf16_last_layers"):
        rules[f"pretrain.{key}"] = Rule(
            "derived",
            proxy_bf16_layers(fp[key], full_layers, layers),
            why=f"the release's {fp[key]} of {full_layers} layers scaled to {layers}",
        )
    ratio = fp["optimizer"]["min_lr"] / fp["optimizer"]["lr"]
    rules["pretrain.optimizer.min_lr"] = Rule(
        "derived",
        tp["optimizer"]["lr"] * ratio,
        why=f"the tiny recipe's peak LR times the release's min/max ratio {ratio:g}",
    )
    gbs = tp["micro_batch_size"] * fp["grad_accum"]
    rules["pretrain.global_batch_size"] = Rule("derived", gbs, why="micro_batch_size x grad_accum")
    rules["pretrain.tokens"] = Rule(
        "derived",
        tp["steps"] * gbs * tp["seq_length"],
        why="steps x global_batch_size x seq_length",
    )
    return rules


def proxy_rules(
    full: dict[str, Any],
    tiny: dict[str, Any],
    proxy: dict[str, Any],
    parent: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> dict[str, Rule]:
    """The rule for every field a proxy of ``full`` must have (all three resolved recipes).
    A proxy with ``derive:`` needs ``parent``: (the parent release, the parent proxy)."""
    from openrecipe.evaluate.envelope import proxy_envelope

    rules: dict[str, Rule] = {}
    for dotted, value in flatten(full).items():
        if not _under(dotted, FROM_TINY):
            rules[dotted] = Rule("kept", value, why="kept from the release")
    for dotted, value in flatten(tiny).items():
        if _under(dotted, FROM_TINY):
            rules[dotted] = Rule("tiny", value, why="the tiny recipe's CPU scale")
    rules.update(_model_rules(full, tiny, proxy))
    rules.update(_pretrain_rules(full, tiny, proxy))
    if proxy.get("derive") is not None:
        if parent is None:
            raise ValueError(f"{proxy.get('name')}: a derived proxy is checked against its parent")
        rules.update(_derive_rules(full, parent, proxy))
    rules.update(_post_training_rules(full, proxy))
    rules["data.phases"] = Rule(
        "derived",
        proxy_phases(full["data"]["phases"], full["data"]["sources"]),
        why="the release's phase weights summed by source role (releases.PROXY_SOURCE_BY_ROLE)",
    )
    rules["name"] = Rule("proxy", f"{full['name']}_proxy", why="<release>_proxy")
    rules["backend"] = Rule("proxy", PROXY_BACKEND, why="a proxy runs here")
    rules["release.scale"] = Rule("proxy", "proxy", why="a proxy")
    rules["release.envelope"] = Rule(
        "derived",
        proxy_envelope(proxy.get("eval", {}).get("tasks", [])),
        why="evaluate.envelope.proxy_envelope of the proxy's eval.tasks",
    )
    pattern = proxy["model"].get("hybrid_override_pattern", "")
    head = (
        f"CPU proxy of {full['release']['name']}: {len(pattern)}-layer pattern '{pattern}' "
        f"(release: {len(full['model']['hybrid_override_pattern'])} layers)"
    )
    rules["release.description"] = Rule(
        "proxy",
        check=lambda d: (
            None if isinstance(d, str) and d.startswith(head) else f"does not start with {head!r}"
        ),
    )
    return rules


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
        )
    return bool(a == b and type(a) is type(b))


def proxy_mismatches(
    full: dict[str, Any],
    tiny: dict[str, Any],
    proxy: dict[str, Any],
    parent: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> list[str]:
    """Every field of ``proxy`` that breaks its rule, missing or unaccounted for, one line each
    (``field: proxy has X, rule gives Y (why)``); empty when the proxy is what the rules make."""
    rules = proxy_rules(full, tiny, proxy, parent)
    have = flatten(proxy)
    problems = []
    for dotted in sorted(set(rules) | set(have)):
        rule = rules.get(dotted)
        if rule is None:
            problems.append(f"{dotted}: no proxy rule covers this field ({have[dotted]!r})")
            continue
        if dotted not in have:
            problems.append(f"{dotted}: missing, rule gives {rule.expected!r} ({rule.why})")
            continue
        value = have[dotted]
        if rule.check is not None:
            complaint = rule.check(value)
            if complaint:
                problems.append(f"{dotted}: {value!r}: {complaint} ({rule.source})")
        elif not _same(value, rule.expected):
            problems.append(
                f"{dotted}: proxy has {value!r}, rule gives {rule.expected!r} "
                f"({rule.source}: {rule.why})"
            )
    return problems
