"""Audit tools on hand-built stage chains (run through the real stage harness): certify, PROV
export, raw-source trace, verify's audit files, diff, rerun planning, release lock."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from prov.model import ProvDocument

from openrecipe.cli import main
from openrecipe.data.indexed import IndexedDataset, write_indexed
from openrecipe.errors import AttestationError, LineageError
from openrecipe.hashing import hash_obj, sha256_file
from openrecipe.lineage.attestation import read_statement_unverified
from openrecipe.lineage.certify import (
    certify,
    render_markdown,
    verify_certificate,
    write_certificate,
)
from openrecipe.lineage.diff import diff_runs
from openrecipe.lineage.lock import check_lock, write_lock
from openrecipe.lineage.prov import prov_json
from openrecipe.lineage.rerun import build_override, reweight, view_changes
from openrecipe.lineage.trace import raw_sources, trace
from openrecipe.lineage.verify import verify_roots, verify_tree
from openrecipe.manifest import read_manifest, verify_stage_dir
from openrecipe.recipe import load_recipe
from openrecipe.stage import StageContext, run_stage

# Two sources with disjoint token ids, so a count can be redone from train.bin alone.
DOCS = {
    "keep": [("keep/a", range(1, 8)), ("keep/b", range(1, 6))],
    "drop": [("drop/x", range(100, 109)), ("drop/y", range(100, 104))],
}
LICENSES = {"keep": "CC0-1.0", "drop": "proprietary"}
SEQ = 4  # tokens per packed sequence (seq_length 3 + the label shift)


def _segments(docs: dict = DOCS) -> list[list[list]]:
    """Cut the interleaved documents into SEQ-token sequences, as pack does."""
    stream = []
    for group in zip(*docs.values(), strict=True):
        for doc_id, tokens in group:
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


def blend_body(ctx: StageContext, docs_by_source: dict = DOCS) -> dict:
    (ctx.out / "streams").mkdir()
    for source, docs in docs_by_source.items():
        with open(ctx.out / "streams" / f"{source}.jsonl", "w") as handle:
            for doc_id, _ in docs:
                license_ = LICENSES.get(source, "CC0-1.0")
                record = {"id": doc_id, "source": source, "license": license_, "lang": "en"}
                handle.write(json.dumps(record, sort_keys=True) + "\n")
    return {}


def pack_body(ctx: StageContext, docs: dict = DOCS) -> dict:
    tokens = {doc_id: list(t) for group in docs.values() for doc_id, t in group}
    sequences = _segments(docs)
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
    # a field only the blend streams hold (lang) makes certify read each document's record
    # there: its id, source and lang decide, none is unknown
    both = certify("source=drop,lang=en", chain / "pretrain")
    assert both["matched_tokens"] == drop["matched_tokens"] and both["unknown_tokens"] == 0
    # only then are the blend streams relied on (the sidecar names each document's source)
    assert any("/blend/streams/" in path for path in both["relied_on"])
    assert not any("/blend/streams/" in path for path in drop["relied_on"])
    ids = chain.parent.parent / "drop-x.txt"
    ids.write_text("drop/x\n")
    one = certify(f"lang=en,ids={ids}", chain / "pretrain")
    assert one["matched_tokens"] == drop["matched_tokens"] and one["unknown_tokens"] == 0
    assert one["training"]["pretrain"]["matched_documents"] == 1  # drop/x: all 4 sequences hold
    assert "runs/tiny/pack/sidecar.jsonl" in absent["relied_on"]


def test_certificate_is_rechecked_and_tamper_detected(
    chain: Path, project: Path, signing_key, trust
) -> None:
    cert = certify("source=drop", chain / "pretrain")
    out = chain.parent.parent / "certs" / "2026" / "drop"  # its folders are made
    json_path, md_path = write_certificate(cert, out, signing_key, project)
    assert (json_path.name, md_path.name) == ("drop.json", "drop.md")
    assert verify_certificate(json_path, trust) == []
    assert md_path.read_text(encoding="utf-8") == render_markdown(cert)
    assert cert["certificate_sha256"] in md_path.read_text()
    edited = {**cert, "matched_tokens": 0, "absent": True}
    json_path.write_text(json.dumps(edited))  # unsigned (the format before signing): refused
    with pytest.raises(AttestationError, match=r"drop\.json: not a signed attestation"):
        verify_certificate(json_path, trust)
    write_certificate(cert, out, signing_key, project)
    sidecar = chain / "pack" / "sidecar.jsonl"
    sidecar.write_text(sidecar.read_text().replace('"drop/x"', '"keep/x"', 1))
    assert any("sidecar.jsonl" in p for p in verify_certificate(json_path, trust))
    with pytest.raises(LineageError, match=r"sidecar\.jsonl"):
        certify("source=drop", chain / "pretrain")


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


def test_verify_names_unexpected_files_and_checks_the_lock(
    chain: Path, project: Path, small, signing_key, trust
) -> None:
    def report(ctx: StageContext) -> dict:
        (ctx.out / "metrics.json").write_text(json.dumps({"scores": {"base": {"t": {"acc": 0.5}}}}))
        return {}

    results = project / "results" / "tiny"
    run_stage("report", small, results, {"pretrain": chain / "pretrain"}, report, project=project)
    lock = write_lock(project, "tiny", signing_key)
    assert verify_tree(results)[0] == []
    assert check_lock(lock, trust)["verdict"] == "exact"
    (chain / "pack" / "stray.txt").write_text("x")
    problems, _ = verify_tree(chain)
    assert any("stray.txt: unexpected file" in p for p in problems)
    (chain / "pack" / "stray.txt").unlink()
    # a rerun whose scores moved a little (on other hardware: pretrain's bytes differ too, and
    # the report is remade from them): hashes differ, within the envelope
    metrics = {"scores": {"base": {"t": {"acc": 0.51}}}}

    def moved(ctx: StageContext) -> dict:
        (ctx.out / "metrics.json").write_text(json.dumps(metrics))
        return {}

    def other_hardware(ctx: StageContext) -> dict:
        (ctx.out / "noise.bin").write_text(json.dumps(metrics))
        return pretrain_body(ctx)

    def rerun() -> None:
        pack = {"pack": chain / "pack"}
        run_stage("pretrain", small, chain / "pretrain", pack, other_hardware, project=project)
        pretrain = {"pretrain": chain / "pretrain"}
        run_stage("report", small, results, pretrain, moved, project=project)

    saved = lock.read_text()
    rerun()
    lock.write_text(saved)
    result = check_lock(lock, trust)
    assert result["verdict"] == "envelope"
    assert "results/tiny/metrics.json" in result["artifacts_differing"]
    metrics["scores"]["base"]["t"]["acc"] = 0.9
    rerun()
    lock.write_text(saved)
    assert check_lock(lock, trust)["verdict"] == "outside"
    lock.write_text(json.dumps(read_statement_unverified(lock)["predicate"]["openrecipeLock"]))
    assert any("not a signed attestation" in p for p in verify_tree(results)[0])


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


# --------------------------------------------------------------------------------------------
# Lineage walks follow an upstream by the manifest hash recorded downstream (issue 13)

# The original's rerun: "drop" left out, another permissive source in its place, so the packed
# stream still holds enough sequences for the copy's pretrain config (a path-only walk into it
# then counts zero "drop" tokens and certifies ABSENT a model that trained on them).
RERUN_DOCS = {
    "keep": DOCS["keep"],
    "also": [("also/p", range(1, 8)), ("also/q", range(1, 6))],
}


@pytest.fixture
def copied(project: Path, small, chain: Path) -> tuple[Path, str, str]:
    """``runs/tiny`` copied to ``runs/tiny_orig``, then the original's pack and pretrain rerun
    without "drop". Returns (the copy, the pack manifest hash the copy's pretrain consumed, the
    one now at ``runs/tiny/pack``)."""
    copy = project / "runs" / "tiny_orig"
    shutil.copytree(chain, copy)
    consumed = read_manifest(chain / "pack")["manifest_sha256"]
    inputs = {"blend": chain / "blend"}
    body = lambda c: pack_body(c, RERUN_DOCS)  # noqa: E731
    run_stage("pack", small, chain / "pack", inputs, body, project=project)
    run_stage(
        "pretrain",
        small,
        chain / "pretrain",
        {"pack": chain / "pack"},
        pretrain_body,
        project=project,
    )
    now = read_manifest(chain / "pack")["manifest_sha256"]
    assert consumed != now
    # the copy still records the original's paths: its pretrain read runs/tiny/pack
    (item,) = read_manifest(copy / "pretrain")["inputs"]
    assert (item["path"], item["manifest_sha256"]) == ("runs/tiny/pack", consumed)
    return copy, consumed, now


def _names_both(message: str, copy: Path, consumed: str, now: str) -> bool:
    return (
        str(copy / "pretrain" / "manifest.json") in message
        and "runs/tiny/pack" in message
        and consumed in message
        and now in message
    )


def test_every_walk_refuses_an_upstream_that_is_another_stages_output(
    project: Path, copied: tuple[Path, str, str], signing_key, trust
) -> None:
    copy, consumed, now = copied
    for walk in (
        lambda: certify("source=drop", copy / "pretrain"),
        lambda: trace(copy / "pretrain" / "checkpoint" / "state.json"),
        lambda: diff_runs(project / "runs" / "tiny", copy),
        lambda: write_lock(project, "tiny_orig", signing_key),
    ):
        with pytest.raises(LineageError) as refused:
            walk()
        assert _names_both(str(refused.value), copy, consumed, now), str(refused.value)
    problems, _ = verify_tree(copy)
    assert any(_names_both(p, copy, consumed, now) for p in problems), problems
    # the original itself is consistent, and says so
    cert = certify("source=drop", project / "runs" / "tiny" / "pretrain")
    assert cert["absent"] and verify_tree(project / "runs" / "tiny")[0] == []
    # a certificate naming the copy, whose every relied-on file matches (what a path-only walk
    # produced): rechecking it walks by hash and refuses
    body = {k: v for k, v in cert.items() if k != "certificate_sha256"}
    body["checkpoint"] = {**body["checkpoint"], "dir": "runs/tiny_orig/pretrain"}
    # the copy's own files as such a certificate recorded them (its upstream entries are the
    # files now at the recorded paths, which is what a path-only walk read)
    body["relied_on"] = {
        **{k: v for k, v in body["relied_on"].items() if not k.startswith("runs/tiny/pretrain/")},
        **{
            f"runs/tiny_orig/pretrain/{p.relative_to(copy / 'pretrain').as_posix()}": sha256_file(p)
            for p in (copy / "pretrain").rglob("*")
            if p.is_file() and p.name != "run_info.json"
        },
    }
    path, _ = write_certificate(
        {**body, "certificate_sha256": hash_obj(body)}, project / "c", signing_key, project
    )
    problems = verify_certificate(path, trust)
    lineage = [p for p in problems if p.startswith(f"{path}: the certified lineage does not hold")]
    assert lineage and _names_both(lineage[0], copy, consumed, now), problems


def test_certify_cli_refuses_the_copied_run_instead_of_answering_absent(
    project: Path, copied: tuple[Path, str, str], monkeypatch, capsys
) -> None:
    copy, consumed, now = copied
    monkeypatch.chdir(project)
    assert main(["certify", "--absent", "source=drop", "runs/tiny_orig/pretrain"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openrecipe certify: error:") and _names_both(err, copy, consumed, now)
    assert "ABSENT" not in err


def test_verify_certificate_refuses_once_an_upstream_is_replaced(
    project: Path, small, chain: Path, signing_key, trust
) -> None:
    copy = project / "runs" / "tiny_orig"
    shutil.copytree(chain, copy)
    cert = certify("source=drop", copy / "pretrain")
    assert not cert["absent"]
    json_path, _ = write_certificate(cert, project / "certs" / "drop", signing_key, project)
    assert verify_certificate(json_path, trust) == []
    consumed = read_manifest(chain / "pack")["manifest_sha256"]
    body = lambda c: pack_body(c, RERUN_DOCS)  # noqa: E731
    run_stage("pack", small, chain / "pack", {"blend": chain / "blend"}, body, project=project)
    now = read_manifest(chain / "pack")["manifest_sha256"]
    problems = verify_certificate(json_path, trust)
    assert any(_names_both(p, copy, consumed, now) for p in problems), problems


def test_trace_of_a_consistent_copy_follows_the_recorded_hashes(project: Path, chain: Path) -> None:
    copy = project / "runs" / "tiny_orig"
    shutil.copytree(chain, copy)
    node = trace(copy / "pretrain")
    pack = node["inputs"][0]["node"]
    assert pack["dir"] == "runs/tiny/pack"
    assert (
        pack["manifest_sha256"] == read_manifest(copy / "pretrain")["inputs"][0]["manifest_sha256"]
    )


# --------------------------------------------------------------------------------------------
# verify walks the closure: raw sources, missing manifests, nested run_info.json (issue 13)


def _docs_body(text: str):
    def body(ctx: StageContext) -> dict:
        (ctx.out / "docs.jsonl").write_text(text)
        return {}

    return body


@pytest.fixture
def raw_run(project: Path) -> Path:
    """data/raw/brown (acquire) consumed by runs/tiny/curate; returns the run directory."""
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    raw = project / "data" / "raw" / "brown"
    body = _docs_body('{"id": "brown/a"}\n')
    run_stage("acquire", recipe, raw, {}, body, project=project, part="brown")
    run = project / "runs" / "tiny"
    run_stage("curate", recipe, run / "curate", {"raw_brown": raw}, body, project=project)
    return run


def test_verify_run_rehashes_the_raw_sources_it_consumed(project: Path, raw_run: Path) -> None:
    assert verify_tree(raw_run) == ([], 1)
    docs = project / "data" / "raw" / "brown" / "docs.jsonl"
    docs.write_text('{"id": "brown/forged"}\n')
    problems, _ = verify_tree(raw_run)
    assert len(problems) == 1 and problems[0].startswith(f"{docs}: sha256"), problems
    result = verify_roots([raw_run])
    assert result.checked == 1 and result.upstream == [project / "data" / "raw" / "brown"]


def test_verify_reports_a_deleted_final_stage_manifest(
    project: Path, small, chain: Path, monkeypatch, capsys
) -> None:
    """evaluate/rl is a final stage: no stage of the run names it, only results/tiny does."""
    evaluate, results = chain / "evaluate" / "rl", project / "results" / "tiny"

    def scores(ctx: StageContext) -> dict:
        (ctx.out / "scores.json").write_text('{"acc": 0.5}')
        return {}

    def evaluate_and_report() -> None:
        inputs = {"model": chain / "pretrain"}
        run_stage("evaluate", small, evaluate, inputs, scores, project=project, part="rl")
        run_stage("report", small, results, {"eval_rl": evaluate}, scores, project=project)

    evaluate_and_report()
    assert verify_tree(chain) == ([], 4)
    named = f"named as an input by {results}/manifest.json (input eval_rl)"
    (evaluate / "manifest.json").unlink()
    assert verify_tree(chain)[0] == [f"{evaluate}/manifest.json: missing; {named}"]
    shutil.rmtree(results)  # no report to name it: the directory itself gives it away
    assert verify_tree(chain)[0] == [
        f"{evaluate}/manifest.json: missing; the directory holds 2 file(s) but was never sealed"
    ]
    shutil.rmtree(evaluate)
    evaluate_and_report()
    shutil.rmtree(evaluate)
    monkeypatch.chdir(project)
    assert main(["verify", "runs/tiny"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{evaluate}/manifest.json: missing (the whole stage directory is gone); {named}",
        "verify: 3 stage directories checked (+0 upstream outside runs/tiny), 1 problem(s),"
        " 0 made by other code",
    ]


def test_verify_reports_a_run_info_nested_in_a_stage_subfolder(chain: Path) -> None:
    nested = chain / "pretrain" / "checkpoint" / "run_info.json"
    nested.write_text('{"loader": {"position": 0}}')
    problems, _ = verify_tree(chain)
    assert problems == [
        f"{nested}: unexpected file (not in {chain / 'pretrain' / 'manifest.json'})"
    ]
    assert any("run_info.json" in p for p in verify_stage_dir(chain / "pretrain"))
    # only the stage's own top-level run_info.json is not an output
    assert (chain / "pretrain" / "run_info.json").is_file()
    nested.unlink()
    assert verify_tree(chain)[0] == []


def test_verify_leaves_logs_run_files_and_temporaries_alone(project: Path, chain: Path) -> None:
    """What a real run holds beside its stages is not an unsealed stage."""
    runs = project / "runs"
    for rel in (
        "tiny/recipe.resolved.yaml",
        "tiny/recipe.resolved.origins.json",
        "tiny/report.html",
        "tiny/logs/pack.log",
        "tiny/logs/langid_shards/0.log",
        "tiny/.pack.tmp-123/partial.bin",
        "tiny/.pretrain.resume/key/step-00000001/state.json",
        "logs/acquire/brown.log",
        ".acquire/brown.resolved.yaml",
        "tiny.dvc",
    ):
        (runs / rel).parent.mkdir(parents=True, exist_ok=True)
        (runs / rel).write_text("x")
    assert verify_tree(runs) == ([], 3)
    assert verify_tree(chain) == ([], 3)
    (runs / "tiny" / "evaluate" / "rl").mkdir(parents=True)
    (runs / "tiny" / "evaluate" / "rl" / "scores.json").write_text("{}")
    assert verify_tree(runs)[0] == [
        f"{runs}/tiny/evaluate/rl/manifest.json: missing; the directory holds 1 file(s) but was "
        "never sealed"
    ]


def test_certify_refuses_a_source_the_lineage_never_acquired(project: Path, small) -> None:
    """source=wikipedia would be trivially ABSENT: a proof of a typo. Refused, sources listed."""

    def acquire(ctx: StageContext) -> dict:
        (ctx.out / "docs.jsonl").write_text('{"id": "a", "text": "x"}\n')
        return {}

    def checkpoint(ctx: StageContext) -> dict:
        (ctx.out / "weights.bin").write_bytes(b"w")
        return {}

    raw = project / "data" / "raw" / "austen"
    run_stage("acquire", small, raw, {}, acquire, project=project, part="austen")
    run = project / "runs" / "tiny" / "pretrain"
    run_stage("pretrain", small, run, {"raw_austen": raw}, checkpoint, project=project)
    with pytest.raises(
        LineageError, match=r"selector source=wikipedia: no such source .*\(sources: austen\)"
    ):
        certify("source=wikipedia", run)


def test_verify_certificate_names_each_problem(
    chain: Path, project: Path, signing_key, trust
) -> None:
    """Each way a certificate stops holding gets its own line: the markdown edited, a file it
    relied on missing or changed (with the sha256 the certificate recorded), a body whose
    certificate_sha256 is not its hash."""
    import hashlib

    cert = certify("source=drop", chain / "pretrain")
    out = project / "certs" / "drop"
    json_path, md_path = write_certificate(cert, out, signing_key, project)
    md_path.write_text(md_path.read_text() + "edited\n", encoding="utf-8")
    assert verify_certificate(json_path, trust) == [
        f"{md_path}: does not match the certificate JSON"
    ]
    write_certificate(cert, out, signing_key, project)
    rel = "runs/tiny/pack/sidecar.jsonl"
    sidecar = project / rel
    recorded = cert["relied_on"][rel]
    assert recorded == hashlib.sha256(sidecar.read_bytes()).hexdigest()
    text = sidecar.read_text()
    sidecar.unlink()
    assert f"{rel}: missing (relied on by drop.json)" in verify_certificate(json_path, trust)
    sidecar.write_text(text.replace('"drop/x"', '"keep/x"', 1))
    problems = verify_certificate(json_path, trust)
    assert f"{rel}: sha256 differs from the certificate's {recorded[:12]}…" in problems
    sidecar.write_text(text)
    assert verify_certificate(json_path, trust) == []
    forged, _ = write_certificate(
        {**cert, "certificate_sha256": "0" * 64}, project / "certs" / "forged", signing_key, project
    )
    assert verify_certificate(forged, trust)[0] == (
        f"{forged}: certificate_sha256 does not match its body; it was altered"
    )
    # signed and self-consistent, but with counts the run does not give
    body = {k: v for k, v in cert.items() if k != "certificate_sha256"}
    body = {**body, "matched_tokens": 0, "absent": True}
    lying, _ = write_certificate(
        {**body, "certificate_sha256": hash_obj(body)},
        project / "certs" / "lying",
        signing_key,
        project,
    )
    assert verify_certificate(lying, trust) == [
        f"{lying}: recomputing the counts gives {cert['matched_tokens']} matched tokens, "
        "certificate says 0"
    ]


def _repack(chain: Path, project: Path, small, docs: dict = DOCS, edit=None) -> None:
    """Pack again (``docs``; ``edit`` rewrites the sidecar's records) and pretrain on it."""

    def body(ctx: StageContext) -> dict:
        summary = pack_body(ctx, docs)
        path = ctx.out / "sidecar.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()]
        if edit:
            edit(records)
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return summary

    run_stage("pack", small, chain / "pack", {"blend": chain / "blend"}, body, project=project)
    run_stage(
        "pretrain",
        small,
        chain / "pretrain",
        {"pack": chain / "pack"},
        pretrain_body,
        project=project,
    )


def test_certify_checks_the_sidecar_against_the_packed_data(
    chain: Path, project: Path, small
) -> None:
    """A pack whose sidecar disagrees with train.idx (a record out of order, a segment count
    off) or that holds fewer sequences than trained is refused, naming the line; one with
    exactly as many sequences as trained is counted."""
    exact = {"keep": [("keep/a", range(1, 8))], "drop": [("drop/x", range(100, 109))]}
    _repack(chain, project, small, exact)  # 16 tokens: the 4 sequences that train
    assert certify("source=drop", chain / "pretrain")["matched_tokens"] == 9
    short = {"keep": [("keep/a", range(1, 8))], "drop": [("drop/x", range(100, 105))]}
    _repack(chain, project, small, short)
    with pytest.raises(LineageError, match=r"pack/train\.idx: 3 sequences, 4 consumed$"):
        certify("source=drop", chain / "pretrain")

    def renumber(records: list[dict]) -> None:
        records[1]["seq"] = 5

    _repack(chain, project, small, edit=renumber)
    with pytest.raises(LineageError, match=r"sidecar\.jsonl:2: seq 5, expected 1$"):
        certify("source=drop", chain / "pretrain")

    def miscount(records: list[dict]) -> None:
        records[0]["segments"][0][3] += 1

    _repack(chain, project, small, edit=miscount)
    with pytest.raises(
        LineageError,
        match=r"sidecar\.jsonl:1: segments hold 5 tokens, train\.idx says sequence 0 has 4$",
    ):
        certify("source=drop", chain / "pretrain")
