"""The ``megatron_data`` stage (backend: megatron): the pack split into one dataset per phase.

The pack writes every phase into one ``train.bin`` (its sidecar names each sequence's phase).
Megatron-LM trains a phase from its own ``--data-path`` (``openrecipe.model.megatron_phases``),
and megatron-core's GPTDataset shuffles within the path it is given, so one file for all
phases would mix them. This stage copies each phase's sequences, in order, into
``<phase>.bin``/``<phase>.idx`` (the Megatron indexed format, one sequence per document as the
pack writes them), streaming one sequence at a time.

It also refuses a phase whose dataset is too small for what the plan trains on it: GPTDataset
would build a second epoch and repeat the data without a word (``megatron_epochs``).

Outputs: ``<phase>.bin``, ``<phase>.idx`` per phase, ``phases.json`` (per phase: its sequences,
the pack index of its first, the samples and epochs Megatron draws from it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.data.indexed import IndexedDataset, write_indexed
from openrecipe.errors import StageInputError
from openrecipe.model.megatron_phases import PhaseSpec, megatron_epochs, phase_runs
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field


@dataclass(frozen=True)
class MegatronDataConfig:
    """The stage's view, typed: the phases, and what the plan trains on each."""

    phases: tuple[PhaseSpec, ...] = view_field("data.phases")
    seq_length: int = view_field("pretrain.seq_length")
    steps: int = view_field("pretrain.steps")
    global_batch_size: int | None = view_field("pretrain.global_batch_size")
    micro_batch_size: int = view_field("pretrain.micro_batch_size")
    grad_accum: int = view_field("pretrain.grad_accum")

    @property
    def batch(self) -> int:
        """Sequences per optimizer step, as the plan counts them."""
        return self.global_batch_size or self.micro_batch_size * self.grad_accum


def sequence_phases(sidecar: Path) -> list[str]:
    """Each packed sequence's phase, in pack order."""
    try:
        with open(sidecar, encoding="utf-8") as handle:
            return [json.loads(line)["phase"] for line in handle if line.strip()]
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise StageInputError(f"{sidecar}: cannot read each sequence's phase ({exc})") from exc


def phase_ranges(phases: list[str], names: list[str], sidecar: Path) -> dict[str, range]:
    """{phase: the contiguous range of pack sequences it holds}, in the recipe's phase order."""
    ranges: dict[str, range] = {}
    start = 0
    for index in range(1, len(phases) + 1):
        if index == len(phases) or phases[index] != phases[start]:
            name = phases[start]
            if name in ranges:
                raise StageInputError(f"{sidecar}: phase {name!r} is not contiguous")
            ranges[name] = range(start, index)
            start = index
    if list(ranges) != [n for n in names if n in ranges] or set(ranges) - set(names):
        raise StageInputError(
            f"{sidecar}: phases appear as {list(ranges)}, the recipe's data.phases are {names}"
        )
    return {name: ranges.get(name, range(0)) for name in names}


def _sequences(dataset: IndexedDataset, indices: range, size: int, bin_path: Path) -> Iterator:
    for i in indices:
        sequence = dataset[i]
        if len(sequence) != size:
            raise StageInputError(
                f"{bin_path}: sequence {i} has {len(sequence)} tokens, not {size}"
            )
        yield sequence


def run(ctx: StageContext) -> dict[str, Any]:
    config = decode_view(MegatronDataConfig, ctx.config, ctx.stage)
    packed = ctx.input("pack")
    dataset = IndexedDataset(packed / "train")
    sidecar = packed / "sidecar.jsonl"
    labels = sequence_phases(sidecar)
    if len(labels) != len(dataset):
        raise StageInputError(f"{sidecar}: {len(labels)} sequences, train.idx holds {len(dataset)}")
    runs = phase_runs(list(config.phases), config.steps, config.batch)
    ranges = phase_ranges(labels, [r.name for r in runs], sidecar)
    size = config.seq_length + 1
    records = []
    for phase in runs:
        indices = ranges[phase.name]
        epochs = megatron_epochs(phase.samples, len(indices), size, config.seq_length)
        if epochs != 1:
            raise StageInputError(
                f"{packed}: phase {phase.name!r} packs {len(indices)} sequences of {size} tokens "
                f"but Megatron trains {phase.samples} samples on it (iterations {phase.start}-"
                f"{phase.end} x global_batch_size {config.batch}): megatron-core "
                f"would repeat the data over {epochs} epochs"
            )
        prefix = ctx.out / phase.name
        write_indexed(
            prefix, _sequences(dataset, indices, size, packed / "train.bin"), dataset.dtype
        )
        records.append(
            {
                "name": phase.name,
                "first_sequence": indices.start,
                "sequences": len(indices),
                "iterations": [phase.start, phase.end],
                "megatron_samples": phase.samples,
            }
        )
    (ctx.out / "phases.json").write_text(
        json.dumps({"phases": records}, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return {"phases": {r["name"]: r["sequences"] for r in records}}
