"""What verify promises beyond test_audit's checks (written against the mutants those left
alive): every problem line names its file and, for an altered file, both hashes' first 12
digits; one missing output does not hide the next one's tampering; a manifest that is unreadable,
or resealed without outputs, is reported instead of crashing the audit; an audit file is read
as UTF-8 whatever the locale; ``check_stage_dir`` works on its own; and the prefetch hands the
hasher exactly the listed outputs that are present."""

from __future__ import annotations

import hashlib
import json
import locale
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from test_audit import DOCS, blend_body, chain, small  # noqa: F401 (fixtures)

from openrecipe.hashing import hash_obj
from openrecipe.lineage import verify as verify_module
from openrecipe.lineage.parallel_hash import FileHasher
from openrecipe.lineage.verify import (
    Verification,
    check_stage_dir,
    prefetch_stage_dir,
    verify_roots,
    verify_tree,
)
from openrecipe.manifest import read_manifest
from openrecipe.recipe import load_recipe
from openrecipe.stage import StageContext, run_stage


@pytest.fixture
def ascii_locale() -> Iterator[None]:
    """The C locale without Python's UTF-8 coercion: text opened without an encoding is ASCII."""
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)


def _listed(stage_dir: Path) -> list[str]:
    return sorted(read_manifest(stage_dir)["outputs"])


def _altered(path: Path, recorded: str, content: bytes) -> str:
    actual = hashlib.sha256(content).hexdigest()
    return f"{path}: sha256 {actual[:12]}… does not match manifest {recorded[:12]}…"


def test_a_stage_checked_on_its_own_names_both_hashes(chain: Path) -> None:  # noqa: F811
    pack = chain / "pack"
    assert check_stage_dir(pack) == []
    rel = _listed(pack)[0]
    recorded = read_manifest(pack)["outputs"][rel]["sha256"]
    (pack / rel).write_bytes(b"forged")
    assert check_stage_dir(pack) == [_altered(pack / rel, recorded, b"forged")]


def test_a_missing_output_does_not_hide_the_next_ones(chain: Path) -> None:  # noqa: F811
    pack = chain / "pack"
    first, second, *_ = _listed(pack)
    recorded = read_manifest(pack)["outputs"][second]["sha256"]
    (pack / first).unlink()
    (pack / second).write_bytes(b"forged")
    assert verify_tree(chain)[0] == [
        f"{pack / first}: missing (listed in {pack / 'manifest.json'})",
        _altered(pack / second, recorded, b"forged"),
    ]


def test_an_unreadable_manifest_is_reported_and_the_walk_goes_on(chain: Path) -> None:  # noqa: F811
    manifest = chain / "blend" / "manifest.json"  # the first stage directory walked
    manifest.write_text(manifest.read_text()[:-20])
    problems = check_stage_dir(chain / "blend")
    assert len(problems) == 1 and problems[0].startswith(f"{manifest}: not valid JSON"), problems
    state = chain / "pretrain" / "checkpoint" / "state.json"  # two stages further on
    recorded = read_manifest(chain / "pretrain")["outputs"]["checkpoint/state.json"]["sha256"]
    state.write_text("{}")
    problems = verify_tree(chain)[0]
    assert problems[0].startswith(f"{manifest}: not valid JSON"), problems
    assert _altered(state, recorded, b"{}") in problems


def _reseal(stage_dir: Path, change) -> None:
    """Edit a manifest and recompute its own hash, as a forger would."""
    body = {k: v for k, v in read_manifest(stage_dir).items() if k != "manifest_sha256"}
    change(body)
    (stage_dir / "manifest.json").write_text(
        json.dumps({**body, "manifest_sha256": hash_obj(body)})
    )


def test_an_input_that_records_no_path_is_reported(chain: Path) -> None:  # noqa: F811
    pretrain = chain / "pretrain"
    _reseal(pretrain, lambda body: [i.pop("path") for i in body["inputs"] if "stage" in i])
    assert verify_tree(chain)[0] == [
        f"{pretrain / 'manifest.json'}: input 'pack' records no path or manifest_sha256; "
        "the upstream stage cannot be identified"
    ]


def test_a_manifest_resealed_without_outputs_leaves_every_file_unexpected(
    chain: Path,  # noqa: F811
) -> None:
    """A forger who drops the outputs and reseals the manifest's own hash: verify names every
    file as not in the manifest (it does not stop with a traceback)."""
    pack = chain / "pack"
    listed = _listed(pack)
    _reseal(pack, lambda body: body.pop("outputs"))
    assert check_stage_dir(pack) == [
        f"{pack / rel}: unexpected file (not in {pack / 'manifest.json'})" for rel in listed
    ]


def test_an_audit_file_is_read_as_utf8_whatever_the_locale(
    chain: Path,  # noqa: F811
    ascii_locale: None,
) -> None:
    """A lock edited by hand (non-ASCII text, no envelope) is reported by name, as on a UTF-8
    machine: verify neither misreads it nor stops on it under an ASCII locale."""
    lock = chain / "pretrain" / "release.lock.json"
    lock.write_bytes(json.dumps({"note": "signé à la main"}, ensure_ascii=False).encode())
    problems, checked = verify_tree(chain)
    assert checked == 3
    assert len(problems) == 1 and problems[0].startswith(f"{lock}: "), problems


class _Recording(FileHasher):
    """The real hasher, also noting every path it is asked to prefetch."""

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.named: list[Path] = []

    def prefetch(self, paths: Iterable[Path]) -> None:
        paths = list(paths)
        self.named += paths
        super().prefetch(paths)


def test_the_prefetch_names_the_listed_outputs_present(chain: Path) -> None:  # noqa: F811
    pack = chain / "pack"
    first, *rest = _listed(pack)
    (pack / first).unlink()  # a missing file is reported by the check, never hashed
    (pack / "stray.txt").write_text("not listed")
    with _Recording() as hasher:
        prefetch_stage_dir(pack, hasher)
        assert hasher.named == [pack / rel for rel in rest]
        (pack / "manifest.json").write_text("{")
        prefetch_stage_dir(pack, hasher)  # unreadable: nothing to start (the check reports it)
        assert hasher.named == [pack / rel for rel in rest]


def test_dvc_pointer_files_and_hidden_files_are_not_an_unsealed_stage(project: Path) -> None:
    """``dvc add data/raw/brown`` writes ``data/raw/brown.dvc`` and ``data/raw/.gitignore``
    beside the stage directory: neither makes ``data/raw`` a stage that was never sealed; any
    other file there does."""
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    raw = project / "data" / "raw"

    def acquire(ctx: StageContext) -> dict:
        (ctx.out / "docs.jsonl").write_text('{"id": "brown/a"}\n')
        return {}

    run_stage("acquire", recipe, raw / "brown", {}, acquire, project=project, part="brown")
    (raw / "brown.dvc").write_text("outs:\n- path: brown\n")
    (raw / ".gitignore").write_text("/brown\n")
    assert verify_tree(project / "data") == ([], 1)
    (raw / "notes.txt").write_text("x")
    assert verify_tree(project / "data")[0] == [
        f"{raw / 'manifest.json'}: missing; the directory holds 1 file(s) but was never sealed"
    ]


def test_roots_that_are_not_runs_are_named(project: Path) -> None:
    gone = project / "runs" / "gone"
    assert verify_roots([gone]) == Verification([f"{gone}: no such directory"], 0, [])
    empty = project / "runs" / "empty"
    empty.mkdir(parents=True)
    assert verify_roots([empty]) == Verification(
        [f"{empty}: no manifest.json found; not a run directory"], 0, []
    )


def _scores(ctx: StageContext) -> dict:
    (ctx.out / "scores.json").write_text('{"acc": 0.5}')
    return {}


def test_a_missing_manifest_names_each_consumer_once(
    project: Path,
    small,  # noqa: F811
    chain: Path,  # noqa: F811
) -> None:
    """evaluate/rl read by a stage of the run and by the report in results/tiny: both named,
    each once, whether results/tiny is verified with the run or only consulted."""
    evaluate, sft = chain / "evaluate" / "rl", chain / "evaluate" / "sft"
    results = project / "results" / "tiny"
    model = {"model": chain / "pretrain"}
    run_stage("evaluate", small, evaluate, model, _scores, project=project, part="rl")
    run_stage("evaluate", small, sft, {"model": evaluate}, _scores, project=project, part="sft")
    run_stage("report", small, results, {"eval_rl": evaluate}, _scores, project=project)
    (evaluate / "manifest.json").unlink()
    by_sft = f"{sft}/manifest.json (input model)"
    by_report = f"{results}/manifest.json (input eval_rl)"
    missing = f"{evaluate}/manifest.json: missing; named as an input by "
    assert verify_tree(chain)[0] == [missing + f"{by_sft}, {by_report}"]
    assert verify_roots([chain, results]).problems == [missing + f"{by_report}, {by_sft}"]


def test_the_report_a_run_feeds_is_consulted_not_checked(
    project: Path,
    small,  # noqa: F811
    chain: Path,  # noqa: F811
) -> None:
    """Verifying runs/tiny reads results/tiny's manifest only for the stages it names; the
    report's own files are checked when results/tiny is verified."""
    results = project / "results" / "tiny"
    run_stage("report", small, results, {"pretrain": chain / "pretrain"}, _scores, project=project)
    recorded = read_manifest(results)["outputs"]["scores.json"]["sha256"]
    (results / "scores.json").write_text('{"acc": 0.9}')
    assert verify_tree(chain) == ([], 3)
    assert verify_tree(results)[0] == [_altered(results / "scores.json", recorded, b'{"acc": 0.9}')]


def test_a_root_that_is_gone_is_reported_beside_the_others(chain: Path) -> None:  # noqa: F811
    gone = chain.parent / "gone"
    result = verify_roots([chain, gone])
    assert (result.problems, result.checked) == ([f"{gone}: no such directory"], 3)


def test_verify_hashes_on_the_workers_asked_for(chain: Path, monkeypatch) -> None:  # noqa: F811
    """``openrecipe verify --workers N`` (a shared login node): the hasher gets N threads."""
    made: list[FileHasher] = []

    class Noted(FileHasher):
        def __init__(self, workers: int | None = None) -> None:
            super().__init__(workers)
            made.append(self)

    monkeypatch.setattr(verify_module, "FileHasher", Noted)
    assert verify_roots([chain], workers=1).problems == []
    assert [hasher.workers for hasher in made] == [1]


@pytest.fixture
def reported(project: Path, small, chain: Path) -> Path:  # noqa: F811
    """results/tiny, whose report read pack (as "base"), evaluate/rl and pretrain, in that
    order; evaluate/rl's manifest is then deleted."""
    evaluate = chain / "evaluate" / "rl"
    model = {"model": chain / "pretrain"}
    run_stage("evaluate", small, evaluate, model, _scores, project=project, part="rl")
    results = project / "results" / "tiny"
    inputs = {"base": chain / "pack", "eval_rl": evaluate, "pretrain": chain / "pretrain"}
    run_stage("report", small, results, inputs, _scores, project=project)
    (evaluate / "manifest.json").unlink()
    return results


def test_the_walk_goes_past_a_missing_upstream_and_opens_each_stage_once(
    chain: Path,  # noqa: F811
    reported: Path,
) -> None:
    state = chain / "pretrain" / "checkpoint" / "state.json"  # read after evaluate/rl
    recorded = read_manifest(chain / "pretrain")["outputs"]["checkpoint/state.json"]["sha256"]
    state.write_text("{}")
    evaluate = chain / "evaluate" / "rl"
    named = (
        f"{evaluate}/manifest.json: missing; named as an input by {reported}/manifest.json "
        "(input eval_rl)"
    )
    result = verify_roots([reported])
    # pack is named by the report and by pretrain, blend twice through pack: each walked once
    assert result.upstream == [chain / "pack", chain / "pretrain", chain / "blend"]
    assert result.problems == [_altered(state, recorded, b"{}"), named]
    # verifying the run consults the report for every stage it names, past those it finds
    assert verify_tree(chain)[0] == [_altered(state, recorded, b"{}"), named]


def test_the_walk_goes_past_an_upstream_that_was_replaced(
    project: Path,
    small,  # noqa: F811
    chain: Path,  # noqa: F811
) -> None:
    results = project / "results" / "tiny"
    inputs = {"blend": chain / "blend", "pretrain": chain / "pretrain"}
    run_stage("report", small, results, inputs, _scores, project=project)

    def fewer_sources(ctx: StageContext) -> dict:
        return blend_body(ctx, {"keep": DOCS["keep"]})

    run_stage("blend", small, chain / "blend", {}, fewer_sources, project=project)  # rerun
    result = verify_roots([results])
    assert result.upstream == [chain / "pretrain", chain / "pack"]
    assert [p.split(" (")[0] for p in result.problems] == [
        f"{results / 'manifest.json'}: input 'blend'",
        f"{chain / 'pack' / 'manifest.json'}: input 'blend'",
    ]
    assert all("is another stage's output" in p for p in result.problems)


def test_a_stage_being_sealed_in_a_hidden_temporary_is_not_checked(chain: Path) -> None:  # noqa: F811
    """run_stage seals a stage in ``.<name>.tmp-*`` and renames it: a crash in between leaves
    a manifest there whose outputs are not beside it. Not a stage of the run."""
    partial = chain / ".pack.tmp-123"
    partial.mkdir()
    shutil.copy2(chain / "pack" / "manifest.json", partial / "manifest.json")
    assert verify_tree(chain) == ([], 3)


def test_a_lock_of_undecodable_bytes_is_a_named_problem_not_a_crash(chain: Path) -> None:  # noqa: F811
    """A release.lock.json that is not UTF-8 is reported by verify, which does not crash."""
    lock = chain / "pretrain" / "release.lock.json"
    lock.write_bytes(b"\xff{}")
    problems = verify_roots([chain]).problems
    assert len(problems) == 1 and problems[0].startswith(f"{lock}: audit file unreadable ("), (
        problems
    )
    assert "can't decode" in problems[0], problems


def test_a_manifest_whose_outputs_are_not_a_mapping_is_a_named_problem(chain: Path) -> None:  # noqa: F811
    """A resealed manifest (its own hash consistent) listing outputs as a list is reported."""
    _reseal(chain / "pack", lambda manifest: manifest.update(outputs=["train.bin"]))
    assert check_stage_dir(chain / "pack") == [
        f"{chain / 'pack' / 'manifest.json'}: outputs is not a mapping of file to sha256"
    ]
