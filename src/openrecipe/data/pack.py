"""The ``pack`` stage: the blend plan turned into the exact token sequences pretraining consumes.

For each phase in order, each weight key (a source, or a ``lang:<code>`` key: see the blend
stage) fills its token budget from its own stream: documents in
stream order, each followed by ``</s>``, cycling to the start when the stream runs out (each
wrap-around is one repetition), the last document cut so the budget is met exactly. A source's
read position carries over from one phase to the next, so a later phase continues the stream
rather than rereading its first documents.

Within a phase the per-source runs are interleaved by document: the next document always comes
from the source that has so far delivered the smallest fraction of its budget (ties: source
name). This is deterministic without a seed (the stage's view holds none) and keeps every
stretch of the phase close to the requested mix, instead of source-blocked runs.

The phases' token streams are concatenated and cut into sequences of ``seq_length + 1`` tokens
(inputs plus the one-token label shift). Tokens left over at the end of a phase start the next
phase's first sequence, so the total is exactly ``steps * micro_batch * grad_accum`` sequences
when the plan's total is a multiple of ``seq_length + 1`` (as the blend stage makes it); a tail
shorter than one sequence after the last phase is dropped and counted.

Outputs:
- ``train.bin``/``train.idx``: Megatron indexed dataset, one sequence per training sample, in
  consumption order (see ``openrecipe.data.indexed``);
- ``sidecar.jsonl``: per sequence ``{"seq", "phase", "segments": [[doc_id, source,
  token_start_in_doc, n_tokens], ...]}``; ``phase`` is the phase of the sequence's first token and
  ``source`` is the document's own source, whichever key's stream it came from;
- ``shares.json``: per phase and source the realised tokens and share against the requested
  weight, wrap-arounds, epochs and documents used, and the trained tokens per document source
  and language (``by_source``, ``by_lang``): the token accounting ``certify`` relies on.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openrecipe.data.blend import LANG_PREFIX, stream_path
from openrecipe.data.indexed import optimal_dtype, write_indexed
from openrecipe.data.tokenizer import iter_stream
from openrecipe.errors import StageInputError
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field

PREFIX = "train"


@dataclass(frozen=True)
class Segment:
    """A run of consecutive tokens of one document: tokens[start:start + length]."""

    phase: str
    source: str
    doc: int  # index in the source's stream
    start: int
    length: int


@dataclass
class Stream:
    """One weight key's tokenized documents and its read position (kept across phases).

    ``source`` is the key (a source name or ``lang:<code>``); ``doc_sources`` and ``doc_langs``
    are each document's own labels, for the sidecar and the per-source/language accounting."""

    source: str
    ids: list[str]
    tokens: list[np.ndarray]
    doc_sources: list[str] = field(default_factory=list)
    doc_langs: list[str] = field(default_factory=list)
    doc: int = 0
    offset: int = 0
    wraps: int = 0
    total_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.total_tokens = sum(len(t) for t in self.tokens)
        self.doc_sources = self.doc_sources or [self.source] * len(self.tokens)
        self.doc_langs = self.doc_langs or ["und"] * len(self.tokens)

    def take(self, phase: str, budget: int) -> list[Segment]:
        """Exactly ``budget`` tokens from the read position, cycling past the end."""
        if budget and not self.tokens:
            raise StageInputError(
                f"source {self.source!r}: phase {phase!r} needs {budget} tokens but its stream is empty"
            )
        segments = []
        while budget:
            length = min(len(self.tokens[self.doc]) - self.offset, budget)
            segments.append(Segment(phase, self.source, self.doc, self.offset, length))
            budget -= length
            self.offset += length
            if self.offset == len(self.tokens[self.doc]):
                self.doc, self.offset = self.doc + 1, 0
                if self.doc == len(self.tokens):
                    self.doc, self.wraps = 0, self.wraps + 1
        return segments


@dataclass(frozen=True)
class PackConfig:
    """The pack stage's view, typed: the sequence length (each packed sequence holds one token
    more, for the shifted labels)."""

    seq_length: int = view_field("pretrain.seq_length")


def _normalise_phase(phase: dict[str, Any]) -> dict[str, Any]:
    """One phase as ``{"name", "token_budget", "sources": {s: {"weight", "token_budget"}}}``.

    Accepts the nested form and the flat form the blend stage writes (``tokens``, ``budgets``,
    ``effective_weights``: the weights the budgets were apportioned from, after any exclusion)."""
    if "budgets" in phase:
        weights = phase.get("effective_weights") or phase.get("weights") or {}
        return {
            "name": phase.get("name"),
            "token_budget": phase.get("tokens"),
            "sources": {
                s: {"weight": weights.get(s), "token_budget": b}
                for s, b in phase["budgets"].items()
            },
        }
    return {
        "name": phase.get("name"),
        "token_budget": phase.get("token_budget"),
        "sources": phase.get("sources", {}),
    }


def load_plan(blend: Path) -> dict[str, Any]:
    """``plan.json``'s phases, normalised and checked, so a bad plan fails here, not mid-training."""
    path = blend / "plan.json"
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StageInputError(f"{path}: cannot read the blend plan ({exc})") from exc
    phases = [_normalise_phase(phase) for phase in plan.get("phases", [])]
    for index, phase in enumerate(phases):
        budgets = {name: s.get("token_budget") for name, s in phase["sources"].items()}
        bad = sorted(name for name, b in budgets.items() if not isinstance(b, int) or b < 0)
        if bad:
            raise StageInputError(
                f"{path}: phases[{index}] budgets of {bad}: token budget must be an int >= 0"
            )
        if sum(budgets.values()) != phase["token_budget"]:
            raise StageInputError(
                f"{path}: phases[{index}] ({phase['name']}): source budgets sum to "
                f"{sum(budgets.values())}, phase token budget is {phase['token_budget']}"
            )
    names = [phase["name"] for phase in phases]
    if not names or len(set(names)) != len(names):
        raise StageInputError(
            f"{path}: phases must be non-empty with distinct names, found {names}"
        )
    return {"phases": phases}


def tokenize_streams(blend: Path, keys: list[str], tokenizer) -> dict[str, Stream]:
    """Every document of each weight key's stream, tokenized, with ``</s>`` appended."""
    eos = tokenizer.eos_token_id
    streams = {}
    for key in keys:
        path = blend / stream_path(key)
        if not path.is_file():
            raise StageInputError(f"{path}: missing; plan.json draws tokens from {key!r}")
        if key.startswith(LANG_PREFIX):
            docs = list(iter_stream(path, field="lang", expected=key.removeprefix(LANG_PREFIX)))
        else:
            docs = list(iter_stream(path))
        encoded = tokenizer.backend_tokenizer.encode_batch(
            [d["text"] for d in docs], add_special_tokens=False
        )
        tokens = [np.asarray([*enc.ids, eos], dtype=np.int64) for enc in encoded]
        streams[key] = Stream(
            key,
            [str(d["id"]) for d in docs],
            tokens,
            [str(d.get("source", key)) for d in docs],
            [str(d.get("lang", "und")) for d in docs],
        )
    return streams


def interleave(runs: dict[str, list[Segment]], budgets: dict[str, int]) -> list[Segment]:
    """Merge per-source runs, always drawing from the source furthest behind its budget."""
    heap = [(0.0, source) for source in sorted(runs) if runs[source]]
    heapq.heapify(heap)
    delivered = dict.fromkeys(runs, 0)
    position = dict.fromkeys(runs, 0)
    merged = []
    while heap:
        _, source = heapq.heappop(heap)
        segment = runs[source][position[source]]
        merged.append(segment)
        position[source] += 1
        delivered[source] += segment.length
        if position[source] < len(runs[source]):
            heapq.heappush(heap, (delivered[source] / budgets[source], source))
    return merged


def chop(segments: list[Segment], size: int) -> tuple[list[list[Segment]], list[Segment]]:
    """Cut a segment stream into sequences of ``size`` tokens; returns (sequences, tail)."""
    sequences: list[list[Segment]] = []
    current: list[Segment] = []
    room = size
    for segment in segments:
        while segment.length:
            n = min(room, segment.length)
            current.append(Segment(segment.phase, segment.source, segment.doc, segment.start, n))
            segment = Segment(
                segment.phase, segment.source, segment.doc, segment.start + n, segment.length - n
            )
            room -= n
            if room == 0:
                sequences.append(current)
                current, room = [], size
    return sequences, current


def _written(sequences: list[list[Segment]]) -> dict[tuple[str, str], int]:
    """{(phase, stream key): tokens written}."""
    written: dict[tuple[str, str], int] = {}
    for sequence in sequences:
        for s in sequence:
            written[s.phase, s.source] = written.get((s.phase, s.source), 0) + s.length
    return written


def _phase_shares(
    plan: dict[str, Any],
    written: dict[tuple[str, str], int],
    taken: dict[str, dict[str, list[Segment]]],
    wraps: dict[str, dict[str, int]],
    streams: dict[str, Stream],
) -> list[dict[str, Any]]:
    """Per phase: its budget, the tokens written, and per stream key its share and reuse."""
    phases = []
    for phase in plan["phases"]:
        name = phase["name"]
        phase_tokens = sum(n for (p, _), n in written.items() if p == name)
        sources = {}
        for source, spec in sorted(phase["sources"].items()):
            tokens = written.get((name, source), 0)
            segs = taken[name][source]
            stream_tokens = streams[source].total_tokens
            sources[source] = {
                "requested_weight": spec.get("weight"),
                "token_budget": spec["token_budget"],
                "tokens": tokens,
                "share": round(tokens / phase_tokens, 6) if phase_tokens else 0.0,
                "wraps": wraps[name][source],
                "epochs": round(sum(s.length for s in segs) / stream_tokens, 6)
                if stream_tokens
                else 0.0,
                "docs_used": len({s.doc for s in segs}),
                "doc_segments": len(segs),
            }
        phases.append(
            {
                "name": name,
                "token_budget": phase["token_budget"],
                "tokens": phase_tokens,
                "sources": sources,
            }
        )
    return phases


def _by_origin(
    sequences: list[list[Segment]], streams: dict[str, Stream]
) -> tuple[dict[str, int], dict[str, int]]:
    """Tokens written by each document's own source and language (a ``lang:`` stream mixes
    sources)."""
    by_source: dict[str, int] = {}
    by_lang: dict[str, int] = {}
    for sequence in sequences:
        for s in sequence:
            doc_source = streams[s.source].doc_sources[s.doc]
            doc_lang = streams[s.source].doc_langs[s.doc]
            by_source[doc_source] = by_source.get(doc_source, 0) + s.length
            by_lang[doc_lang] = by_lang.get(doc_lang, 0) + s.length
    return dict(sorted(by_source.items())), dict(sorted(by_lang.items()))


def _stream_totals(
    written: dict[tuple[str, str], int],
    taken: dict[str, dict[str, list[Segment]]],
    streams: dict[str, Stream],
) -> dict[str, dict[str, Any]]:
    """Per stream key over all phases: its size, the tokens written, epochs and wraps."""
    totals = {}
    for source, stream in sorted(streams.items()):
        tokens = sum(n for (_, s), n in written.items() if s == source)
        consumed = sum(s.length for phase in taken.values() for s in phase.get(source, []))
        totals[source] = {
            "stream_docs": len(stream.tokens),
            "stream_tokens": stream.total_tokens,
            "tokens": tokens,
            "epochs": round(consumed / stream.total_tokens, 6) if stream.total_tokens else 0.0,
            "wraps": stream.wraps,
        }
    return totals


def _shares(
    plan: dict[str, Any],
    sequences: list[list[Segment]],
    tail: list[Segment],
    taken: dict[str, dict[str, list[Segment]]],
    wraps: dict[str, dict[str, int]],
    streams: dict[str, Stream],
) -> dict[str, Any]:
    """Realised token accounting, from the segments actually written."""
    written = _written(sequences)
    by_source, by_lang = _by_origin(sequences, streams)
    return {
        "phases": _phase_shares(plan, written, taken, wraps, streams),
        "sources": _stream_totals(written, taken, streams),
        "by_source": by_source,
        "by_lang": by_lang,
        "dropped_tokens": sum(s.length for s in tail),
        "dropped_tokens_per_source": {
            source: sum(s.length for s in tail if s.source == source)
            for source in sorted({s.source for s in tail})
        },
    }


def _take_phases(
    plan: dict[str, Any], streams: dict[str, Stream]
) -> tuple[list[Segment], dict[str, dict[str, list[Segment]]], dict[str, dict[str, int]]]:
    """(every phase's segments interleaved, in phase order; {phase: {key: segments taken}};
    {phase: {key: wraps during the phase}}): each budget taken from its stream, in order."""
    stream_segments: list[Segment] = []
    taken: dict[str, dict[str, list[Segment]]] = {}
    wraps: dict[str, dict[str, int]] = {}
    for phase in plan["phases"]:
        name = phase["name"]
        budgets = {
            source: spec["token_budget"] for source, spec in sorted(phase["sources"].items())
        }
        before = {source: streams[source].wraps for source in budgets}
        taken[name] = {
            source: streams[source].take(name, budget) for source, budget in budgets.items()
        }
        wraps[name] = {source: streams[source].wraps - before[source] for source in budgets}
        stream_segments.extend(interleave(taken[name], budgets))
    return stream_segments, taken, wraps


def _write_sequences(
    out: Path, sequences: list[list[Segment]], streams: dict[str, Stream], dtype: Any
) -> None:
    """The indexed token file and ``sidecar.jsonl`` (each sequence's phase and segments)."""
    write_indexed(
        out / PREFIX,
        (
            np.concatenate(
                [streams[s.source].tokens[s.doc][s.start : s.start + s.length] for s in sequence]
            )
            for sequence in sequences
        ),
        dtype,
    )
    with open(out / "sidecar.jsonl", "w", encoding="utf-8") as handle:
        for index, sequence in enumerate(sequences):
            record = {
                "seq": index,
                "phase": sequence[0].phase,
                "segments": [
                    [
                        streams[s.source].ids[s.doc],
                        streams[s.source].doc_sources[s.doc],
                        s.start,
                        s.length,
                    ]
                    for s in sequence
                ],
            }
            handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")


def run(ctx: StageContext) -> dict[str, Any]:
    from transformers import AutoTokenizer

    config = decode_view(PackConfig, ctx.config, ctx.stage)
    blend, tokenizer_dir = ctx.input("blend"), ctx.input("tokenizer")
    size = config.seq_length + 1
    plan = load_plan(blend)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    sources = sorted({source for phase in plan["phases"] for source in phase["sources"]})
    streams = tokenize_streams(blend, sources, tokenizer)

    stream_segments, taken, wraps = _take_phases(plan, streams)
    sequences, tail = chop(stream_segments, size)
    if not sequences:
        raise StageInputError(
            f"{blend / 'plan.json'}: {len(stream_segments)} segments hold fewer than {size} tokens"
        )
    dtype = optimal_dtype(len(tokenizer))
    _write_sequences(ctx.out, sequences, streams, dtype)
    shares = _shares(plan, sequences, tail, taken, wraps, streams)
    shares.update(
        sequence_tokens=size,
        sequences=len(sequences),
        tokens=len(sequences) * size,
        dtype=np.dtype(dtype).name,
    )
    (ctx.out / "shares.json").write_text(
        json.dumps(shares, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return {
        "sequences": len(sequences),
        "sequence_tokens": size,
        "tokens": len(sequences) * size,
        "dropped_tokens": shares["dropped_tokens"],
        "dtype": np.dtype(dtype).name,
        "shares": {
            p["name"]: {s: v["share"] for s, v in p["sources"].items()} for p in shares["phases"]
        },
        "epochs": {source: v["epochs"] for source, v in shares["sources"].items()},
    }
