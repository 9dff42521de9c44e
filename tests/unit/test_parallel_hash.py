"""verify hashes on every core and reports exactly what one core would: the same hashes as the
manifests' own (openrecipe.hashing), the same problems in the same order for any number of
workers, and a tampered file is found whichever thread hashes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_audit import chain, pretrain_body, small  # noqa: F401

from openrecipe.cli import main
from openrecipe.hashing import sha256_file
from openrecipe.lineage.parallel_hash import FileHasher, default_workers
from openrecipe.lineage.verify import verify_roots
from openrecipe.manifest import read_manifest
from openrecipe.stage import run_stage


@pytest.mark.parametrize("size", [0, 1, 2047, 2048, (1 << 20) + 3, 5 * (1 << 20)])
def test_hashes_equal_the_manifests_hash(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(size))
    with FileHasher(workers=3) as hasher:
        assert hasher.sha256(path) == sha256_file(path)


def test_prefetch_then_read_in_any_order(tmp_path: Path) -> None:
    paths = []
    for index in range(40):
        path = tmp_path / f"{index:02d}.bin"
        path.write_bytes(os.urandom(1000 * index))
        paths.append(path)
    with FileHasher(workers=4) as hasher:
        hasher.prefetch(paths)
        hasher.prefetch(paths[:5])  # named twice: hashed once
        got = {p: hasher.sha256(p) for p in reversed(paths)}
    assert got == {p: sha256_file(p) for p in paths}


def test_an_unreadable_file_raises_when_its_hash_is_asked(tmp_path: Path) -> None:
    with FileHasher(workers=2) as hasher:
        hasher.prefetch([tmp_path / "absent.bin"])
        with pytest.raises(FileNotFoundError):
            hasher.sha256(tmp_path / "absent.bin")


def test_default_workers_is_the_cores_this_process_may_use() -> None:
    assert default_workers() == len(os.sched_getaffinity(0))


def test_verify_reports_the_same_problems_in_the_same_order_for_any_workers(
    project: Path,
    small,  # noqa: F811
    chain: Path,  # noqa: F811
) -> None:
    """Three stages, two of them tampered (a changed file in the first stage walked upstream,
    an extra file and a deleted one downstream): every worker count gives one identical list."""
    clean = verify_roots([chain], workers=1)
    assert clean.problems == [] and clean.checked == 3
    # a second run reading the same pack, so the walk meets it twice
    other = project / "runs" / "tiny_b"
    inputs = {"pack": chain / "pack"}
    run_stage("pretrain", small, other / "pretrain", inputs, pretrain_body, project=project)
    (chain / "blend" / "streams" / "keep.jsonl").write_text('{"id": "forged"}\n')
    (chain / "pack" / "stray.txt").write_text("not an output\n")
    listed = sorted(read_manifest(chain / "pack")["outputs"])
    victim = chain / "pack" / listed[0]
    victim.unlink()
    results = [verify_roots([other, chain], workers=n) for n in (1, 2, 7)]
    assert results[0].problems, "the tampering went unnoticed"
    assert len(results[0].problems) == 3, results[0].problems
    first = results[0].problems
    # stage directories in path order, each stage's listed outputs before its extra files
    assert first[0].startswith(f"{chain / 'blend' / 'streams' / 'keep.jsonl'}: sha256"), first
    assert first[1].startswith(f"{victim}: missing (listed in {chain / 'pack'}"), first
    assert first[2].startswith(f"{chain / 'pack' / 'stray.txt'}: unexpected file"), first
    for result in results[1:]:
        assert result.problems == results[0].problems
        assert (result.checked, result.upstream) == (results[0].checked, results[0].upstream)


def test_verify_cli_takes_a_worker_count_and_refuses_a_bad_one(
    project: Path,
    chain: Path,  # noqa: F811
    monkeypatch,
    capsys,
) -> None:
    monkeypatch.chdir(project)
    assert main(["verify", "runs/tiny", "--workers", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("verify: 3 stage directories")
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as exit_info:
            main(["verify", "runs/tiny", "--workers", bad])
        assert exit_info.value.code == 2
        assert f"argument --workers: {bad!r} is not a whole number >= 1" in capsys.readouterr().err
