"""Audit acceptance on a copy of the finished tiny run: tampering detected and refused, trace to
every raw package, an exclusion rerun that reruns exactly the affected stages, certificates
cross-checked against the packed tokens, diff, and the release lock."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from openrecipe.data.indexed import IndexedDataset
from openrecipe.lineage.attestation import read_statement_unverified
from openrecipe.recipe import load_recipe

from .workflow import openrecipe_cli

pytestmark = pytest.mark.e2e

RUN = "runs/tiny"


def cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    return openrecipe_cli(project, *args, timeout=900)


@pytest.fixture(scope="module")
def audited(first_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the finished run (these tests alter and rerun it)."""
    dest = tmp_path_factory.mktemp("audit") / "project"
    shutil.copytree(first_run, dest, symlinks=True)
    return dest


def _manifest(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "manifest.json").read_text())


def _manifest_sha(stage_dir: Path) -> str:
    return _manifest(stage_dir)["manifest_sha256"]


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


NEXT_STAGE = [
    ("pack/train.bin", ["pretrain", "--input", f"pack={RUN}/pack"]),
    ("pretrain/model/model.safetensors", ["sft", "--input", f"pretrain={RUN}/pretrain"]),
    ("pack/manifest.json", ["pretrain", "--input", f"pack={RUN}/pack"]),
    ("evaluate/base/scores.json", ["report", "--input", f"eval_base={RUN}/evaluate/base"]),
]


@pytest.mark.parametrize(("rel", "next_stage"), NEXT_STAGE, ids=[r for r, _ in NEXT_STAGE])
def test_one_flipped_byte_is_detected_and_refused(audited: Path, rel: str, next_stage) -> None:
    path = audited / RUN / rel
    offset = path.stat().st_size // 2
    _flip(path, offset)
    try:
        verify = cli(audited, "verify", RUN)
        assert verify.returncode == 1
        assert rel.split("/")[-1] in verify.stdout
        stage, *inputs = next_stage
        refused = cli(
            audited,
            stage,
            "--recipe",
            f"{RUN}/recipe.resolved.yaml",
            "--out",
            f"{RUN}/refused",
            *inputs,
        )
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert rel.split("/")[-1] in refused.stderr and "refused" in refused.stderr
        assert not (audited / RUN / "refused").exists()
    finally:
        _flip(path, offset)
    assert cli(audited, "verify", RUN).returncode == 0


def test_trace_of_final_score_lists_every_raw_package(audited: Path) -> None:
    done = cli(audited, "trace", "results/tiny/metrics.json", "--json", "--prov", "prov.json")
    assert done.returncode == 0, done.stderr
    from openrecipe.lineage.trace import raw_sources

    sources = {s["name"]: s for s in raw_sources(json.loads(done.stdout))}
    recipe = load_recipe(audited / "recipes" / "tiny.yaml", project=audited)
    for spec in recipe.data["data"]["sources"]:
        found = sources[spec["name"]]
        assert found["version"] == spec["version"]
        assert found["sha256"] == spec.get("sha256") or found["docs_sha256"]
    prov = json.loads((audited / "prov.json").read_text())
    assert {"activity", "entity", "used", "wasGeneratedBy", "agent"} <= set(prov)


def _brown_tokens_from_bin(project: Path, consumed: int) -> int:
    """Brown's trained tokens recounted from train.bin: every brown segment of the sidecar must
    be exactly the re-tokenized document slice at that place in the packed sequence."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(project / RUN / "tokenizer"))
    docs = [json.loads(line) for line in (project / RUN / "blend/streams/brown.jsonl").open()]
    encoded = tokenizer.backend_tokenizer.encode_batch(
        [d["text"] for d in docs], add_special_tokens=False
    )
    tokens = {d["id"]: [*e.ids, tokenizer.eos_token_id] for d, e in zip(docs, encoded, strict=True)}
    data = IndexedDataset(project / RUN / "pack" / "train")
    count = 0
    with open(project / RUN / "pack" / "sidecar.jsonl") as handle:
        for index, line in zip(range(consumed), handle, strict=False):
            offset = 0
            for doc_id, source, start, n in json.loads(line)["segments"]:
                if source == "brown":
                    packed = np.asarray(data[index][offset : offset + n])
                    assert packed.tolist() == tokens[doc_id][start : start + n]
                    count += n
                offset += n
    return count


def test_exclusion_rerun_certificates_diff_and_lock(audited: Path, first_run: Path) -> None:
    # keep a copy of the run as it was: its manifests still name runs/tiny/... (issue 13)
    shutil.copytree(audited / RUN, audited / "runs" / "tiny_orig", symlinks=True)
    done = cli(audited, "rerun", "tiny", "--exclude", "source=austen", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert (audited / result["override"]).is_file()
    assert result["executed"] == result["planned"]
    changed = {row["stage"] for row in result["views"] if row["view_changed"]}
    assert changed == {"blend"}
    executed = result["executed"]
    assert not {"acquire", "curate", "reasoning"} & set(executed)
    assert {"blend", "tokenizer", "pack", "pretrain", "sft", "rl", "report"} <= set(executed)
    assert executed["evaluate"] == 3

    absent = cli(audited, "certify", "--absent", "source=austen", f"{RUN}/rl", "--out", "c/austen")
    assert absent.returncode == 0, absent.stdout + absent.stderr
    cert = read_statement_unverified(audited / "c/austen.json")["predicate"]
    assert cert["absent"] and cert["matched_tokens"] == 0
    assert cert["training"]["pretrain"]["tokens"] > 0 and set(cert["training"]) == {
        "pretrain",
        "sft",
        "rl",
    }
    verified = cli(audited, "verify-certificate", "c/austen.json")
    assert verified.returncode == 0 and "signed by SHA256:" in verified.stdout
    # The copy trained on austen; what now sits at the paths it names is the rerun's output.
    # Every walk refuses it, naming both manifest hashes, instead of certifying it ABSENT.
    orig = audited / "runs" / "tiny_orig"
    hops = [
        (item["manifest_sha256"], _manifest_sha(audited / item["path"]))
        for item in _manifest(orig / "pretrain")["inputs"]
        if "stage" in item
    ]
    for args in (
        ("certify", "--absent", "source=austen", "runs/tiny_orig/pretrain"),
        ("trace", "runs/tiny_orig/pretrain/manifest.json"),
    ):
        refused = cli(audited, *args)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert any(a in refused.stderr and b in refused.stderr for a, b in hops if a != b)
        assert "ABSENT" not in refused.stdout
    copied = cli(audited, "verify", "runs/tiny_orig")
    assert copied.returncode == 1 and "is another stage's output" in copied.stdout
    shutil.rmtree(orig)
    # Every record the model trained on states its language (the reasoning set included), so a
    # language the run never held is certified absent through SFT and RL too.
    no_es = cli(audited, "certify", "--absent", "lang=es", f"{RUN}/rl", "--out", "c/es")
    assert no_es.returncode == 0, no_es.stdout + no_es.stderr
    assert read_statement_unverified(audited / "c/es.json")["predicate"]["unknown_tokens"] == 0

    present = cli(audited, "certify", "--absent", "source=brown", f"{RUN}/pretrain", "--out", "c/b")
    assert present.returncode == 1
    brown = read_statement_unverified(audited / "c/b.json")["predicate"]
    consumed = brown["training"]["pretrain"]["sequences"]
    assert brown["matched_tokens"] == _brown_tokens_from_bin(audited, consumed) > 0

    diff = cli(audited, "diff", str(first_run / RUN), RUN, "--json")
    assert diff.returncode == 0, diff.stderr
    stages = {s["stage"]: s for s in json.loads(diff.stdout)["stages"]}
    assert [c["key"] for c in stages["blend"]["config"]] == ["data.exclude"]
    assert "curate" not in stages and "reasoning" not in stages
    assert json.loads(diff.stdout)["scores"]

    assert cli(audited, "lock", "tiny").returncode == 0
    check = cli(audited, "reproduce", "--check", "results/tiny/release.lock.json")
    assert check.returncode == 0 and "EXACT" in check.stdout and "signed by" in check.stdout
    assert cli(audited, "verify", "results/tiny").returncode == 0
