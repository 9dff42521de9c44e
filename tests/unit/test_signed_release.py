"""Signed release locks and absence certificates end to end on the hand-built stage chain of
test_audit.py, with real files and a real key: the envelope each verb writes, who signed it,
and the refusals (forged and resealed scores, edited payload, unsigned file, foreign key)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from test_audit import chain, pretrain_body, small  # noqa: F401 (fixtures)

from openrecipe.cli import main
from openrecipe.errors import AttestationError
from openrecipe.hashing import sha256_file
from openrecipe.lineage.attestation import generate_key, read_statement_unverified, subject_digests
from openrecipe.lineage.certify import (
    certify,
    open_certificate,
    verify_certificate,
    write_certificate,
)
from openrecipe.lineage.lock import check_lock, write_lock
from openrecipe.lineage.verify import verify_tree
from openrecipe.manifest import read_manifest, seal, write_json_atomic
from openrecipe.stage import StageContext, run_stage


def _report(acc: float):
    def report(ctx: StageContext) -> dict:
        (ctx.out / "metrics.json").write_text(json.dumps({"scores": {"base": {"t": {"acc": acc}}}}))
        return {}

    return report


@pytest.fixture
def released(chain: Path, project: Path, small, signing_key) -> Path:  # noqa: F811
    """The chain with its report in results/tiny and a signed release lock."""
    results = project / "results" / "tiny"
    inputs = {"pretrain": chain / "pretrain"}
    run_stage("report", small, results, inputs, _report(0.5), project=project)
    return write_lock(project, "tiny", signing_key)


def _forge_metrics(results: Path, acc: float) -> None:
    """What anyone can do with the project's own code: edit a released file and reseal."""
    (results / "metrics.json").write_text(json.dumps({"scores": {"base": {"t": {"acc": acc}}}}))
    manifest = read_manifest(results)
    manifest["outputs"]["metrics.json"] = {
        "sha256": sha256_file(results / "metrics.json"),
        "bytes": (results / "metrics.json").stat().st_size,
    }
    write_json_atomic(results / "manifest.json", seal(manifest))


# --------------------------------------------------------------------------------------------
# Release lock


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
    assert not any("#" in name for name in subjects)  # manifest content hashes are not files
    build = stmt["predicate"]["buildDefinition"]
    assert build["externalParameters"]["recipe"] == "tiny"
    assert build["buildType"].startswith("https://")
    assert stmt["predicate"]["runDetails"]["builder"]["id"].startswith("https://")
    lock = stmt["predicate"]["openrecipeLock"]
    assert lock["metrics"] == {"scores.base.t.acc": 0.5} and lock["lock_sha256"]
    result = check_lock(released, trust)
    assert result["verdict"] == "exact" and signing_key.public.keyid in result["signed_by"]
    # one run, one key: the same lock, byte for byte
    before = released.read_bytes()
    assert write_lock(project, "tiny", signing_key).read_bytes() == before


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


def test_edited_lock_payload_is_caught_by_verify_and_refused_by_reproduce(
    project: Path, released: Path, trust
) -> None:
    envelope = json.loads(released.read_text())
    stmt = json.loads(base64.b64decode(envelope["payload"]))
    stmt["predicate"]["openrecipeLock"]["metrics"]["scores.base.t.acc"] = 0.9
    envelope["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    released.write_text(json.dumps(envelope))
    assert any("lock_sha256" in p for p in verify_tree(project / "results" / "tiny")[0])
    with pytest.raises(AttestationError, match="does not verify"):
        check_lock(released, trust)


def test_reproduce_refuses_unsigned_and_foreign_locks_with_a_clear_message(
    project: Path, released: Path, signing_key, capsys
) -> None:
    assert main(["reproduce", "--check", str(released)]) == 0  # default trust: your own key
    assert f"lock signed by {signing_key.public.keyid}" in capsys.readouterr().out
    # a forger signs a lock of the forged run with their own key: not trusted
    forger = generate_key(project / "forger", "mallory")
    _forge_metrics(project / "results" / "tiny", 0.99)
    write_lock(project, "tiny", forger)
    assert main(["reproduce", "--check", str(released)]) == 2
    err = capsys.readouterr().err
    assert str(released) in err and forger.public.keyid in err and "not a trusted key" in err
    # ...unless the auditor chooses to trust that key
    pub = str(forger.path) + ".pub"
    assert main(["reproduce", "--check", str(released), "--trusted-key", pub]) == 0
    assert "mallory" in capsys.readouterr().out
    signers = project / "allowed_signers"
    signers.write_text(f"release@lab {signing_key.public.openssh()}\n")
    assert main(["reproduce", "--check", str(released), "--allowed-signers", str(signers)]) == 2
    assert "not a trusted key" in capsys.readouterr().err
    unsigned = read_statement_unverified(released)["predicate"]["openrecipeLock"]
    released.write_text(json.dumps(unsigned))  # the format before signing
    assert main(["reproduce", "--check", str(released)]) == 2
    assert "not a signed attestation" in capsys.readouterr().err


def test_lock_without_a_key_is_refused_before_writing(
    project: Path, released: Path, capsys
) -> None:
    before = released.read_bytes()
    missing = project / "no_key"
    assert main(["lock", "tiny", "--key", str(missing)]) == 2
    assert "create one with `openrecipe keygen`" in capsys.readouterr().err
    assert released.read_bytes() == before


# --------------------------------------------------------------------------------------------
# Absence certificate


def test_certificate_is_an_absence_statement_about_the_checkpoint(
    chain: Path,  # noqa: F811
    project: Path,
    signing_key,
    trust,
    capsys,
) -> None:
    cert = certify("source=drop", chain / "pretrain")
    out = project / "certs" / "drop"
    json_path, _ = write_certificate(cert, out, signing_key, project)
    stmt = read_statement_unverified(json_path)
    assert stmt["predicateType"] == "https://openrecipe.dev/attestation/absence/v1"
    assert stmt["predicate"] == cert
    assert "runs/tiny/pretrain/manifest.json" in subject_digests(stmt)
    assert open_certificate(json_path, trust).signer == signing_key.public
    assert main(["verify-certificate", str(json_path)]) == 0  # the certificate holds
    out_text = capsys.readouterr().out
    assert f"signed by {signing_key.public.describe()}" in out_text
    # a forger who re-signs an edited claim with their own key is not trusted
    forger = generate_key(project / "forger", "mallory")
    write_certificate({**cert, "matched_tokens": 0, "absent": True}, out, forger, project)
    with pytest.raises(AttestationError, match="not a trusted key"):
        verify_certificate(json_path, trust)
    assert main(["verify-certificate", str(json_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openrecipe verify-certificate: error: ") and str(json_path) in err


def test_certificate_checks_the_model_it_is_about(
    chain: Path,  # noqa: F811
    project: Path,
    small,  # noqa: F811
    signing_key,
    trust,
) -> None:
    def with_weights(ctx: StageContext) -> dict:
        (ctx.out / "model").mkdir()
        (ctx.out / "model" / "weights.bin").write_bytes(b"\x00" * 64)
        return pretrain_body(ctx)

    inputs = {"pack": chain / "pack"}
    run_stage("pretrain", small, chain / "pretrain", inputs, with_weights, project=project)
    cert = certify("source=drop", chain / "pretrain")
    weights = "runs/tiny/pretrain/model/weights.bin"
    assert weights not in cert["relied_on"]  # the counts never read it
    json_path, _ = write_certificate(cert, project / "certs" / "drop", signing_key, project)
    assert weights in subject_digests(read_statement_unverified(json_path))
    (chain / "pretrain" / "model" / "weights.bin").write_bytes(b"\x01" * 64)  # another model
    problems = verify_certificate(json_path, trust)
    assert any(f"{weights}: sha256 differs" in p for p in problems)


def test_certify_cli_signs_with_the_default_key_or_refuses_without_one(
    chain: Path,  # noqa: F811
    project: Path,
    signing_key,
    trust,
    capsys,
) -> None:
    out = project / "certs" / "absent"
    args = ["certify", "--absent", "source=never_packed", str(chain / "pretrain"), "--out"]
    assert main([*args, str(out)]) == 0
    assert f"signed by {signing_key.public.describe()}" in capsys.readouterr().out
    assert verify_certificate(out.with_suffix(".json"), trust) == []
    missing = project / "no_key"
    assert main([*args, str(project / "certs" / "other"), "--key", str(missing)]) == 2
    assert f"{missing}: no signing key there" in capsys.readouterr().err
    assert not (project / "certs" / "other.json").exists()


def test_lock_refuses_results_made_from_uncommitted_code(
    chain: Path,  # noqa: F811
    project: Path,
    small,  # noqa: F811
    signing_key,
    trust,
) -> None:
    def dirty_report(ctx: StageContext) -> dict:
        body = {
            "scores": {"base": {"t": {"acc": 0.5}}},
            "reproducibility": {"reproducible": False, "reason": "uncommitted changes in src/x.py"},
        }
        (ctx.out / "metrics.json").write_text(json.dumps(body))
        return {}

    results = project / "results" / "tiny"
    run_stage(
        "report", small, results, {"pretrain": chain / "pretrain"}, dirty_report, project=project
    )
    with pytest.raises(
        Exception,
        match=r"metrics.json: made from uncommitted code \(uncommitted changes in src/x.py\)",
    ):
        write_lock(project, "tiny", signing_key)
    assert not (results / "release.lock.json").exists()
    lock = write_lock(project, "tiny", signing_key, allow_uncommitted=True)
    result = check_lock(lock, trust)
    assert result["verdict"] == "exact" and result["made_by_other_code"] == []
