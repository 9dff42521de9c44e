"""Per-document accounting shared by the curation stages.

Every curation stage (curate, langid, fuzzy_dedup, quality, decontam) sends each document out of
each of its steps in exactly one way: kept, dropped with a reason, or quarantined (malformed).
:class:`Ledger` tallies that per step and per source and asserts ``in == kept + dropped +
quarantined`` and that each step's kept count is the next step's input. :func:`profile` counts
documents and characters per (source, language, licence), so the data card can show every step's
effect on each slice of the corpus. :func:`write_outputs` writes the files every curation stage
has in common, with one format, so the report reads them all the same way:

- ``docs.jsonl``: kept records (sorted keys, one per line, in stream order);
- ``dropped.jsonl``: ``{id, source, reason, step, ...}`` per dropped document;
- ``quarantine.jsonl``: ``{source, step, input, line, reason, detail, excerpt}`` per malformed one;
- ``accounting.json``: ``{"order": [step, ...], "steps": {step: {"sources": {source: counts},
  "total": counts}}, "profile_in": [...], "profile_out": [...]}`` where counts are ``{in, kept,
  dropped: {reason: n}, dropped_total, quarantined}`` and profile rows are ``{source, lang,
  license, docs, chars}``; a stage that edits kept documents' text in a counted way (curate
  strips bidi controls) adds ``"edits": {step: {edit: {source: {docs, chars}}}}``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrecipe.errors import StageInputError

DOCS = "docs.jsonl"
ACCOUNTING = "accounting.json"


@dataclass
class StepCount:
    """One step's tally for one source."""

    n_in: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    quarantined: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "in": self.n_in,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_total": sum(self.dropped.values()),
            "quarantined": self.quarantined,
        }


class Ledger:
    """Per step, per source accounting plus the dropped/quarantine records."""

    def __init__(self, steps: Sequence[str], edits: dict[str, Sequence[str]] | None = None) -> None:
        """``edits``: the counted text edits each step may make ({step: (edit, ...)})."""
        self.steps = tuple(steps)
        self.counts: dict[str, dict[str, StepCount]] = {step: {} for step in self.steps}
        self.dropped: list[dict[str, Any]] = []
        self.quarantine: list[dict[str, Any]] = []
        self.edits: dict[str, dict[str, dict[str, Counter]]] = {
            step: {name: {} for name in names} for step, names in (edits or {}).items()
        }

    def tally(self, step: str, source: str) -> StepCount:
        return self.counts[step].setdefault(source, StepCount())

    def keep(self, step: str, source: str) -> None:
        tally = self.tally(step, source)
        tally.n_in += 1
        tally.kept += 1

    def drop(self, step: str, doc: dict, reason: str, **extra: Any) -> None:
        tally = self.tally(step, doc["source"])
        tally.n_in += 1
        tally.dropped[reason] += 1
        self.dropped.append(
            {"id": doc["id"], "source": doc["source"], "reason": reason, "step": step, **extra}
        )

    def quarantine_record(self, step: str, source: str, record: dict[str, Any]) -> None:
        tally = self.tally(step, source)
        tally.n_in += 1
        tally.quarantined += 1
        self.quarantine.append({"source": source, "step": step, **record})

    def edit(self, step: str, source: str, name: str, chars: int) -> None:
        """Count one document of ``source`` whose text ``step`` changed by ``chars`` characters
        under the declared edit ``name``."""
        tally = self.edits[step][name].setdefault(source, Counter())
        tally["docs"] += 1
        tally["chars"] += chars

    def cover(self, sources: Iterable[str]) -> None:
        """Give every step a row for each source, zeros included, so a source that lost all
        its documents still appears (with where it lost them)."""
        sources = list(sources)
        for step in self.steps:
            for source in sources:
                self.tally(step, source)
        for by_name in self.edits.values():
            for tallies in by_name.values():
                for source in sources:
                    tallies.setdefault(source, Counter())

    def check(self) -> None:
        """Conservation at every step, and each step's kept = the next step's in."""
        for step in self.steps:
            for source, c in self.counts[step].items():
                if c.n_in != c.kept + sum(c.dropped.values()) + c.quarantined:
                    raise AssertionError(f"accounting: {step}/{source} does not add up: {c}")
        for before, after in zip(self.steps, self.steps[1:], strict=False):
            for source, c in self.counts[before].items():
                if c.kept != self.tally(after, source).n_in:
                    raise AssertionError(f"accounting: {before} kept != {after} in for {source}")

    def report(self) -> dict[str, Any]:
        steps = {}
        for step in self.steps:
            total = StepCount()
            for c in self.counts[step].values():
                total.n_in += c.n_in
                total.kept += c.kept
                total.dropped.update(c.dropped)
                total.quarantined += c.quarantined
            steps[step] = {
                "sources": {s: c.as_dict() for s, c in sorted(self.counts[step].items())},
                "total": total.as_dict(),
            }
        report: dict[str, Any] = {"steps": steps, "order": list(self.steps)}
        if self.edits:
            report["edits"] = {
                step: {
                    name: {
                        s: {"docs": c["docs"], "chars": c["chars"]} for s, c in sorted(t.items())
                    }
                    for name, t in sorted(by_name.items())
                }
                for step, by_name in sorted(self.edits.items())
            }
        return report


def profile(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Documents and characters per (source, lang, license), sorted."""
    docs_n: Counter = Counter()
    chars: Counter = Counter()
    for doc in docs:
        key = (doc["source"], doc["lang"], doc["license"])
        docs_n[key] += 1
        chars[key] += len(doc["text"])
    return [
        {"source": s, "lang": lang, "license": lic, "docs": docs_n[(s, lang, lic)],
         "chars": chars[(s, lang, lic)]}
        for s, lang, lic in sorted(docs_n)
    ]  # fmt: skip


def read_docs(stage_dir: Path, stage: str) -> list[dict[str, Any]]:
    """The kept documents of an upstream curation stage, in stream order."""
    path = stage_dir / DOCS
    if not path.is_file():
        raise StageInputError(f"{stage}: {path} missing (is the input a curation stage output?)")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")


def write_json(path: Path, data: Any) -> None:
    path.write_text(
        json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def write_outputs(
    out: Path,
    kept: list[dict[str, Any]],
    ledger: Ledger,
    profile_in: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write the common files and return the stage summary (counts only, deterministic)."""
    ledger.check()
    write_jsonl(out / DOCS, kept)
    write_jsonl(out / "dropped.jsonl", ledger.dropped)
    write_jsonl(out / "quarantine.jsonl", ledger.quarantine)
    report = ledger.report()
    report["profile_in"] = profile_in
    report["profile_out"] = profile(kept)
    write_json(out / ACCOUNTING, report)
    first, last = report["steps"][ledger.steps[0]], report["steps"][ledger.steps[-1]]
    dropped: Counter = Counter()
    for step in ledger.steps:
        dropped.update(report["steps"][step]["total"]["dropped"])
    if last["total"]["kept"] != len(kept):
        raise AssertionError(f"accounting: {len(kept)} docs written, ledger says {last['total']}")
    summary = {
        "in": first["total"]["in"],
        "kept": len(kept),
        "quarantined": len(ledger.quarantine),
        "dropped": dict(sorted(dropped.items())),
        "kept_per_source": {s: c["kept"] for s, c in last["sources"].items()},
    }
    if "edits" in report:
        summary["edits"] = {
            name: {k: sum(c[k] for c in tallies.values()) for k in ("docs", "chars")}
            for by_name in report["edits"].values()
            for name, tallies in by_name.items()
        }
    return summary
