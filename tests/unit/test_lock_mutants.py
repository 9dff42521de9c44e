"""What a release lock promises beyond test_audit's and test_signed_release's checks (written
against the mutants those left alive): the envelope of each metric is the documented
``max(2 x stderr, 5% x |value|, 1e-6)`` (standard errors and sample counts get none);
``reproduce --check`` refuses exactly the released files edited after signing (a rerun of a
stage the report never read is judged by the envelope, a report resealed without its inputs is
refused, results that are gone are judged, not a crash); a signed lock that carries no lock is
refused by name; and it prints what it found, line by line, for each verdict."""

from __future__ import annotations

import json
import locale
import shutil
from pathlib import Path

import pytest
from test_audit import chain, pretrain_body, small  # noqa: F401 (fixtures)
from test_signed_release import _forge_metrics, released  # noqa: F401 (fixtures)

from openrecipe.errors import AttestationError, LineageError
from openrecipe.hashing import sha256_file
from openrecipe.lineage.attestation import sign, write_envelope
from openrecipe.lineage.lock import check_lock, format_check, make_lock, write_lock
from openrecipe.lineage.predicates import lock_statement
from openrecipe.manifest import read_manifest, seal, write_json_atomic
from openrecipe.stage import StageContext, run_stage


def _report(metrics: dict):
    def report(ctx: StageContext) -> dict:
        (ctx.out / "metrics.json").write_text(json.dumps(metrics))
        return {}

    return report


def test_the_envelope_is_two_stderr_or_five_percent_or_a_floor(
    project: Path,
    small,  # noqa: F811
    chain: Path,  # noqa: F811
) -> None:
    metrics = {
        "scores": {"base": {"t": {"acc": 0.5, "acc_stderr": 0.04, "n": 100, "zero": 0.0}}},
        "final_loss": -2.0,
    }
    results = project / "results" / "tiny"
    inputs = {"pretrain": chain / "pretrain"}
    run_stage("report", small, results, inputs, _report(metrics), project=project)
    lock = make_lock(project, "tiny")
    assert lock["metrics"] == {
        "final_loss": -2.0,
        "scores.base.t.acc": 0.5,
        "scores.base.t.acc_stderr": 0.04,
        "scores.base.t.n": 100,
        "scores.base.t.zero": 0.0,
    }
    assert lock["envelope"] == {
        "final_loss": pytest.approx(0.1),  # 5% of |value|: no stderr recorded
        "scores.base.t.acc": pytest.approx(0.08),  # 2 x stderr, above 5% (0.025)
        "scores.base.t.zero": 1e-6,  # the floor
    }


RESULT = {
    "recipe": "tiny",
    "signed_by": "ed25519 key 1234abcd (releaser)",
    "artifacts_checked": 12,
}


def test_reproduce_says_exact_and_what_it_means() -> None:
    result = {**RESULT, "verdict": "exact", "artifacts_differing": []}
    assert format_check({**result, "metrics_outside_envelope": []}).splitlines() == [
        "reproduce tiny: EXACT (12 locked artifacts, 0 differ)",
        "  lock signed by ed25519 key 1234abcd (releaser)",
        "  every artifact hash matches the signed lock: these are the signed files",
    ]


def test_reproduce_says_envelope_names_each_difference_and_notes_code_drift() -> None:
    result = {
        **RESULT,
        "verdict": "envelope",
        "artifacts_differing": ["results/tiny/metrics.json", "runs/tiny/pretrain/noise.bin"],
        "made_by_other_code": ["runs/tiny/pack: made by other code"],
        "metrics_outside_envelope": [],
    }
    assert format_check(result).splitlines() == [
        "reproduce tiny: ENVELOPE (12 locked artifacts, 2 differ)",
        "  lock signed by ed25519 key 1234abcd (releaser)",
        "  hashes differ (these are not the signed files), every metric is within the lock's "
        "envelope",
        "  differs: results/tiny/metrics.json",
        "  differs: runs/tiny/pretrain/noise.bin",
        "  note: runs/tiny/pack: made by other code",
    ]


def test_reproduce_says_outside_and_names_each_metric() -> None:
    outside = {"metric": "scores.base.t.acc", "locked": 0.5, "now": 0.9, "tolerance": 0.025}
    result = {
        **RESULT,
        "verdict": "outside",
        "artifacts_differing": ["results/tiny/metrics.json"],
        "metrics_outside_envelope": [outside, {**outside, "metric": "final_loss", "now": None}],
    }
    assert format_check(result).splitlines() == [
        "reproduce tiny: OUTSIDE (12 locked artifacts, 1 differ)",
        "  lock signed by ed25519 key 1234abcd (releaser)",
        "  differs: results/tiny/metrics.json",
        "  outside envelope: scores.base.t.acc locked 0.5 now 0.9 (±0.025)",
        "  outside envelope: final_loss locked 0.5 now None (±0.025)",
    ]


def test_a_rerun_of_a_stage_the_report_never_read_is_judged_by_the_envelope(
    project: Path,
    small,  # noqa: F811
    chain: Path,  # noqa: F811
    signing_key,
    trust,
) -> None:
    """runs/tiny/evaluate/extra is locked (every stage of the run is) but feeds no report: its
    rerun on other hardware differs from the lock without any released file being edited."""
    extra = chain / "evaluate" / "extra"

    def scores(noise: str):
        def body(ctx: StageContext) -> dict:
            (ctx.out / "scores.json").write_text(noise)
            return {}

        return body

    model = {"model": chain / "pretrain"}
    run_stage("evaluate", small, extra, model, scores("1"), project=project, part="extra")
    results = project / "results" / "tiny"
    metrics = {"scores": {"base": {"t": {"acc": 0.5}}}}
    run_stage("report", small, results, model, _report(metrics), project=project)
    lock = write_lock(project, "tiny", signing_key)
    run_stage("evaluate", small, extra, model, scores("2"), project=project, part="extra")
    result = check_lock(lock, trust)
    assert result["verdict"] == "envelope"
    assert result["artifacts_differing"] == [
        "runs/tiny/evaluate/extra/manifest.json#manifest_sha256",
        "runs/tiny/evaluate/extra/scores.json",
    ]


def test_the_refusal_names_exactly_the_edited_released_files(
    project: Path,
    small,  # noqa: F811
    chain: Path,  # noqa: F811
    signing_key,
    trust,
) -> None:
    def report(ctx: StageContext) -> dict:
        (ctx.out / "metrics.json").write_text(json.dumps({"scores": {"t": {"acc": 0.5}}}))
        (ctx.out / "card.md").write_text("acc 0.5\n")
        return {}

    results = project / "results" / "tiny"
    run_stage("report", small, results, {"pretrain": chain / "pretrain"}, report, project=project)
    lock = write_lock(project, "tiny", signing_key)
    signer = check_lock(lock, trust)["signed_by"]
    manifest = read_manifest(results)
    for rel, text in (("metrics.json", '{"scores": {"t": {"acc": 0.9}}}'), ("card.md", "0.9\n")):
        (results / rel).write_text(text)
        manifest["outputs"][rel] = {"sha256": sha256_file(results / rel), "bytes": len(text)}
    write_json_atomic(results / "manifest.json", seal(manifest))
    with pytest.raises(AttestationError) as refused:
        check_lock(lock, trust)
    assert str(refused.value) == (
        f"{lock}: results/tiny/card.md, results/tiny/metrics.json differ from the digests "
        f"signed by {signer}, although every stage the report was made from is unchanged: the "
        "released files were edited after signing (or remade by other report code); they are "
        "not the signed release"
    )


def test_a_report_resealed_without_its_inputs_is_still_refused(
    project: Path,
    released: Path,  # noqa: F811
    trust,
) -> None:
    results = project / "results" / "tiny"
    _forge_metrics(results, 0.51)
    manifest = read_manifest(results)
    del manifest["inputs"]  # nothing left to compare against the lock
    write_json_atomic(results / "manifest.json", seal(manifest))
    with pytest.raises(AttestationError, match=r"results/tiny/metrics\.json differ"):
        check_lock(released, trust)


def test_a_lock_whose_results_are_gone_is_judged_outside(
    project: Path,
    released: Path,  # noqa: F811
    trust,
) -> None:
    """The lock is kept elsewhere; the run's results/tiny was deleted: every metric is missing
    now, so the verdict is outside (not a crash, not an exact match)."""
    kept = project / "release.lock.json"
    shutil.copy2(released, kept)
    shutil.rmtree(project / "results" / "tiny")
    result = check_lock(kept, trust)
    assert result["verdict"] == "outside"
    assert result["metrics_outside_envelope"] == [
        {"metric": "scores.base.t.acc", "locked": 0.5, "now": None, "tolerance": 0.025}
    ]


def test_a_signed_statement_that_carries_no_lock_is_refused_by_name(
    project: Path,
    released: Path,  # noqa: F811
    signing_key,
    trust,
) -> None:
    stmt = lock_statement(project, make_lock(project, "tiny"))
    del stmt["predicate"]["openrecipeLock"]
    write_envelope(released, sign(stmt, signing_key))
    with pytest.raises(AttestationError) as refused:
        check_lock(released, trust)
    assert str(refused.value) == (
        f"{released}: the provenance carries no openrecipeLock (not a release lock)"
    )


def test_a_signed_lock_whose_hash_disagrees_with_its_content_is_refused_by_name(
    project: Path,
    released: Path,  # noqa: F811
    signing_key,
    trust,
) -> None:
    """Signed by a trusted key yet internally inconsistent (a lock edited before signing, by
    other tooling): refused, naming the file."""
    lock = make_lock(project, "tiny")
    lock["metrics"]["scores.base.t.acc"] = 0.9  # lock_sha256 left as computed for 0.5
    write_envelope(released, sign(lock_statement(project, lock), signing_key))
    with pytest.raises(LineageError) as refused:
        check_lock(released, trust)
    assert str(refused.value) == (
        f"{released}: lock_sha256 does not match its content; it was altered"
    )


def test_every_stage_input_of_the_report_is_compared_whatever_comes_first(
    project: Path,
    released: Path,  # noqa: F811
    small,  # noqa: F811
    chain: Path,  # noqa: F811
    trust,
) -> None:
    """A rerun on other hardware (pretrain's bytes differ, the report is remade from them) is
    judged by the envelope, also when the report's manifest lists a package input before its
    stage inputs (a manifest written by other tooling): the package is skipped, not the end."""

    def other_hardware(ctx: StageContext) -> dict:
        (ctx.out / "noise.bin").write_text("other kernels")
        return pretrain_body(ctx)

    signed = released.read_bytes()  # the report's rerun replaces results/tiny
    pack = {"pack": chain / "pack"}
    run_stage("pretrain", small, chain / "pretrain", pack, other_hardware, project=project)
    results = project / "results" / "tiny"
    metrics = {"scores": {"base": {"t": {"acc": 0.51}}}}
    inputs = {"pretrain": chain / "pretrain"}
    run_stage("report", small, results, inputs, _report(metrics), project=project)
    released.write_bytes(signed)
    result = check_lock(released, trust)
    assert result["verdict"] == "envelope"
    # a file the rerun added counts as a difference like a changed one
    assert result["artifacts_differing"] == [
        "results/tiny/manifest.json#manifest_sha256",
        "results/tiny/metrics.json",
        "runs/tiny/pretrain/manifest.json#manifest_sha256",
        "runs/tiny/pretrain/noise.bin",
    ]
    manifest = read_manifest(results)
    package = {"name": "a_tool", "kind": "pip", "version": "1.0", "sha256": "0" * 64}
    manifest["inputs"] = [package, *manifest["inputs"]]
    write_json_atomic(results / "manifest.json", seal(manifest))
    assert check_lock(released, trust)["verdict"] == "envelope"


def test_a_metric_exactly_on_the_envelope_is_within_it(
    project: Path,
    small,  # noqa: F811
    chain: Path,  # noqa: F811
    signing_key,
    trust,
) -> None:
    """Locked 0.5 with stderr 0.125: the envelope is 0.25, and a rerun scoring 0.75 lies on
    its edge, inside (|0.75 - 0.5| = 0.25 exactly in binary floating point)."""
    results = project / "results" / "tiny"
    inputs = {"pretrain": chain / "pretrain"}

    def run(acc: float, noise: str) -> None:
        def other_hardware(ctx: StageContext) -> dict:
            (ctx.out / "noise.bin").write_text(noise)
            return pretrain_body(ctx)

        pack = {"pack": chain / "pack"}
        run_stage("pretrain", small, chain / "pretrain", pack, other_hardware, project=project)
        metrics = {"scores": {"t": {"acc": acc, "acc_stderr": 0.125}}}
        run_stage("report", small, results, inputs, _report(metrics), project=project)

    run(0.5, "first")
    lock = write_lock(project, "tiny", signing_key)
    signed = lock.read_bytes()
    run(0.75, "second")
    lock.write_bytes(signed)
    result = check_lock(lock, trust)
    assert (result["verdict"], result["metrics_outside_envelope"]) == ("envelope", [])
    run(0.875, "third")
    lock.write_bytes(signed)
    assert check_lock(lock, trust)["metrics_outside_envelope"] == [
        {"metric": "scores.t.acc", "locked": 0.5, "now": 0.875, "tolerance": 0.25}
    ]


def _made_by_other_code(stage_dir: Path) -> None:
    """Reseal a manifest as if another version of its stage's code had made it."""
    manifest = read_manifest(stage_dir)
    manifest["code"] = {**manifest["code"], "sha256": "0" * 64}
    write_json_atomic(stage_dir / "manifest.json", seal(manifest))


def test_reproduce_notes_stages_made_by_other_code_in_the_run_and_its_results(
    project: Path,
    small,  # noqa: F811
    chain: Path,  # noqa: F811
    signing_key,
    trust,
) -> None:
    extra = chain / "evaluate" / "extra"  # read by no later stage, so it can be resealed
    model = {"model": chain / "pretrain"}
    run_stage("evaluate", small, extra, model, _report({}), project=project, part="extra")
    results = project / "results" / "tiny"
    metrics = {"scores": {"t": {"acc": 0.5}}}
    run_stage("report", small, results, model, _report(metrics), project=project)
    _made_by_other_code(extra)
    _made_by_other_code(results)
    lock = write_lock(project, "tiny", signing_key)
    notes = check_lock(lock, trust)["made_by_other_code"]
    assert [note.split(" (")[0] for note in notes] == [
        "results/tiny: made by other code",
        "runs/tiny/evaluate/extra: made by other code",
    ]


def test_a_lock_is_refused_until_the_run_and_its_results_verify(
    project: Path,
    released: Path,  # noqa: F811
    chain: Path,  # noqa: F811
) -> None:
    with pytest.raises(LineageError) as refused:
        make_lock(project, "nothing")  # neither runs/nothing nor results/nothing
    assert str(refused.value) == (
        f"run nothing fails verify:\n  {project / 'runs' / 'nothing'}: no such directory"
    )
    results = project / "results" / "tiny"
    (results / "metrics.json").write_text("{}")
    (chain / "pack" / "stray.txt").write_text("x")
    with pytest.raises(LineageError) as refused:
        make_lock(project, "tiny")
    lines = str(refused.value).splitlines()
    assert lines[0] == "run tiny fails verify:"
    assert lines[1].startswith(f"  {results / 'metrics.json'}: sha256"), lines
    assert lines[2].startswith(f"  {chain / 'pack' / 'stray.txt'}: unexpected file"), lines
    assert len(lines) == 3, lines


def test_a_lock_of_results_from_uncommitted_code_or_without_metrics_is_refused(
    project: Path,
    small,  # noqa: F811
    chain: Path,  # noqa: F811
) -> None:
    with pytest.raises(LineageError) as refused:  # the run has no report yet
        make_lock(project, "tiny")
    assert str(refused.value) == "results/tiny/metrics.json: missing; is the run finished?"
    results = project / "results" / "tiny"
    marked = {"reproducible": False, "reason": "uncommitted changes in src/x.py"}
    metrics = {"scores": {"t": {"acc": 0.5}}, "reproducibility": marked}
    run_stage(
        "report", small, results, {"m": chain / "pretrain"}, _report(metrics), project=project
    )
    with pytest.raises(LineageError) as refused:
        make_lock(project, "tiny")  # a release by default
    assert str(refused.value) == (
        f"{results / 'metrics.json'}: made from uncommitted code (uncommitted changes in "
        "src/x.py); commit the code and rerun before locking, or pass --allow-uncommitted for "
        "a lock that is not a release"
    )
    assert make_lock(project, "tiny", allow_uncommitted=True)["metrics"] == {"scores.t.acc": 0.5}


def test_the_uncommitted_mark_is_read_as_utf8_whatever_the_locale(
    project: Path,
    small,  # noqa: F811
    chain: Path,  # noqa: F811
) -> None:
    """A reason naming a non-ASCII file, under an ASCII locale: still refused (never skipped
    as unreadable)."""
    results = project / "results" / "tiny"
    marked = {"reproducible": False, "reason": "uncommitted changes in src/café.py"}
    metrics = {"scores": {"t": {"acc": 0.5}}, "reproducibility": marked}

    def report(ctx: StageContext) -> dict:
        (ctx.out / "metrics.json").write_bytes(json.dumps(metrics, ensure_ascii=False).encode())
        return {}

    run_stage("report", small, results, {"m": chain / "pretrain"}, report, project=project)
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # open() without an encoding would read ASCII
    try:
        with pytest.raises(LineageError, match="made from uncommitted code"):
            make_lock(project, "tiny")
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)


def test_a_run_reading_a_stage_outside_the_project_cannot_be_locked(
    project: Path,
    small,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Lock paths are project-relative; a raw source acquired outside the project has none."""
    shared = tmp_path / "shared" / "brown"

    def docs(ctx: StageContext) -> dict:
        (ctx.out / "docs.jsonl").write_text('{"id": "brown/a"}\n')
        return {}

    run_stage("acquire", small, shared, {}, docs, project=project, part="brown")
    run = project / "runs" / "tiny"
    run_stage("curate", small, run / "curate", {"raw_brown": shared}, docs, project=project)
    results = project / "results" / "tiny"
    metrics = {"scores": {"t": {"acc": 0.5}}}
    inputs = {"curate": run / "curate"}
    run_stage("report", small, results, inputs, _report(metrics), project=project)
    with pytest.raises(LineageError) as refused:
        make_lock(project, "tiny")
    assert str(refused.value) == (
        f"{shared.resolve()}: a stage of the run lies outside the project {project.resolve()}"
    )


def test_scores_of_a_symlinked_run_are_read_under_the_runs_own_name(project: Path) -> None:
    """runs/tiny may be a symlink (to scratch space): its results are results/tiny, not
    results/<the link's target name>."""
    from openrecipe.lineage.diff import scores

    target = project / "scratch" / "tiny-2026"
    target.mkdir(parents=True)
    (project / "runs").mkdir(exist_ok=True)
    (project / "runs" / "tiny").symlink_to(target)
    (project / "results" / "tiny").mkdir(parents=True)
    (project / "results" / "tiny" / "metrics.json").write_text('{"scores": {"t": {"acc": 0.5}}}')
    assert scores(project / "runs" / "tiny") == {"scores.t.acc": 0.5}
