"""Audit tools on hand-built stage chains (run through the real stage harness): certify, PROV
export, raw-source trace, verify's audit files, diff, rerun planning, release lock."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from prov.model import ProvDocument

from openrecipe.cli import main
from openrecipe.data.indexed import IndexedDataset, write_indexed
from openrecipe.errors import AttestationError, LineageError
from openrecipe.hashing import sha256_file
from openrecipe.lineage.attestation import (
    generate_key,
    read_statement_unverified,
    subject_digests,
)
from openrecipe.lineage.certify import certify, verify_certificate, write_certificate
from openrecipe.lineage.diff import diff_runs
from openrecipe.lineage.lock import check_lock, write_lock
from openrecipe.lineage.prov import prov_json
from openrecipe.lineage.rerun import build_override, reweight, view_changes
from openrecipe.lineage.trace import raw_sources, trace
from openrecipe.lineage.verify import verify_tree
from openrecipe.manifest import read_manifest, seal, write_json_atomic
from openrecipe.recipe import load_recipe
from openrecipe.stage import StageContext, run_stage

# Two sources with disjoint token ids, so a count can be redone from train.bin alone.
DOCS = {
    "keep": [("keep/a", range(1, 8)), ("keep/b", range(1, 6))],
    "drop": [("drop/x", range(100, 109)), ("drop/y", range(100, 104))],
}
LICENSES = {"keep": "CC0-1.0", "drop": "proprietary"}
SEQ = 4  # tokens per packed sequence (seq_length 3 + the label shift)


def _segments() -> list[list[list]]:
    """Cut the interleaved documents into SEQ-token sequences, as pack does."""
    stream = []
    for pair in zip(DOCS["keep"], DOCS["drop"], strict=True):
        for doc_id, tokens in pair:
            stream.append([doc_id, doc_id.split("/")[0], 0, len(tokens)])
    sequences, current, room = [], [], SEQ
    for doc_id, source, start, length in stream:
        while length:
            n = min(room, length)
            current.append([doc_id, source, start, n])
            start, length, room = start + n, length - n, room - n
            if room == 0:
                sequences.append(current)
                current, room = [], SEQ
    return sequences


def blend_body(ctx: StageContext) -> dict:
    (ctx.out / "streams").mkdir()
    for source, docs in DOCS.items():
        with open(ctx.out / "streams" / f"{source}.jsonl", "w") as handle:
            for doc_id, _ in docs:
                record = {"id": doc_id, "source": source, "license": LICENSES[source], "lang": "en"}
                handle.write(json.dumps(record, sort_keys=True) + "\n")
    return {}


def pack_body(ctx: StageContext) -> dict:
    tokens = {doc_id: list(t) for docs in DOCS.values() for doc_id, t in docs}
    sequences = _segments()
    write_indexed(
        ctx.out / "train",
        (
            np.asarray([t for d, _, s, n in seq for t in tokens[d][s : s + n]], dtype=np.int64)
            for seq in sequences
        ),
        np.uint16,
    )
    with open(ctx.out / "sidecar.jsonl", "w") as handle:
        for index, seq in enumerate(sequences):
            handle.write(json.dumps({"phase": "p", "segments": seq, "seq": index}) + "\n")
    return {"sequences": len(sequences)}


def pretrain_body(ctx: StageContext) -> dict:
    consumed = ctx.cfg("pretrain.steps") * ctx.cfg("pretrain.micro_batch_size")
    (ctx.out / "checkpoint").mkdir()
    state = {"loader": {"position": consumed}}
    (ctx.out / "checkpoint" / "state.json").write_text(json.dumps(state))
    return {"steps": ctx.cfg("pretrain.steps")}


@pytest.fixture
def small(project: Path):
    """The tiny recipe with 2 steps x 2 sequences (so 4 of the 6 packed sequences train)."""
    override = project / "recipes" / "overrides" / "small.yaml"
    override.parent.mkdir(exist_ok=True)
    override.write_text("pretrain: {steps: 2, micro_batch_size: 2, seq_length: 3}\n")
    return load_recipe(project / "recipes" / "tiny.yaml", [override], project=project)


@pytest.fixture
def chain(project: Path, small) -> Path:
    run = project / "runs" / "tiny"
    run_stage("blend", small, run / "blend", {}, blend_body, project=project)
    inputs = {"blend": run / "blend"}
    run_stage("pack", small, run / "pack", inputs, pack_body, project=project)
    run_stage(
        "pretrain", small, run / "pretrain", {"pack": run / "pack"}, pretrain_body, project=project
    )
    return run


def _recount_from_bin(run: Path, low: int, high: int, consumed: int) -> int:
    data = IndexedDataset(run / "pack" / "train")
    return sum(int(((data[i] >= low) & (data[i] < high)).sum()) for i in range(consumed))


def test_certify_counts_exactly_what_trained(chain: Path) -> None:
    assert len(IndexedDataset(chain / "pack" / "train")) == 6  # 2 sequences never trained
    drop = certify("source=drop", chain / "pretrain")
    assert drop["matched_tokens"] == _recount_from_bin(chain, 100, 200, 4) > 0
    assert drop["training"]["pretrain"]["sequences"] == 4 and not drop["absent"]
    keep = certify("license=CC0-1.0", chain / "pretrain")
    assert keep["matched_tokens"] == _recount_from_bin(chain, 1, 100, 4)
    assert keep["matched_tokens"] + drop["matched_tokens"] == 4 * SEQ
    absent = certify("source=never_packed", chain / "pretrain")
    assert absent["absent"] and absent["matched_tokens"] == 0
    assert "runs/tiny/pack/sidecar.jsonl" in absent["relied_on"]


def test_certificate_is_signed_rechecked_and_tamper_detected(
    chain: Path, project: Path, signing_key, trust, capsys
) -> None:
    cert = certify("source=drop", chain / "pretrain")
    out = project / "certs" / "drop"
    json_path, md_path = write_certificate(cert, out, signing_key, project)
    assert verify_certificate(json_path, trust) == ([], signing_key.public)
    assert cert["certificate_sha256"] in md_path.read_text()
    assert signing_key.public.keyid in md_path.read_text()
    stmt = read_statement_unverified(json_path)
    assert stmt["predicateType"] == "https://openrecipe.dev/attestation/absence/v1"
    assert stmt["predicate"] == cert
    assert "runs/tiny/pretrain/manifest.json" in subject_digests(stmt)
    assert main(["verify-certificate", str(json_path)]) == 0
    assert f"signed by {signing_key.public.describe()}" in capsys.readouterr().out
    # the old, unsigned format: refused by name, not believed
    json_path.write_text(json.dumps({**cert, "matched_tokens": 0, "absent": True}))
    with pytest.raises(AttestationError, match=r"drop\.json: not a signed attestation"):
        verify_certificate(json_path, trust)
    assert main(["verify-certificate", str(json_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openrecipe verify-certificate: error: ") and str(json_path) in err
    # a forger who re-signs an edited claim with their own key is not trusted
    forger = generate_key(project / "forger", "mallory")
    write_certificate({**cert, "matched_tokens": 0, "absent": True}, out, forger, project)
    with pytest.raises(AttestationError, match="not a trusted key"):
        verify_certificate(json_path, trust)
    # an honest certificate whose files changed since: the signature holds, the files do not
    write_certificate(cert, out, signing_key, project)
    sidecar = chain / "pack" / "sidecar.jsonl"
    sidecar.write_text(sidecar.read_text().replace('"drop/x"', '"keep/x"', 1))
    problems, signer = verify_certificate(json_path, trust)
    assert any("sidecar.jsonl" in p for p in problems) and signer == signing_key.public
    with pytest.raises(LineageError, match=r"sidecar\.jsonl"):
        certify("source=drop", chain / "pretrain")


def test_certificate_checks_the_model_it_is_about(
    chain: Path, project: Path, small, signing_key, trust
) -> None:
    def with_weights(ctx: StageContext) -> dict:
        (ctx.out / "model").mkdir()
        (ctx.out / "model" / "weights.bin").write_bytes(b"\x00" * 64)
        return pretrain_body(ctx)

    run_stage(
        "pretrain",
        small,
        chain / "pretrain",
        {"pack": chain / "pack"},
        with_weights,
        project=project,
    )
    cert = certify("source=drop", chain / "pretrain")
    assert "runs/tiny/pretrain/model/weights.bin" not in cert["relied_on"]  # counts never read it
    json_path, _ = write_certificate(cert, project / "certs" / "drop", signing_key, project)
    assert "runs/tiny/pretrain/model/weights.bin" in subject_digests(
        read_statement_unverified(json_path)
    )
    (chain / "pretrain" / "model" / "weights.bin").write_bytes(b"\x01" * 64)  # another model
    problems, _ = verify_certificate(json_path, trust)
    assert any("runs/tiny/pretrain/model/weights.bin: sha256 differs" in p for p in problems)


def test_certify_refuses_a_checkpoint_that_ran_short(chain: Path, project: Path, small) -> None:
    state = chain / "pretrain" / "checkpoint" / "state.json"

    # A consistent but inconsistent-with-config run: rewrite through the harness.
    def short(ctx: StageContext) -> dict:
        pretrain_body(ctx)
        (ctx.out / "checkpoint" / "state.json").write_text(json.dumps({"loader": {"position": 2}}))
        return {}

    run_stage(
        "pretrain", small, chain / "pretrain", {"pack": chain / "pack"}, short, project=project
    )
    assert json.loads(state.read_text())["loader"]["position"] == 2
    with pytest.raises(LineageError, match="loader position 2"):
        certify("source=drop", chain / "pretrain")


def test_trace_lists_raw_packages_and_exports_prov(project: Path) -> None:
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    spec = recipe.view("acquire", "brown")["data.sources"][0]
    pinned = {
        "kind": "npm",
        "name": "brown",
        "package": spec["package"],
        "sha256": spec["sha256"],
        "version": spec["version"],
    }
    raw = project / "data" / "raw" / "brown"

    def docs(ctx: StageContext) -> dict:
        (ctx.out / "docs.jsonl").write_text('{"id": "brown/a"}\n')
        return {}

    run_stage(
        "acquire", recipe, raw, {}, docs, project=project, extra_inputs=[pinned], part="brown"
    )
    curate = project / "runs" / "tiny" / "curate"
    run_stage("curate", recipe, curate, {"raw_brown": raw}, docs, project=project)
    node = trace(curate / "docs.jsonl")
    (source,) = raw_sources(node)
    assert (source["name"], source["version"], source["sha256"]) == (
        "brown",
        spec["version"],
        spec["sha256"],
    )
    assert source["license"] == spec["license"] and source["docs_sha256"]
    assert node["config_lines"]["data.curation.min_chars"].startswith("min_chars:")
    document = ProvDocument.deserialize(content=prov_json(node), format="json")
    text = prov_json(node)
    assert "or:file/runs/tiny/curate/docs.jsonl" in text and spec["sha256"] in text
    kinds = {type(record).__name__ for record in document.get_records()}
    assert {"ProvActivity", "ProvEntity", "ProvUsage", "ProvGeneration", "ProvAgent"} <= kinds


def _report(metrics: dict):
    def report(ctx: StageContext) -> dict:
        (ctx.out / "metrics.json").write_text(json.dumps(metrics))
        return {}

    return report


@pytest.fixture
def released(chain: Path, project: Path, small, signing_key) -> Path:
    """The chain with its report in results/tiny and a signed release lock."""
    report = _report({"scores": {"base": {"t": {"acc": 0.5}}}})
    results = project / "results" / "tiny"
    run_stage("report", small, results, {"pretrain": chain / "pretrain"}, report, project=project)
    return write_lock(project, "tiny", signing_key)


def test_lock_is_slsa_provenance_in_a_signed_envelope(
    released: Path, project: Path, signing_key, trust
) -> None:
    envelope = json.loads(released.read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert envelope["signatures"][0]["keyid"] == signing_key.public.keyid
    stmt = read_statement_unverified(released)
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == "https://slsa.dev/provenance/v1"
    subjects = subject_digests(stmt)
    metrics = project / "results" / "tiny" / "metrics.json"
    assert subjects["results/tiny/metrics.json"] == sha256_file(metrics)
    assert "runs/tiny/pack/train.bin" in subjects
    build = stmt["predicate"]["buildDefinition"]
    assert build["externalParameters"]["recipe"] == "tiny"
    assert stmt["predicate"]["runDetails"]["builder"]["id"].startswith("https://")
    lock = stmt["predicate"]["openrecipeLock"]
    assert lock["metrics"] == {"scores.base.t.acc": 0.5} and lock["lock_sha256"]
    result = check_lock(released, trust)
    assert result["verdict"] == "exact" and signing_key.public.keyid in result["signed_by"]


def test_verify_names_unexpected_files_and_checks_the_lock(
    chain: Path, project: Path, small, released: Path, signing_key, trust
) -> None:
    results = project / "results" / "tiny"
    assert verify_tree(results)[0] == []
    (chain / "pack" / "stray.txt").write_text("x")
    problems, _ = verify_tree(chain)
    assert any("stray.txt: unexpected file" in p for p in problems)
    (chain / "pack" / "stray.txt").unlink()
    # a rerun on other hardware: pretrain's bytes differ, the report is remade from them and
    # its score moved a little: hashes differ, every score within the envelope
    saved = released.read_text()

    def rerun(acc: float) -> None:
        def other_bytes(ctx: StageContext) -> dict:
            (ctx.out / "noise.bin").write_bytes(str(acc).encode())
            return pretrain_body(ctx)

        inputs = {"pack": chain / "pack"}
        run_stage("pretrain", small, chain / "pretrain", inputs, other_bytes, project=project)
        report = _report({"scores": {"base": {"t": {"acc": acc}}}})
        run_stage(
            "report", small, results, {"pretrain": chain / "pretrain"}, report, project=project
        )
        released.write_text(saved)

    rerun(0.51)
    result = check_lock(released, trust)
    assert result["verdict"] == "envelope"
    assert "results/tiny/metrics.json" in result["artifacts_differing"]
    rerun(0.9)
    assert check_lock(released, trust)["verdict"] == "outside"
    # verify (hashes only) still sees an edited lock payload; the signature check refuses it
    envelope = json.loads(saved)
    stmt = json.loads(base64.b64decode(envelope["payload"]))
    stmt["predicate"]["openrecipeLock"]["metrics"]["scores.base.t.acc"] = 0.9
    envelope["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    released.write_text(json.dumps(envelope))
    assert any("lock_sha256" in p for p in verify_tree(results)[0])
    with pytest.raises(AttestationError, match="does not verify"):
        check_lock(released, trust)
    released.write_text(json.dumps(stmt["predicate"]["openrecipeLock"]))  # the old format
    assert any("not a signed attestation" in p for p in verify_tree(results)[0])


def _forge_metrics(results: Path, acc: float) -> None:
    """What anyone can do with the project's own code: edit a released file and reseal."""
    (results / "metrics.json").write_text(json.dumps({"scores": {"base": {"t": {"acc": acc}}}}))
    manifest = read_manifest(results)
    manifest["outputs"]["metrics.json"] = {
        "sha256": sha256_file(results / "metrics.json"),
        "bytes": (results / "metrics.json").stat().st_size,
    }
    write_json_atomic(results / "manifest.json", seal(manifest))


@pytest.mark.parametrize("acc", [0.51, 0.99], ids=["within-envelope", "far-off"])
def test_forged_and_resealed_scores_pass_verify_but_reproduce_refuses(
    project: Path, released: Path, trust, acc: float, capsys
) -> None:
    results = project / "results" / "tiny"
    _forge_metrics(results, acc)
    assert verify_tree(results)[0] == []  # hashes alone cannot tell
    with pytest.raises(AttestationError, match=r"results/tiny/metrics\.json differ") as refused:
        check_lock(released, trust)
    assert str(released) in str(refused.value) and "edited after signing" in str(refused.value)
    assert main(["reproduce", "--check", str(released)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openrecipe reproduce: error: ") and "metrics.json" in err
    assert "Traceback" not in err


def test_reproduce_refuses_unsigned_and_foreign_locks_with_a_clear_message(
    project: Path, released: Path, signing_key, capsys
) -> None:
    lock = project / "results" / "tiny" / "release.lock.json"
    assert main(["reproduce", "--check", str(lock)]) == 0  # default trust: your own key
    assert f"lock signed by {signing_key.public.keyid}" in capsys.readouterr().out
    # a forger signs a lock of the forged run with their own key: not trusted
    forger = generate_key(project / "forger", "mallory")
    _forge_metrics(project / "results" / "tiny", 0.99)
    write_lock(project, "tiny", forger)
    assert main(["reproduce", "--check", str(lock)]) == 2
    err = capsys.readouterr().err
    assert str(lock) in err and forger.public.keyid in err and "not a trusted key" in err
    # ...unless the auditor chooses to trust that key
    pub = str(forger.path) + ".pub"
    assert main(["reproduce", "--check", str(lock), "--trusted-key", pub]) == 0
    assert "mallory" in capsys.readouterr().out
    stmt = read_statement_unverified(lock)
    lock.write_text(json.dumps(stmt["predicate"]["openrecipeLock"]))  # unsigned, old format
    assert main(["reproduce", "--check", str(lock)]) == 2
    assert "not a signed attestation" in capsys.readouterr().err


def test_lock_without_a_key_is_refused_before_writing(
    project: Path, released: Path, capsys
) -> None:
    before = released.read_bytes()
    missing = project / "no_key"
    assert main(["lock", "tiny", "--key", str(missing)]) == 2
    assert "create one with `openrecipe keygen`" in capsys.readouterr().err
    assert released.read_bytes() == before


def test_diff_names_stage_config_keys_and_inputs(project: Path, small, chain: Path) -> None:
    other = project / "runs" / "other"
    run_stage("blend", small, other / "blend", {}, blend_body, project=project)
    (project / "recipes" / "overrides" / "seq.yaml").write_text("pretrain: {seq_length: 7}\n")
    changed = load_recipe(
        project / "recipes" / "tiny.yaml",
        [
            project / "recipes" / "overrides" / "small.yaml",
            project / "recipes" / "overrides" / "seq.yaml",
        ],
        project=project,
    )
    run_stage(
        "pack", changed, other / "pack", {"blend": other / "blend"}, pack_body, project=project
    )
    run_stage(
        "pretrain",
        changed,
        other / "pretrain",
        {"pack": other / "pack"},
        pretrain_body,
        project=project,
    )
    result = diff_runs(chain, other)
    by_stage = {s["stage"]: s for s in result["stages"]}
    assert "blend" not in by_stage  # same view, same inputs: identical manifest
    assert [c["key"] for c in by_stage["pack"]["config"]] == ["pretrain.seq_length"]
    assert by_stage["pretrain"]["inputs"] == ["pack"]


def test_rerun_override_reweights_and_plans(project: Path, small) -> None:
    base = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    phases = reweight(base, ["src:brown=2"])
    original = base.data["data"]["phases"][0]["weights"]
    assert abs(sum(phases[0]["weights"].values()) - 1) < 1e-9
    ratio = phases[0]["weights"]["brown"] / phases[0]["weights"]["austen"]
    assert ratio == pytest.approx(2 * original["brown"] / original["austen"])
    with pytest.raises(Exception, match="no source"):
        reweight(base, ["lang:xx=2"])
    # On the default recipe a language is also a weight key of its own (lang:es draws the
    # multilingual collections' Spanish): --weight lang:es=2 doubles it and the Spanish Bible.
    default = load_recipe(project / "recipes" / "default.yaml", project=project)
    before = default.data["data"]["phases"][0]["weights"]
    after = reweight(default, ["lang:es=2"])[0]["weights"]
    for key in ("lang:es", "bible_rv1909"):
        assert after[key] / after["brown"] == pytest.approx(2 * before[key] / before["brown"])
    assert after["lang:fr"] / after["brown"] == pytest.approx(before["lang:fr"] / before["brown"])
    body = build_override(base, ["source=austen"], [], ["eval.batch_size=4"])
    assert body["data"]["exclude"] == [{"source": "austen"}] and body["eval"]["batch_size"] == 4
    path = project / "recipes" / "overrides" / "x.yaml"
    import yaml

    path.write_text(yaml.safe_dump(body))
    new = load_recipe(project / "recipes" / "tiny.yaml", [path], project=project)
    rows = {r["stage"]: r for r in view_changes(project, base, new)}
    assert rows["blend"]["view_changed"] == ["data.exclude"]
    assert rows["evaluate"]["view_changed"] == ["eval.batch_size"]
    unchanged = {s for s, r in rows.items() if not r["view_changed"]}
    assert {"curate", "tokenizer", "pack", "pretrain", "sft", "rl", "acquire[brown]"} <= unchanged


def test_certify_cli_signs_with_the_default_key_or_refuses_without_one(
    chain: Path, project: Path, signing_key, trust, capsys
) -> None:
    out = project / "certs" / "absent"
    args = ["certify", "--absent", "source=never_packed", str(chain / "pretrain"), "--out"]
    assert main([*args, str(out)]) == 0
    assert f"signed by {signing_key.public.describe()}" in capsys.readouterr().out
    assert verify_certificate(out.with_suffix(".json"), trust)[0] == []
    missing = project / "no_key"
    assert main([*args, str(project / "certs" / "other"), "--key", str(missing)]) == 2
    assert f"{missing}: no signing key there" in capsys.readouterr().err
    assert not (project / "certs" / "other.json").exists()
