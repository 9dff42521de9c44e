"""The manifest check and the manifest write: a listed output that is gone is reported (and
refused as an input), and a write that fails midway leaves the previous file as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from manifest_bodies import read_a, two_files

from openrecipe.errors import LineageError, StageInputError
from openrecipe.manifest import (
    find_stage_dir,
    read_manifest,
    verified_input,
    verify_stage_dir,
    write_json_atomic,
)
from openrecipe.recipe import load_recipe
from openrecipe.stage import run_stage

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def upstream(project: Path) -> tuple[Path, object]:
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    out = project / "runs" / "up"
    run_stage("reasoning", recipe, out, {}, two_files, project=project)
    return out, recipe


def test_missing_listed_output_is_reported_and_refused(project: Path, upstream) -> None:
    up, recipe = upstream
    assert verify_stage_dir(up) == []
    (up / "sub" / "b.txt").unlink()
    problems = verify_stage_dir(up)
    assert problems == [f"{up / 'sub' / 'b.txt'}: missing (listed in {up / 'manifest.json'})"]
    with pytest.raises(StageInputError, match=r"input 'upstream' refused:\n.*sub/b\.txt: missing"):
        verified_input("upstream", up)
    # the downstream stage reads only a.txt, yet an input with a file gone is not accepted
    with pytest.raises(StageInputError, match=r"b\.txt: missing"):
        run_stage(
            "sft", recipe, project / "runs" / "down", {"upstream": up}, read_a, project=project
        )
    assert not (project / "runs" / "down").exists()


def test_missing_output_is_reported_without_the_extra_file_check(upstream) -> None:
    up, _ = upstream
    (up / "a.txt").unlink()
    assert verify_stage_dir(up, strict_extra=False) == [
        f"{up / 'a.txt'}: missing (listed in {up / 'manifest.json'})"
    ]


# A child process that may write at most LIMIT bytes to any file (RLIMIT_FSIZE: the kernel
# fails the write with EFBIG past it, as a full disk fails it with ENOSPC), then writes ``obj``.
_WRITE_UNDER_LIMIT = """
import json, resource, signal, sys
from pathlib import Path
from openrecipe.manifest import write_json_atomic
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    write_json_atomic(Path(sys.argv[1]), json.loads(sys.stdin.read()))
except OSError as exc:
    print(exc.errno)
    sys.exit(3)
"""


def _write_with_limit(path: Path, obj: object, limit: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _WRITE_UNDER_LIMIT, str(path), str(limit)],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        timeout=120,
    )


def test_failed_write_keeps_the_previous_manifest_and_leaves_no_partial(upstream) -> None:
    up, _ = upstream
    path = up / "manifest.json"
    before = path.read_bytes()
    big = {"outputs": {f"file{i:04d}": {"sha256": "0" * 64} for i in range(400)}}
    assert len(json.dumps(big)) > 8 * 4096
    done = _write_with_limit(path, big, limit=4096)
    assert done.returncode == 3, done.stderr
    assert done.stdout.strip() == "27"  # EFBIG: the write itself failed midway
    assert path.read_bytes() == before  # the old manifest, whole
    assert read_manifest(up)["stage"] == "reasoning"
    assert sorted(p.name for p in up.iterdir()) == [
        "a.txt",
        "manifest.json",
        "run_info.json",
        "sub",
    ]
    # the same write with room succeeds and replaces the file whole
    done = _write_with_limit(path, big, limit=1 << 20)
    assert done.returncode == 0, done.stderr
    assert json.loads(path.read_text()) == big
    assert sorted(p.name for p in up.iterdir()) == [
        "a.txt",
        "manifest.json",
        "run_info.json",
        "sub",
    ]


def test_write_json_atomic_replaces_by_rename(tmp_path: Path) -> None:
    """The final name only ever holds a complete document: a reader holding the old file
    open keeps reading the old content (a rename swaps the inode; an in-place write would
    truncate it under the reader)."""
    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"n": 1})
    with open(path, encoding="utf-8") as reader:
        write_json_atomic(path, {"n": 2, "pad": "x" * 10000})
        assert json.loads(reader.read()) == {"n": 1}
    assert json.loads(path.read_text()) == {"n": 2, "pad": "x" * 10000}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_every_problem_of_a_refused_input_is_on_its_own_line(upstream) -> None:
    up, _ = upstream
    (up / "a.txt").write_text("edited\n")
    (up / "sub" / "b.txt").unlink()
    with pytest.raises(StageInputError) as refused:
        verified_input("upstream", up)
    lines = str(refused.value).splitlines()
    assert lines[0] == "input 'upstream' refused:"
    assert lines[1].startswith(f"  {up / 'a.txt'}: sha256 ") and "does not match" in lines[1]
    assert lines[2] == f"  {up / 'sub' / 'b.txt'}: missing (listed in {up / 'manifest.json'})"


def test_find_stage_dir_from_the_directory_a_file_or_outside(upstream, tmp_path: Path) -> None:
    up, _ = upstream
    assert find_stage_dir(up) == up.resolve()
    assert find_stage_dir(up / "sub" / "b.txt") == up.resolve()
    assert find_stage_dir(up / "sub") == up.resolve()
    with pytest.raises(LineageError, match=rf"{tmp_path}: no manifest\.json in any parent"):
        find_stage_dir(tmp_path)
