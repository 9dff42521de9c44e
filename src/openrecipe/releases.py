"""The released-model recipes and their CPU proxies: how a proxy derives from its release, and the
``openrecipe releases`` table.

A proxy (``recipes/<release>_proxy.yaml``, ``extends: <release>``) keeps what defines the release
and shrinks what costs compute:

- the layer pattern: same layer types, in the same ordering style, at (nearly) the same shares;
- the schedule shape (warmup and decay fractions, decay shape, min/max LR ratio) and precision
  recipe (BF16 first/last layers scaled to the shorter pattern, at least one when the release
  has any);
- the blend proportions: each full-size source has a ``role``; the proxy's CPU sources (the tiny
  recipe's) each stand for the roles in ``PROXY_SOURCE_BY_ROLE``, and a proxy phase's weight for a
  CPU source is the sum of the release's weights of the sources whose role maps to it.

``openrecipe.proxy_rules`` checks every field of a proxy against these rules (and the CPU scale
it takes from the tiny recipe), naming each field that drifted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# full-size source role -> the tiny recipe's CPU source standing in for it at proxy scale
PROXY_SOURCE_BY_ROLE: dict[str, str] = {
    "web": "brown",  # mixed-genre American English prose: the closest to medium-quality crawl
    "web_hq": "austen",  # edited literary prose: high-quality text
    "multilingual": "brown",  # no non-English CPU source is pinned; counted with general web
    "code": "python_stdlib",
    "math": "synthetic_math",
    "sft": "synthetic_math",  # SFT-style pretraining data is mostly worked STEM problems
}

LAYER_SYMBOLS = "M-*E"


def pattern_shares(pattern: str) -> dict[str, float]:
    """Share of each layer type (``M`` Mamba-2, ``-`` MLP, ``*`` attention, ``E`` MoE)."""
    return {s: pattern.count(s) / len(pattern) for s in LAYER_SYMBOLS}


def proxy_bf16_layers(full_count: int, full_layers: int, proxy_layers: int) -> int:
    """BF16 first/last layer count scaled to the proxy's depth; never zero when the release keeps
    any layer in BF16 (the precision recipe's shape)."""
    if full_count == 0:
        return 0
    return max(1, round(full_count * proxy_layers / full_layers))


def proxy_phases(
    phases: list[dict[str, Any]], sources: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The release's blend phases with weights mapped onto the proxy's CPU sources by role."""
    role = {s["name"]: s["role"] for s in sources}
    mapped = []
    for phase in phases:
        weights: dict[str, float] = {}
        for name, weight in phase["weights"].items():
            target = PROXY_SOURCE_BY_ROLE[role[name]]
            weights[target] = weights.get(target, 0.0) + weight
        mapped.append(
            {
                "name": phase["name"],
                "fraction": phase["fraction"],
                "weights": {k: round(v, 6) for k, v in sorted(weights.items())},
            }
        )
    return mapped


def _parameters(recipe: dict[str, Any]) -> dict[str, int]:
    """Total and active (per token) parameters from the architecture, on the meta device."""
    from openrecipe.model.build import nemotronh_config
    from openrecipe.model.params import parameter_counts

    counts = parameter_counts(nemotronh_config(recipe["model"], recipe["tokenizer"]["vocab_size"]))
    return {"total": counts["total"], "active": counts["active"]}


def human_count(n: int) -> str:
    """12.3B, 569K: three significant figures with a decimal suffix."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return str(n)


def release_rows(project: Path, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """One row per full-size release: its proxy and the status of each."""
    from openrecipe.recipe import load_recipe

    rows = []
    recipes_dir = project / "recipes"
    bench_file = project / "results" / "bench" / "proxies.json"
    bench = (
        json.loads(bench_file.read_text(encoding="utf-8"))["proxies"]
        if bench_file.is_file()
        else {}
    )
    for path in sorted(recipes_dir.glob("*.yaml")):
        if names is not None and path.stem not in names:
            continue
        recipe = load_recipe(path, project=project).data
        if recipe["release"]["scale"] != "full":
            continue
        proxy_path = recipes_dir / f"{path.stem}_proxy.yaml"
        proxy = load_recipe(proxy_path, project=project).data if proxy_path.is_file() else None
        rows.append(
            {
                "recipe": path.stem,
                "release": recipe["release"]["name"],
                "layers": len(recipe["model"]["hybrid_override_pattern"]),
                "precision": recipe["pretrain"]["precision"],
                "tokens": recipe["pretrain"].get("tokens"),
                "status": "plan only (megatron)"
                if recipe["backend"] == "megatron"
                else "runs here",
                # computed from the model section (model/params.py), not the published figure
                "params": _parameters(recipe),
                "unverified": len(recipe["release"]["unverified"]),
                "unverified_fields": list(recipe["release"]["unverified"]),
                "proxy": proxy_path.stem if proxy else None,
                "proxy_params": _parameters(proxy) if proxy else None,
                "proxy_status": _proxy_status(proxy) if proxy else "missing",
                # measured by bench/proxies.py (results/bench/proxies.json), when it has run
                "proxy_wall_s": bench.get(proxy_path.stem, {}).get("wall_s"),
            }
        )
    return rows


def _proxy_status(proxy: dict[str, Any]) -> str:
    precision = proxy["pretrain"]["precision"]
    if proxy["backend"] != "reference":
        return f"plan only ({proxy['backend']})"
    return "runs here" if precision == "bf16" else f"runs here ({precision} emulated)"


def _params_cell(params: dict[str, int] | None) -> str:
    if params is None:
        return "-"
    total = human_count(params["total"])
    if params["active"] == params["total"]:
        return total
    return f"{total} ({human_count(params['active'])} active)"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The table, then each release's unverified fields by name."""
    header = [
        "recipe",
        "release",
        "params",
        "layers",
        "precision",
        "tokens",
        "status",
        "unverified",
        "proxy",
        "proxy params",
        "proxy status",
        "proxy wall",
    ]
    body = [
        [
            r["recipe"],
            r["release"],
            _params_cell(r["params"]),
            str(r["layers"]),
            r["precision"],
            f"{r['tokens']:.3g}" if r["tokens"] else "-",
            r["status"],
            f"{r['unverified']} fields",
            r["proxy"] or "-",
            _params_cell(r["proxy_params"]),
            r["proxy_status"],
            f"{r['proxy_wall_s']:.0f}s" if r["proxy_wall_s"] is not None else "not measured",
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", "params: computed from each recipe's model section (active: per token, MoE)."]
    lines.append("unverified fields (values no primary source confirms; release.unverified):")
    for r in rows:
        lines.append(f"  {r['recipe']}: {', '.join(r['unverified_fields']) or 'none'}")
    return "\n".join(lines)
