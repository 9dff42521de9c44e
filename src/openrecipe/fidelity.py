"""How faithfully each full-size recipe encodes its release: ``openrecipe releases --fidelity``.

The published values live in ``published_releases.yaml`` beside this module (package data), one
row per release and field, each with the source it was read from (an arXiv id with its section
or table, a model card, a repository file), so a maintainer adds a published value by adding a
row, no code. This module owns the other half: the catalogue of fields (``FIELDS``), each
mapped to the recipe's dotted path, to a named function that derives the value from the recipe
(warm-up tokens, the FP8 scaling the Megatron plan compiles to), or marked *not expressible*
when no recipe field can hold it yet (derivation by pruning, long-context phases, checkpoint
merging, RLHF). Every field is shown for every release, so nothing a recipe cannot say is hidden.

Statuses, per release and field:

- ``matched``: the recipe's value equals the published one (numbers within the row's relative
  ``tolerance``, default 1e-6: sources round, e.g. "8.4B warm-up tokens");
- ``differs``: a published value the recipe does not encode (corrections not yet applied);
- ``unpublished``: no primary source gives the value (the recipe's is an inference);
- ``unverified``: primary sources disagree (the row carries the ``conflicting`` value and its
  source), so neither can be called the published one;
- ``not expressible``: published, but the recipe schema has no field for it yet.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from openrecipe.errors import RecipeError

DATA_FILE = Path(__file__).resolve().parent / "published_releases.yaml"

STATUSES = ("matched", "differs", "unpublished", "unverified", "not expressible")

# A source is an arXiv paper (id, then where in it) or an address (model card, repository file).
SOURCE_RE = re.compile(r"^(arXiv \d{4}\.\d{4,5}\b|https://\S+)")

ROW_KEYS = frozenset({"value", "source", "tolerance", "note", "conflicting"})


class PublishedDataError(RecipeError):
    """``published_releases.yaml`` names an unknown release or field, or a row lacks a source."""


class NotExpressible:
    """The recipe schema has no field for this (shown, never hidden)."""

    def __repr__(self) -> str:
        return "not expressible"


NOT_EXPRESSIBLE = NotExpressible()


# --- values derived from a recipe by a named function ----------------------------------------


def layer_counts(recipe: dict[str, Any]) -> str:
    """Mamba-2 / MLP / attention / MoE layer counts ("24/24/4/0"), as papers publish them when
    they do not print the pattern."""
    pattern = recipe["model"]["hybrid_override_pattern"]
    return "/".join(str(pattern.count(s)) for s in "M-*E")


def num_layers(recipe: dict[str, Any]) -> int:
    """Decoder layers = the pattern's length (MTP layers not counted)."""
    return len(recipe["model"]["hybrid_override_pattern"])


def warmup_tokens(recipe: dict[str, Any]) -> float:
    """Pretraining warm-up in tokens: ``schedule.warmup_fraction`` x ``pretrain.tokens``."""
    pretrain = recipe["pretrain"]
    return pretrain["schedule"]["warmup_fraction"] * pretrain["tokens"]


def decay_tokens(recipe: dict[str, Any]) -> float:
    """Tokens of the WSD decay: ``schedule.decay_fraction`` x ``pretrain.tokens``."""
    pretrain = recipe["pretrain"]
    return pretrain["schedule"]["decay_fraction"] * pretrain["tokens"]


def phase_fractions(recipe: dict[str, Any]) -> list[float]:
    """The share of pretraining tokens of each data phase, in order."""
    return [phase["fraction"] for phase in recipe["data"]["phases"]]


def phase_count(recipe: dict[str, Any]) -> int:
    """How many data phases (blends) pretraining runs through."""
    return len(recipe["data"]["phases"])


# The Megatron plan's precision flags -> the scaling they select, in the words rows publish.
SCALING_BY_FLAGS: dict[tuple[tuple[str, str], ...], str] = {
    (): "bf16",
    (("--fp8-format", "hybrid"), ("--fp8-recipe", "tensorwise")): (
        "fp8 per-tensor current scaling, E4M3 forward, E5M2 gradients"
    ),
    (("--fp8-format", "e4m3"), ("--fp8-recipe", "blockwise")): (
        "fp8 blockwise, E4M3 everywhere, 128x128 weights, 1x128 activations"
    ),
    (("--fp4-format", "e2m1"), ("--fp4-recipe", "nvfp4")): (
        "nvfp4, E2M1 in 16-element blocks, E4M3 block scales, FP32 tensor scale"
    ),
}


def precision_scaling(recipe: dict[str, Any]) -> str:
    """The quantisation format and scaling granularity the recipe trains with at full scale:
    read from the flags the Megatron plan compiles (``megatron_plan._precision_args``), so this
    reports what would run, not what a comment says."""
    from openrecipe.model.megatron_plan import _precision_args

    args: list[str] = []
    _precision_args(recipe["pretrain"], args)
    names = ("--fp8-format", "--fp8-recipe", "--fp4-format", "--fp4-recipe")
    flags = tuple((a, args[i + 1]) for i, a in enumerate(args) if a in names)
    return SCALING_BY_FLAGS.get(flags, " ".join(f"{a} {v}" for a, v in flags))


POST_TRAINING_LABELS = {"sft": "SFT", "rl": "GRPO", "dpo": "DPO"}


def post_training(recipe: dict[str, Any]) -> str:
    """The post-training stages the workflow runs after pretraining: the declared
    ``post_training`` sequence (docs/post-training.md), or without one sft, rl/GRPO."""
    declared = recipe.get("post_training")
    if declared is not None:
        return " -> ".join(POST_TRAINING_LABELS.get(s, s) for s in declared) or "none"
    stages = [name for name, key in (("SFT", "sft"), ("GRPO", "rl")) if recipe.get(key)]
    return " -> ".join(stages) or "none"


def sft_warmup_steps(recipe: dict[str, Any]) -> int:
    """SFT warm-up steps as the trainer computes them: round(warmup_fraction x steps)."""
    sft = recipe["sft"]
    return round(sft["warmup_fraction"] * sft["steps"])


def derivation(recipe: dict[str, Any]) -> str:
    """How the weights come to be: from a released checkpoint (``init``), pruned and distilled
    from a parent recipe's run (``derive``; docs/derive.md), or trained from scratch. The
    full-size recipes carry no ``derive:`` yet (it pins a parent run by manifest hash, and no
    full-size parent has run), so their derivation still reads "trained from scratch"."""
    if recipe.get("init"):
        return f"initialised from {recipe['init'].get('repo', 'a released checkpoint')}"
    if recipe.get("derive"):
        return f"pruned and distilled from recipe {recipe['derive']['parent']['recipe']}"
    return "trained from scratch"


@dataclass(frozen=True)
class Field:
    """One published property of a release and where the recipe holds it."""

    group: str
    path: str | None = None
    """Dotted recipe path holding the value."""
    derive: Callable[[dict[str, Any]], Any] | None = None
    """Or a function computing it from the resolved recipe."""
    missing: str = ""
    """Or, when neither: why no recipe field can hold it yet."""

    @property
    def how(self) -> str:
        """Where the recipe's value comes from, for the table's reader."""
        if self.path:
            return self.path
        if self.derive:
            return f"{self.derive.__module__}.{self.derive.__name__}()"
        return f"not expressible: {self.missing}"

    def ours(self, recipe: dict[str, Any]) -> Any:
        from openrecipe.recipe import get_dotted

        if self.path:
            return get_dotted(recipe, self.path)
        if self.derive:
            return self.derive(recipe)
        return NOT_EXPRESSIBLE


FIELDS: dict[str, Field] = {
    # architecture
    "layers": Field("architecture", derive=num_layers),
    "layer_counts": Field("architecture", derive=layer_counts),
    "layer_pattern": Field("architecture", "model.hybrid_override_pattern"),
    "hidden_size": Field("architecture", "model.hidden_size"),
    "ffn_hidden_size": Field("architecture", "model.intermediate_size"),
    "attention_heads": Field("architecture", "model.num_attention_heads"),
    "kv_heads": Field("architecture", "model.num_key_value_heads"),
    "attention_head_dim": Field("architecture", "model.head_dim"),
    "mamba_heads": Field("architecture", "model.mamba_num_heads"),
    "mamba_head_dim": Field("architecture", "model.mamba_head_dim"),
    "ssm_state_size": Field("architecture", "model.ssm_state_size"),
    "mamba_groups": Field("architecture", "model.n_groups"),
    "moe_experts": Field("architecture", "model.n_routed_experts"),
    "moe_active_experts": Field("architecture", "model.num_experts_per_tok"),
    "moe_expert_ffn": Field("architecture", "model.moe_intermediate_size"),
    "moe_shared_expert_ffn": Field("architecture", "model.moe_shared_expert_intermediate_size"),
    "moe_latent_size": Field("architecture", "model.moe_latent_size"),
    "position_embedding": Field("architecture", "model.position_embedding_type"),
    "vocab_size": Field("architecture", "tokenizer.vocab_size"),
    "init_method_std": Field("architecture", "model.initializer_range"),
    "mtp_layers": Field("mtp", "model.mtp_num_layers"),
    "mtp_loss_scale": Field(
        "mtp", missing="no MTP loss-scale field (Megatron --mtp-loss-scaling-factor)"
    ),
    "mtp_shared_weights": Field("mtp", missing="no field for MTP weights shared between depths"),
    # pretraining
    "derivation": Field("pretraining", derive=derivation),
    "pretraining_tokens": Field("pretraining", "pretrain.tokens"),
    "seq_length": Field("pretraining", "pretrain.seq_length"),
    "global_batch_size": Field("pretraining", "pretrain.global_batch_size"),
    "peak_lr": Field("schedule", "pretrain.optimizer.lr"),
    "min_lr": Field("schedule", "pretrain.optimizer.min_lr"),
    "warmup_tokens": Field("schedule", derive=warmup_tokens),
    "decay_fraction": Field("schedule", "pretrain.schedule.decay_fraction"),
    "decay_tokens": Field("schedule", derive=decay_tokens),
    "decay_shape": Field("schedule", "pretrain.schedule.decay_shape"),
    "data_phases": Field("data", derive=phase_count),
    "data_phase_fractions": Field("data", derive=phase_fractions),
    "precision": Field("precision", "pretrain.precision"),
    "precision_scaling": Field("precision", derive=precision_scaling),
    "bf16_first_layers": Field("precision", "pretrain.bf16_first_layers"),
    "bf16_last_layers": Field("precision", "pretrain.bf16_last_layers"),
    "bf16_modules": Field(
        "precision", missing="precision is per layer only (no per-module QKV/latent/MTP/embedding)"
    ),
    "precision_switch": Field("precision", missing="one precision per run (no late switch)"),
    "long_context": Field("long context", missing="no long-context continued-pretraining phase"),
    "checkpoint_merging": Field("pretraining", missing="no checkpoint-merging step"),
    # post-training
    "post_training": Field("post-training", derive=post_training),
    "sft_steps": Field("post-training", "sft.steps"),
    "sft_batch_size": Field("post-training", "sft.batch_size"),
    "sft_seq_length": Field("post-training", "sft.seq_length"),
    "sft_warmup_steps": Field("post-training", derive=sft_warmup_steps),
    "sft_reasoning_off_fraction": Field("post-training", "sft.reasoning_off_fraction"),
    "sft_truncate_fraction": Field("post-training", "sft.truncate_fraction"),
    "rl_prompts_per_step": Field("post-training", "rl.prompts_per_step"),
    "rl_generations_per_prompt": Field("post-training", "rl.generations_per_prompt"),
    "rl_clip_low": Field("post-training", "rl.clip_low"),
    "rl_clip_high": Field("post-training", "rl.clip_high"),
    "rl_kl_coef": Field("post-training", "rl.kl_coef"),
}


# --- the published data file -------------------------------------------------------------------


def _check_source(where: str, source: Any) -> None:
    if not isinstance(source, str) or not SOURCE_RE.match(source):
        raise PublishedDataError(
            f"{where}: source {source!r}: expected 'arXiv NNNN.NNNNN <section or table>' "
            "or an https:// address (model card, repository file)"
        )


def load_published(path: Path, releases: Iterable[str] | None = None) -> dict:
    """The published values, checked: ``{release: {field: row}}``. ``releases`` (recipe stems
    of full-size recipes) bounds which release names are allowed; every row needs a source."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PublishedDataError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("releases"), dict):
        raise PublishedDataError(f"{path}: expected a mapping with a 'releases' mapping")
    extra_top = set(data) - {"releases", "sources"}
    if extra_top:
        raise PublishedDataError(f"{path}: unknown top-level keys {sorted(extra_top)}")
    for name, source in (data.get("sources") or {}).items():
        _check_source(f"{path.name}: sources.{name}", source)
    known = set(releases) if releases is not None else None
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for release, rows in data["releases"].items():
        where = f"{path.name}: releases.{release}"
        if known is not None and release not in known:
            raise PublishedDataError(
                f"{where}: unknown release (full-size recipes: {', '.join(sorted(known))})"
            )
        if not isinstance(rows, dict):
            raise PublishedDataError(f"{where}: expected a mapping of field -> row")
        for field, row in rows.items():
            at = f"{where}.{field}"
            if field not in FIELDS:
                raise PublishedDataError(f"{at}: unknown field (fields: {', '.join(FIELDS)})")
            if not isinstance(row, dict):
                raise PublishedDataError(f"{at}: expected a mapping with value and source")
            extra = set(row) - ROW_KEYS
            if extra:
                raise PublishedDataError(f"{at}: unknown keys {sorted(extra)}")
            if "value" not in row:
                raise PublishedDataError(f"{at}: missing value")
            if "source" not in row:
                raise PublishedDataError(f"{at}: missing source")
            _check_source(at, row["source"])
            conflict = row.get("conflicting")
            if conflict is not None:
                if not isinstance(conflict, dict) or set(conflict) != {"value", "source"}:
                    raise PublishedDataError(f"{at}.conflicting: expected value and source")
                _check_source(f"{at}.conflicting", conflict["source"])
            tolerance = row.get("tolerance", 1e-6)
            if not isinstance(tolerance, int | float) or not 0 <= tolerance < 1:
                raise PublishedDataError(f"{at}: tolerance {tolerance!r}: expected 0 <= x < 1")
        out[release] = rows
    return out


# --- comparison --------------------------------------------------------------------------------


def same(ours: Any, published: Any, tolerance: float = 1e-6) -> bool:
    """Equal, numbers within a relative tolerance (lists element by element)."""
    if isinstance(ours, list) and isinstance(published, list):
        return len(ours) == len(published) and all(
            same(a, b, tolerance) for a, b in zip(ours, published, strict=True)
        )
    numbers = (int, float)
    if isinstance(ours, numbers) and isinstance(published, numbers):
        if isinstance(ours, bool) or isinstance(published, bool):
            return ours is published
        return math.isclose(ours, published, rel_tol=tolerance, abs_tol=0.0)
    return ours == published


def field_row(name: str, recipe: dict[str, Any], row: dict[str, Any] | None) -> dict[str, Any]:
    """One table row: our value, where it comes from, the published value, its source, status."""
    field = FIELDS[name]
    ours = field.ours(recipe)
    expressible = ours is not NOT_EXPRESSIBLE
    out: dict[str, Any] = {
        "field": name,
        "group": field.group,
        "recipe": field.how,
        "ours": ours if expressible else "not expressible",
        "published": None,
        "source": None,
        "status": "unpublished",
        "note": None,
    }
    unverified_paths = recipe.get("release", {}).get("unverified", [])
    if field.path and any(
        field.path == u or field.path.startswith(u + ".") for u in unverified_paths
    ):
        out["note"] = "listed in release.unverified"
    if row is None:
        return out
    out.update(published=row["value"], source=row["source"], note=row.get("note", out["note"]))
    if row.get("conflicting") is not None:
        out["status"] = "unverified"
        out["conflicting"] = row["conflicting"]
    elif not expressible:
        out["status"] = "not expressible"
    else:
        out["status"] = (
            "matched" if same(ours, row["value"], row.get("tolerance", 1e-6)) else "differs"
        )
    return out


def full_size_recipes(project: Path) -> list[str]:
    """Stems of the full-size recipes (``release.scale: full``), sorted."""
    from openrecipe.recipe import load_recipe

    stems = []
    for path in sorted((project / "recipes").glob("*.yaml")):
        if path.stem.endswith("_proxy") or path.stem in ("tiny", "default"):
            continue
        if load_recipe(path, project=project).data["release"]["scale"] == "full":
            stems.append(path.stem)
    return stems


def fidelity(
    project: Path, names: Iterable[str] | None = None, data_file: Path | None = None
) -> dict[str, dict[str, Any]]:
    """``{recipe stem: {"release", "rows": [...], "counts": {status: n}}}`` for every full-size
    recipe (or those named), every field of ``FIELDS`` in order."""
    from openrecipe.recipe import load_recipe

    stems = full_size_recipes(project)
    published = load_published(data_file or DATA_FILE, stems)
    out = {}
    for stem in stems:
        if names is not None and stem not in names:
            continue
        recipe = load_recipe(project / "recipes" / f"{stem}.yaml", project=project).data
        rows = [field_row(name, recipe, published.get(stem, {}).get(name)) for name in FIELDS]
        counts = {status: sum(r["status"] == status for r in rows) for status in STATUSES}
        out[stem] = {"release": recipe["release"]["name"], "rows": rows, "counts": counts}
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value)


def _source_cell(row: dict[str, Any]) -> str:
    parts = [row["source"]] if row["source"] else []
    if row.get("conflicting"):
        other = row["conflicting"]
        parts.append(f"conflicting: {_cell(other['value'])} ({other['source']})")
    if row["note"]:
        parts.append(row["note"])
    return "; ".join(parts) or "-"


def format_fidelity(table: dict[str, dict[str, Any]]) -> str:
    """Per release, one line per field (ours, published, status, source), then the counts."""
    lines: list[str] = []
    for stem, entry in table.items():
        lines.append(f"{stem} ({entry['release']})")
        body = [
            [
                r["field"],
                _cell(r["ours"]),
                _cell(r["published"]),
                r["status"],
                _source_cell(r),
            ]
            for r in entry["rows"]
        ]
        header = ["field", "recipe", "published", "status", "source"]
        widths = [min(40, max(len(x[i]) for x in [header, *body])) for i in range(4)]
        for line in [header, *body]:
            cells = [
                c if len(c) <= w else c[: w - 3] + "..." for c, w in zip(line, widths, strict=False)
            ]
            lines.append(
                "  "
                + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
                + "  "
                + line[4]
            )
        lines.append("")
    lines.append(summary(table))
    return "\n".join(lines)


def summary(table: dict[str, dict[str, Any]]) -> str:
    """Counts per status per release, one line each."""
    width = max(len(s) for s in table) if table else 0
    lines = ["summary (fields per status):"]
    for stem, entry in table.items():
        counts = ", ".join(f"{n} {s}" for s, n in entry["counts"].items())
        lines.append(f"  {stem.ljust(width)}  {counts}")
    return "\n".join(lines)
