"""What a downstream manifest records about its inputs, and the manifest check on a manifest
that lists no outputs (mutation campaign, issue 21: behaviours no other test pinned)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from manifest_bodies import read_a, two_files

from openrecipe.errors import StageInputError
from openrecipe.hashing import sha256_file
from openrecipe.manifest import (
    read_manifest,
    seal,
    verified_input,
    verify_stage_dir,
    write_json_atomic,
)
from openrecipe.recipe import load_recipe
from openrecipe.stage import StageContext, run_stage

REPO = Path(__file__).resolve().parents[2]


def test_downstream_manifest_records_the_hash_of_every_input_file(project: Path) -> None:
    """An input is addressed by the content of each of its files (not just its manifest), so a
    trace can name the exact bytes a stage read."""
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    up = project / "runs" / "up"
    run_stage("reasoning", recipe, up, {}, two_files, project=project)
    expected = {"a.txt": sha256_file(up / "a.txt"), "sub/b.txt": sha256_file(up / "sub" / "b.txt")}
    assert verified_input("upstream", up)["files"] == expected
    down = project / "runs" / "down"
    manifest = run_stage("sft", recipe, down, {"upstream": up}, read_a, project=project)
    (described,) = manifest["inputs"]
    assert described["name"] == "upstream"
    assert described["files"] == expected
    on_disk = json.loads((down / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["inputs"][0]["files"] == expected


def test_a_sealed_manifest_without_outputs_reports_every_file_as_unexpected(
    tmp_path: Path,
) -> None:
    """A manifest whose hash is intact but that lists no outputs vouches for nothing: each file
    beside it is reported (not a crash, not a pass)."""
    (tmp_path / "a.txt").write_text("first\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("second\n")
    body = seal({"schema_version": 1, "stage": "reasoning"})
    (tmp_path / "manifest.json").write_text(json.dumps(body), encoding="utf-8")
    assert verify_stage_dir(tmp_path, strict_extra=False) == []
    assert verify_stage_dir(tmp_path) == [
        f"{tmp_path / 'a.txt'}: unexpected file (not in {tmp_path / 'manifest.json'})",
        f"{tmp_path / 'sub' / 'b.txt'}: unexpected file (not in {tmp_path / 'manifest.json'})",
    ]


def test_an_edited_output_is_named_with_both_short_hashes(project: Path) -> None:
    """The report names the file and the first 12 hex digits of the hash found and of the hash
    the manifest recorded (enough to tell them apart, short enough to read)."""
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    up = project / "runs" / "up"
    manifest = run_stage("reasoning", recipe, up, {}, two_files, project=project)
    recorded = manifest["outputs"]["a.txt"]["sha256"]
    (up / "a.txt").write_text("edited\n")
    found = sha256_file(up / "a.txt")
    assert verify_stage_dir(up) == [
        f"{up / 'a.txt'}: sha256 {found[:12]}… does not match manifest {recorded[:12]}…"
    ]


def test_unexpected_files_are_reported_in_the_manifests_key_order(tmp_path: Path) -> None:
    """Files are listed by their relative POSIX path as a string, the order of the manifest's
    sorted keys, so a report and the manifest read in the same order ('-' sorts before '/': a
    path-part order would put sub/ first)."""
    for rel in ("sub/b.txt", "sub-x.txt", "sub.txt"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text(rel)
    (tmp_path / "manifest.json").write_text(json.dumps(seal({"outputs": {}})), encoding="utf-8")
    keys = sorted(["sub/b.txt", "sub-x.txt", "sub.txt"])
    assert keys == ["sub-x.txt", "sub.txt", "sub/b.txt"]
    assert verify_stage_dir(tmp_path) == [
        f"{tmp_path / rel}: unexpected file (not in {tmp_path / 'manifest.json'})" for rel in keys
    ]


def test_sealing_again_replaces_the_recorded_hash() -> None:
    """Sealing a sealed manifest gives the same seal: the old ``manifest_sha256`` is never part
    of what the new one hashes."""
    body = {"schema_version": 1, "stage": "reasoning", "outputs": {}}
    once = seal(body)
    assert seal(once) == once
    assert seal({**once, "manifest_sha256": "0" * 64}) == once


def test_every_listed_output_is_checked_after_a_missing_one(project: Path) -> None:
    """A missing file does not end the check: the files listed after it are still rehashed."""
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    up = project / "runs" / "up"
    run_stage("reasoning", recipe, up, {}, two_files, project=project)
    (up / "a.txt").unlink()
    (up / "sub" / "b.txt").write_text("edited\n")
    problems = verify_stage_dir(up)
    assert problems[0] == f"{up / 'a.txt'}: missing (listed in {up / 'manifest.json'})"
    assert len(problems) == 2 and problems[1].startswith(f"{up / 'sub' / 'b.txt'}: sha256 ")


def test_a_truncated_manifest_is_refused_with_its_name(project: Path) -> None:
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    up = project / "runs" / "up"
    run_stage("reasoning", recipe, up, {}, two_files, project=project)
    path = up / "manifest.json"
    path.write_text(path.read_text(encoding="utf-8")[:40], encoding="utf-8")
    with pytest.raises(StageInputError) as refused:
        read_manifest(up)
    message = str(refused.value)
    assert message.startswith(f"{path}: not valid JSON (")
    assert message.endswith("); the manifest was altered or truncated")
    assert verify_stage_dir(up) == [message]


_READ_IN_C_LOCALE = """
import sys
from pathlib import Path
from openrecipe.manifest import read_manifest, verify_stage_dir, write_json_atomic
write_json_atomic(Path(sys.argv[2]), {"note": "na\\u00efve"})
print(read_manifest(Path(sys.argv[1]))["summary"]["note"].encode("unicode_escape").decode())
print(ascii(verify_stage_dir(Path(sys.argv[1]))))
"""


def test_a_manifest_with_non_ascii_text_reads_the_same_in_the_c_locale(project: Path) -> None:
    """Manifests are UTF-8 (written with ensure_ascii=False) and read as UTF-8 whatever the
    locale: a job started under LC_ALL=C (cron, a bare container) reads the same manifest."""
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    up = project / "runs" / "up"

    def accented(ctx: StageContext) -> dict:
        (ctx.out / "menu.txt").write_text("crème\n", encoding="utf-8")
        return {"note": "naïve café"}

    run_stage("reasoning", recipe, up, {}, accented, project=project)
    assert read_manifest(up)["summary"]["note"] == "naïve café"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
    env |= {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    env["PYTHONPATH"] = str(REPO / "src")
    done = subprocess.run(
        [sys.executable, "-c", _READ_IN_C_LOCALE, str(up), str(project / "written.json")],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["na\\xefve caf\\xe9", "[]"]
    written = (project / "written.json").read_bytes()
    assert written == '{\n  "note": "naïve"\n}\n'.encode()


def test_each_output_is_recorded_with_its_hash_and_size(project: Path) -> None:
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    up = project / "runs" / "up"
    manifest = run_stage("reasoning", recipe, up, {}, two_files, project=project)
    assert manifest["outputs"] == {
        "a.txt": {"sha256": sha256_file(up / "a.txt"), "bytes": len("first\n")},
        "sub/b.txt": {"sha256": sha256_file(up / "sub" / "b.txt"), "bytes": len("second\n")},
    }


def test_written_json_is_the_same_bytes_whatever_the_key_order(tmp_path: Path) -> None:
    """A manifest is written indented by 2, keys sorted, text as UTF-8 (not \\u escapes), with a
    final newline: the same object gives the same bytes, however its dicts were built."""
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    write_json_atomic(first, {"stage": "café", "outputs": {"b": 1, "a": [1, 2]}})
    write_json_atomic(second, {"outputs": {"a": [1, 2], "b": 1}, "stage": "café"})
    expected = (
        '{\n  "outputs": {\n    "a": [\n      1,\n      2\n    ],\n    "b": 1\n  },\n'
        '  "stage": "café"\n}\n'
    )
    assert first.read_bytes() == expected.encode("utf-8")
    assert second.read_bytes() == first.read_bytes()


def test_canonical_json_is_written_on_request_only(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    obj = {"b": "é", "a": {"d": 1, "c": 2}}
    write_json_atomic(path, obj, canonical=True)
    assert path.read_bytes() == '{"a":{"c":2,"d":1},"b":"é"}\n'.encode()
    write_json_atomic(path, obj)
    assert path.read_text(encoding="utf-8").startswith('{\n  "a": {\n    "c": 2,')
