"""The data card of a run (``data_card.md``) and the blend plot (``blend.png``).

Built by the report stage from verified stage directories only: each curation stage's
``accounting.json`` (documents in / kept / dropped by reason / quarantined per step and source,
and documents and characters per source, language and licence before and after the stage),
blend's ``plan.json`` and ``excluded.jsonl``, and pack's ``shares.json`` and ``sidecar.jsonl``.
Token counts are exact: after each curation stage, every kept document counted with the run's
own tokenizer (trained later, at the tokenizer stage, so the card counts in the units the model
trains on; a document's text does not change after ``curate``'s normalisation, so one pass over
curate's output counts every later stage too); after blend (every document of every stream,
``stream_tokens``); and in the packed training set (the sidecar's segments, joined to the blend
streams for each document's language and licence). The raw input of ``curate`` is counted in
documents and characters only: its documents are not yet normalised, and the ones curate drops
are not kept with their text.

:func:`check_accounting` re-derives every balance the card shows and raises on any that does
not hold, so a card is only written for a run whose numbers reconcile.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from openrecipe.registry import stages_where

CURATION_STAGES = tuple(stages_where(curation=True))


def load_accounting(dirs: dict[str, Path]) -> list[tuple[str, dict[str, Any]]]:
    """(stage, accounting) for the curation stages present, in chain order."""
    return [
        (stage, json.loads((dirs[stage] / "accounting.json").read_text(encoding="utf-8")))
        for stage in CURATION_STAGES
        if stage in dirs
    ]


def _sum_profile(rows: list[dict[str, Any]], key: str) -> dict[str, tuple[int, int]]:
    docs: Counter = Counter()
    chars: Counter = Counter()
    for row in rows:
        docs[row[key]] += row["docs"]
        chars[row[key]] += row["chars"]
    return {k: (docs[k], chars[k]) for k in sorted(docs)}


def check_accounting(chain: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Every problem found (empty when all reconciles): per step and source ``in == kept +
    dropped + quarantined``, step-to-step and stage-to-stage continuity, and the profile
    totals equal to the ledger's."""
    problems = []
    previous_out: dict[str, int] | None = None
    for stage, acc in chain:
        order = acc["order"]
        for step in order:
            rows = {**acc["steps"][step]["sources"], "TOTAL": acc["steps"][step]["total"]}
            for source, c in rows.items():
                if sum(c["dropped"].values()) != c["dropped_total"]:
                    problems.append(f"{stage}/{step}/{source}: dropped reasons != dropped_total")
                if c["in"] != c["kept"] + c["dropped_total"] + c["quarantined"]:
                    problems.append(f"{stage}/{step}/{source}: in != kept + dropped + quarantined")
        for before, after in zip(order, order[1:], strict=False):
            for source, c in acc["steps"][before]["sources"].items():
                if c["kept"] != acc["steps"][after]["sources"][source]["in"]:
                    problems.append(f"{stage}: {before} kept != {after} in for {source}")
        first = acc["steps"][order[0]]["sources"]
        last = acc["steps"][order[-1]]["sources"]
        profile_in = {k: v[0] for k, v in _sum_profile(acc["profile_in"], "source").items()}
        profile_out = {k: v[0] for k, v in _sum_profile(acc["profile_out"], "source").items()}
        for source, c in first.items():
            if profile_in.get(source, 0) != c["in"]:
                problems.append(f"{stage}: profile_in of {source} != ledger in")
        for source, c in last.items():
            if profile_out.get(source, 0) != c["kept"]:
                problems.append(f"{stage}: profile_out of {source} != ledger kept")
        stage_in = {s: c["in"] for s, c in first.items()}
        if previous_out is not None and stage_in != previous_out:
            problems.append(
                f"{stage}: documents in {stage_in} != previous stage out {previous_out}"
            )
        previous_out = {s: c["kept"] for s, c in last.items()}
    return problems


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return lines


def _reasons(dropped: dict[str, int]) -> str:
    return ", ".join(f"{r} {n}" for r, n in sorted(dropped.items())) or "-"


def _read_labelled(path: Path) -> list[tuple[str, dict[str, str]]]:
    """(id, {source, lang, license}) of each document in a stage's ``docs.jsonl``."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            rows.append((doc["id"], {k: doc[k] for k in ("source", "lang", "license")}))
    return rows


def stage_tokens(dirs: dict[str, Path], stages: list[str]) -> dict[str, dict[str, dict[str, int]]]:
    """{stage: {"source"|"lang"|"license": {value: tokens}}} of each stage's kept documents,
    counted with the run's tokenizer (``dirs["tokenizer"]``) on curate's normalised texts."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(dirs["tokenizer"] / "tokenizer.json"))
    ids, texts = [], []
    with open(dirs["curate"] / "docs.jsonl", encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            ids.append(doc["id"])
            texts.append(doc["text"])
    encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
    per_doc = {doc_id: len(enc.ids) for doc_id, enc in zip(ids, encoded, strict=True)}
    result = {}
    for stage in stages:
        by: dict[str, Counter] = {"source": Counter(), "lang": Counter(), "license": Counter()}
        for doc_id, labels in _read_labelled(dirs[stage] / "docs.jsonl"):
            for key, counter in by.items():
                counter[labels[key]] += per_doc[doc_id]
        result[stage] = {k: dict(sorted(c.items())) for k, c in by.items()}
    return result


def packed_tokens(pack: Path, blend: Path) -> dict[str, dict[str, int]]:
    """Trained tokens per source, language and licence, exactly, from the sidecar."""
    meta: dict[str, tuple[str, str]] = {}
    for stream in sorted((blend / "streams").glob("*.jsonl")):
        with open(stream, encoding="utf-8") as handle:
            for line in handle:
                doc = json.loads(line)
                meta[doc["id"]] = (doc["lang"], doc["license"])
    by: dict[str, Counter] = {"source": Counter(), "lang": Counter(), "license": Counter()}
    with open(pack / "sidecar.jsonl", encoding="utf-8") as handle:
        for line in handle:
            for doc_id, source, _start, n_tokens in json.loads(line)["segments"]:
                lang, license_ = meta[doc_id]
                by["source"][source] += n_tokens
                by["lang"][lang] += n_tokens
                by["license"][license_] += n_tokens
    return {k: dict(sorted(c.items())) for k, c in by.items()}


# The policies the curate stage applies to hostile text, stated wherever its edits are shown.
BIDI_POLICY = (
    "Bidirectional controls (U+202A-U+202E embeddings and overrides, U+2066-U+2069 isolates) are "
    "**stripped** from every document at curate's normalize step, not quarantined: they change "
    "only how text is displayed, never its logical order, so a reader could be shown other words "
    'than the model trains on ("Trojan Source"), while real right-to-left text uses them too.'
)
REPETITION_POLICY = (
    "Gopher's repetition rules (Rae et al. 2021, Table A1; reasons `dup_para_frac`, "
    "`dup_para_char_frac`, `dup_line_frac`, `dup_line_char_frac`, `top_N_gram`, "
    "`duplicated_N_n_grams` in curate's filter step) drop documents that repeat their own "
    "paragraphs, lines or n-grams; the thresholds are `data.curation.repetition` in the recipe."
)


def _edits_section(chain: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The hostile-text policies and the counted text edits they made (documents and characters
    per source); nothing when no stage declares edits."""
    rows = [
        [stage, step, name, source, c["docs"], c["chars"]]
        for stage, acc in chain
        for step, by_name in acc.get("edits", {}).items()
        for name, tallies in by_name.items()
        for source, c in tallies.items()
    ]
    if not rows:
        return []
    lines = ["", "## Hostile text", "", REPETITION_POLICY, "", BIDI_POLICY, "Stripped:", ""]
    return lines + _table(["stage", "step", "edit", "source", "docs", "chars removed"], rows)


def _steps_rows(chain: list[tuple[str, dict[str, Any]]]) -> list[list[Any]]:
    """One row per stage, step and source (and the step's total) of the accounting table."""
    rows: list[list[Any]] = []
    for stage, acc in chain:
        for step in acc["order"]:
            for source, c in [
                *acc["steps"][step]["sources"].items(),
                ("**all**", acc["steps"][step]["total"]),
            ]:
                rows.append([stage, step, source, c["in"], c["kept"], c["dropped_total"],
                             _reasons(c["dropped"]), c["quarantined"]])  # fmt: skip
    return rows


def _profile_sections(
    chain: list[tuple[str, dict[str, Any]]], tokens_after: dict[str, Any]
) -> list[str]:
    """Per source, language and licence: documents / characters before and after each stage,
    and tokens after each stage where the run's tokenizer is there."""
    lines: list[str] = []
    for key, title in (("source", "source"), ("lang", "language"), ("license", "licence")):
        lines += ["", f"## Per {title}: documents / characters before and after each stage", ""]
        keys = sorted(
            {row[key] for _, acc in chain for p in ("profile_in", "profile_out") for row in acc[p]}
        )
        header = (
            [title]
            + [f"{stage} in" for stage, _ in chain[:1]]
            + [f"after {stage}" for stage, _ in chain]
        )
        table_rows = []
        for k in keys:
            cells = [k]
            first = _sum_profile(chain[0][1]["profile_in"], key).get(k, (0, 0))
            cells.append(f"{first[0]} / {first[1]}")
            for _stage, acc in chain:
                d, c = _sum_profile(acc["profile_out"], key).get(k, (0, 0))
                cells.append(f"{d} / {c}")
            table_rows.append(cells)
        lines += _table(header, table_rows)
        if tokens_after:
            lines += ["", f"Tokens per {title} after each stage (the run's tokenizer):", ""]
            lines += _table(
                [title] + [f"after {stage}" for stage in tokens_after],
                [[k] + [tokens_after[stage][key].get(k, 0) for stage in tokens_after]
                 for k in keys],
            )  # fmt: skip
    return lines


def _blend_section(dirs: dict[str, Path], figures: dict[str, Any]) -> list[str]:
    """The blend: exclusion rules, streams, realised shares and trained tokens (``figures``
    gains the trained tokens and per-phase tokens where the pack is there)."""
    lines: list[str] = []
    plan = json.loads((dirs["blend"] / "plan.json").read_text(encoding="utf-8"))
    lines += ["", "## Blend", "", f"Exclusion rules: `{json.dumps(plan['exclude_rules'])}`", ""]
    shares = {}
    if "pack" in dirs:
        shares = json.loads((dirs["pack"] / "shares.json").read_text(encoding="utf-8"))
    rows = []
    tokens = packed_tokens(dirs["pack"], dirs["blend"]) if shares else {}
    trained = tokens.get("source", {})
    for source, p in sorted(plan["sources"].items()):
        s = shares.get("sources", {}).get(source, {})
        rows.append([source, p["excluded_docs"], p["docs"], p["chars"],
                     s.get("stream_tokens", "-"), trained.get(source, "-" if not shares else 0),
                     s.get("epochs", "-")])  # fmt: skip
    lines += _table(
        ["source", "excluded docs", "docs in stream", "chars", "stream tokens",
         "trained tokens", "epochs"], rows
    )  # fmt: skip
    if plan.get("lang_streams"):
        lines += ["", "Language streams (`lang:<code>` weights; documents of the sources no",
                  "phase names):", ""]  # fmt: skip
        rows = []
        for key, p in sorted(plan["lang_streams"].items()):
            s = shares.get("sources", {}).get(key, {})
            members = ", ".join(f"{k} {n}" for k, n in p["docs_per_source"].items())
            rows.append([key, p["docs"], p["chars"], members or "-",
                         s.get("stream_tokens", "-"), s.get("tokens", "-"),
                         s.get("epochs", "-")])  # fmt: skip
        lines += _table(
            ["key", "docs in stream", "chars", "docs per source", "stream tokens",
             "trained tokens", "epochs"], rows
        )  # fmt: skip
    if plan.get("unweighted_docs"):
        lines += ["", "Documents no weight draws (their source and language are unweighted): "
                  + ", ".join(f"{k} {n}" for k, n in plan["unweighted_docs"].items())]  # fmt: skip
    if shares:
        lines += ["", "| phase | key | requested weight | realised share | tokens | wraps |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for phase in shares["phases"]:
            for source, s in sorted(phase["sources"].items()):
                lines.append(f"| {phase['name']} | {source} | {s['requested_weight']} | "
                             f"{s['share']} | {s['tokens']} | {s['wraps']} |")  # fmt: skip
        figures["trained_tokens"] = tokens
        for key, title in (("lang", "language"), ("license", "licence")):
            lines += ["", f"Trained tokens per {title} (from the sidecar):", ""]
            lines += _table([title, "tokens"], [[k, v] for k, v in tokens[key].items()])
        lines += ["", "![blend](blend.png)"]
        figures["phases"] = {
            p["name"]: {s: v["tokens"] for s, v in sorted(p["sources"].items())}
            for p in shares["phases"]
        }
    return lines


def data_card(name: str, dirs: dict[str, Path]) -> tuple[str, dict[str, Any]]:
    """(markdown, the figures it shows as JSON-able data)."""
    chain = load_accounting(dirs)
    problems = check_accounting(chain)
    if problems:
        raise AssertionError(
            "data card: accounting does not reconcile:\n  " + "\n  ".join(problems)
        )
    lines = [f"# Data card: {name}", ""]
    lines += [
        "Every document's fate, step by step: `in = kept + dropped + quarantined` holds for every",
        "step and source below (checked when this card was written). Documents and characters",
        "at every step; tokens (the run's own tokenizer) after each stage.",
        "",
        "## Steps",
        "",
    ]
    lines += _table(
        ["stage", "step", "source", "in", "kept", "dropped", "dropped by reason", "quarantined"],
        _steps_rows(chain),
    )
    lines += _edits_section(chain)
    figures: dict[str, Any] = {"stages": {}}
    tokens_after = {}
    if "tokenizer" in dirs and "curate" in dirs:
        tokens_after = stage_tokens(dirs, [stage for stage, _ in chain])
        figures["tokens_after_stage"] = tokens_after
    lines += _profile_sections(chain, tokens_after)
    for stage, acc in chain:
        figures["stages"][stage] = {
            "in": acc["steps"][acc["order"][0]]["total"]["in"],
            "kept": acc["steps"][acc["order"][-1]]["total"]["kept"],
        }
    if "blend" in dirs:
        lines += _blend_section(dirs, figures)
    lines.append("")
    return "\n".join(lines), figures


def plot_blend(shares_path: Path, out: Path, title: str) -> None:
    """Stacked bars of realised tokens per phase and source, with the requested shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shares = json.loads(shares_path.read_text(encoding="utf-8"))
    phases = shares["phases"]
    sources = sorted({s for p in phases for s in p["sources"]})
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(phases), 3.6))
    bottoms = [0] * len(phases)
    for source in sources:
        values = [p["sources"].get(source, {}).get("tokens", 0) for p in phases]
        ax.bar([p["name"] for p in phases], values, bottom=bottoms, label=source)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    ax.set_ylabel("trained tokens")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=110, metadata={"Software": None})  # byte-identical across runs
    plt.close(fig)
