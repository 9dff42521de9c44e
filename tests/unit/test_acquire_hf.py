"""acquire_hf: an hf_dataset source from a dataset repository built here (Parquet files with
several row groups, in the layout `hf download --repo-type dataset --local-dir` writes), through
the stage's CLI jobs and through the real Snakemake rules: documents with their labels, hash
mismatch, missing file, offline and unpinned refusals, resume after a partial run, determinism.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from openrecipe import cli
from openrecipe.data import acquire_hf
from openrecipe.data.acquire_hf import file_id, part_view, part_view_hash
from openrecipe.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
DATASET = "example-org/tiny-pretraining"
REVISION = "0123456789abcdef0123456789abcdef01234567"
SNAPSHOT = "snapshots/tiny-pretraining"  # project-relative
# path in the repository -> (texts, rows per row group)
FILES = {
    "web/part-00000.parquet": (
        ["First web page.", "Second web page, longer.", None, "Fourth ü ✓ text.", "Fifth."],
        2,
    ),
    "web/part-00001.parquet": ([f"Web page {i} of the second file." for i in range(7)], 3),
    "math/part-00000.parquet": (["1 + 1 = 2", "2 * 3 = 6", "x^2 = 4 so x = 2 or x = -2"], 1),
}
SOURCE = "hfweb"


def write_snapshot(root: Path) -> dict[str, str]:
    """The dataset at REVISION as `hf download --local-dir` lays it out; {path: sha256}."""
    for path, (texts, group) in FILES.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "text": pa.array(texts, type=pa.string()),
                "quality": pa.array(range(len(texts)), type=pa.int64()),
            }
        )
        pq.write_table(table, target, row_group_size=group)
    (root / "README.md").write_text("# tiny pretraining\n")
    (root / ".gitattributes").write_text("*.parquet filter=lfs\n")
    cache = root / ".cache" / "huggingface" / "download"
    cache.mkdir(parents=True)
    (cache / "web.metadata").write_text("etag\n")
    return {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in sorted(FILES)}


def hf_entry(pins: dict[str, str], **extra: object) -> dict:
    return {
        "name": SOURCE,
        "kind": "hf_dataset",
        "version": "v1",
        "dataset": DATASET,
        "revision": REVISION,
        "subsets": ["web", "math"],
        "files": pins,
        "text_field": "text",
        "snapshot": SNAPSHOT,
        "license": "CC-BY-4.0",
        "lang": "en",
        **extra,
    }


def write_recipe(project: Path, name: str, entry: dict) -> str:
    """A recipe extending tiny with one hf_dataset source; returns its project-relative path."""
    tiny = yaml.safe_load((project / "recipes" / "tiny.yaml").read_text(encoding="utf-8"))
    recipe = {"extends": "tiny", "name": name}
    recipe["data"] = {"sources": [*tiny["data"]["sources"], entry]}
    (project / "recipes" / f"{name}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return f"recipes/{name}.yaml"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("Snakefile", "workflow", "recipes", "pyproject.toml"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, clone / name)
    return clone


@pytest.fixture
def pins(project: Path) -> dict[str, str]:
    return write_snapshot(project / SNAPSHOT)


def job(project: Path, recipe: str, part: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """One acquire_hf job through the CLI, as the Snakemake rule runs it."""
    monkeypatch.chdir(project)
    return cli.main(
        ["acquire_hf", "--recipe", recipe, "--out", acquire_hf.out_dir(part), "--part", part]
    )


def part_of(path: str) -> str:
    return f"{SOURCE}/{file_id(path)}"


def read_docs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------------------------
# Jobs through the CLI


def test_dataset_hashes_prints_the_parquet_files_block(
    project: Path, pins: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dataset-hashes", str(project / SNAPSHOT)]) == 0
    printed = capsys.readouterr().out
    block = yaml.safe_load(printed.split("\n", 1)[1])
    assert block == {"files": pins}  # no README, .gitattributes or .cache/ entry
    assert cli.main(["dataset-hashes", str(project / SNAPSHOT), "--subset", "math"]) == 0
    block = yaml.safe_load(capsys.readouterr().out.split("\n", 1)[1])
    assert block == {"files": {"math/part-00000.parquet": pins["math/part-00000.parquet"]}}


def test_a_file_job_writes_every_row_as_a_labelled_document(
    project: Path, pins: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = write_recipe(project, "tiny-hf", hf_entry(pins))
    path = "web/part-00000.parquet"
    assert job(project, recipe, part_of(path), monkeypatch) == 0
    out = project / acquire_hf.out_dir(part_of(path))
    docs = read_docs(out / "docs.jsonl")
    texts, _ = FILES[path]
    assert [d["text"] for d in docs] == texts  # three row groups, rows in order, null kept
    assert [d["row"] for d in docs] == list(range(len(texts)))
    first = docs[0]
    assert first["id"] == f"{SOURCE}/{path}#0"
    assert first["url_or_path"] == f"hf://datasets/{DATASET}@{REVISION}/{path}#0"
    assert {k: first[k] for k in ("source", "lang", "license", "dataset", "revision", "file")} == {
        "source": SOURCE,
        "lang": "en",
        "license": "CC-BY-4.0",
        "dataset": DATASET,
        "revision": REVISION,
        "file": path,
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["outputs"]) == {"docs.jsonl"}  # the scratch copy is gone
    assert manifest["summary"]["docs"] == 5 and manifest["summary"]["null_texts"] == 1
    assert manifest["summary"]["row_groups"] == 3
    (external,) = [i for i in manifest["inputs"] if i.get("kind") == "hf_dataset"]
    assert external["files"] == {path: pins[path]} and external["sha256"] == pins[path]
    # the view is the source narrowed to this file, without where the snapshot sits
    (entry,) = manifest["config_view"]["data.sources"]
    assert entry["files"] == {path: pins[path]} and "snapshot" not in entry


def test_a_hash_mismatch_is_refused_by_name_and_nothing_is_left(
    project: Path,
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = "web/part-00001.parquet"
    recipe = write_recipe(project, "tiny-hf", hf_entry(pins))
    with open(project / SNAPSHOT / path, "ab") as handle:
        handle.write(b"\0")  # a partial or altered download
    found = hashlib.sha256((project / SNAPSHOT / path).read_bytes()).hexdigest()
    assert job(project, recipe, part_of(path), monkeypatch) == 2
    error = capsys.readouterr().err
    assert f"data.sources[{SOURCE}].files: {path}: sha256 {found}" in error
    assert f"does not match the pinned {pins[path]}" in error
    parent = project / acquire_hf.FILES_DIR / SOURCE
    assert list(parent.iterdir()) == []  # no output dir, no temporary dir


def test_a_missing_file_is_refused_offline_without_a_network_call(
    project: Path,
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import huggingface_hub

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = "math/part-00000.parquet"
    recipe = write_recipe(project, "tiny-hf", hf_entry(pins))
    (project / SNAPSHOT / path).unlink()
    assert job(project, recipe, part_of(path), monkeypatch) == 2
    error = capsys.readouterr().err
    assert f"{path}: missing from the snapshot" in error and "HF_HUB_OFFLINE is set" in error
    assert f"hf download {DATASET} --repo-type dataset --revision {REVISION}" in error
    # online, a snapshot outside the project is never downloaded into either
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    elsewhere = project.parent / "outside"
    recipe = write_recipe(project, "tiny-hf2", hf_entry(pins, snapshot=str(elsewhere)))
    assert job(project, recipe, part_of(path), monkeypatch) == 2
    assert "downloads only into the project" in capsys.readouterr().err
    assert not elsewhere.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"files": None}, r"\.files: no files pinned; .*openrecipe dataset-hashes"),
        ({"revision": "main"}, r"\.revision: 'main' is not a 40-hex commit"),
        ({"text_field": None}, r"\.text_field: required"),
        (
            {"subsets": ["code"]},
            r"\.files: math/part-00000\.parquet lies in none of the source's subsets \['code'\]",
        ),
    ],
)
def test_an_unpinned_or_malformed_source_is_refused_by_field(
    project: Path,
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict,
    message: str,
) -> None:
    entry = {k: v for k, v in {**hf_entry(pins), **change}.items() if v is not None}
    recipe = write_recipe(project, "tiny-hf", entry)
    assert job(project, recipe, SOURCE, monkeypatch) == 2
    assert re.search(rf"data\.sources\[{SOURCE}\]" + message, capsys.readouterr().err)
    assert not (project / "data" / "raw" / SOURCE).exists()


def test_a_text_column_that_is_absent_or_not_text_is_refused(
    project: Path,
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = "math/part-00000.parquet"
    for field, why in (
        ("body", "no column 'body'"),
        ("quality", "column 'quality' holds int64, not text"),
    ):
        recipe = write_recipe(project, "tiny-hf", hf_entry(pins, text_field=field))
        assert job(project, recipe, part_of(path), monkeypatch) == 2
        assert f"files: {path}: {why}" in capsys.readouterr().err


def test_each_file_job_sees_only_its_own_file_and_the_gather_refuses_a_stale_one(
    project: Path,
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recipe = write_recipe(project, "tiny-hf", hf_entry(pins))
    data = load_recipe(project / recipe, project=project).data
    web0, math0 = "web/part-00000.parquet", "math/part-00000.parquet"
    fewer = load_recipe(
        project / write_recipe(project, "tiny-hf-fewer", hf_entry({web0: pins[web0]})),
        project=project,
    ).data
    # pinning more files changes the gather's view, never an existing file job's
    assert part_view_hash(data, part_of(web0)) == part_view_hash(fewer, part_of(web0))
    assert part_view_hash(data, SOURCE) != part_view_hash(fewer, SOURCE)
    # where the snapshot sits is in no view: moving it reruns nothing
    moved = load_recipe(
        project / write_recipe(project, "tiny-hf-moved", hf_entry(pins, snapshot="/elsewhere")),
        project=project,
    ).data
    for part in (SOURCE, part_of(web0)):
        assert part_view_hash(moved, part) == part_view_hash(data, part)
        assert "snapshot" not in part_view(moved, part)["data.sources"][0]
    with pytest.raises(Exception, match="no pinned file has id 0000000000000000"):
        part_view(data, f"{SOURCE}/0000000000000000")
    # a file job made for one pin is not gathered under another
    for path in pins:
        assert job(project, recipe, part_of(path), monkeypatch) == 0
    repinned = {**pins, math0: "f" * 64}
    recipe2 = write_recipe(project, "tiny-hf-repinned", hf_entry(repinned))
    assert job(project, recipe2, SOURCE, monkeypatch) == 2
    assert f"{math0}: " in capsys.readouterr().err
    assert not (project / "data" / "raw" / SOURCE).exists()
    assert job(project, recipe, SOURCE, monkeypatch) == 0
    gathered = read_docs(project / "data" / "raw" / SOURCE / "docs.jsonl")
    assert [d["file"] for d in gathered] == [p for p in sorted(pins) for _ in FILES[p][0]]


def test_verify_follows_the_gather_into_its_file_jobs_and_trace_names_the_dataset(
    project: Path,
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recipe = write_recipe(project, "tiny-hf", hf_entry(pins))
    for path in pins:
        assert job(project, recipe, part_of(path), monkeypatch) == 0
    assert job(project, recipe, SOURCE, monkeypatch) == 0
    capsys.readouterr()
    raw = f"data/raw/{SOURCE}"
    assert cli.main(["trace", f"{raw}/docs.jsonl"]) == 0
    chain = capsys.readouterr().out
    assert f"acquire_hf[{SOURCE}]" in chain and REVISION in chain
    for path, sha in pins.items():  # each file job, with the pinned file as its raw input
        assert f"acquire_hf[{part_of(path)}]" in chain and sha in chain
    assert cli.main(["verify", raw]) == 0
    assert "(+3 upstream outside" in capsys.readouterr().out
    tampered = project / acquire_hf.out_dir(part_of("web/part-00001.parquet")) / "docs.jsonl"
    tampered.write_text(tampered.read_text().replace("second file", "SECOND FILE"))
    assert cli.main(["verify", raw]) != 0
    assert str(tampered.relative_to(project)) in capsys.readouterr().out


def test_acquire_hf_is_in_no_other_stage_closure() -> None:
    """Adding the stage reruns nothing, and it imports no other stage's module (editing
    import_checkpoint must not rerun terabytes of acquisition)."""
    from openrecipe.codeid import CONTRACT_MODULES, import_closure
    from openrecipe.registry import STAGES

    for name, entry in STAGES.items():
        closure = import_closure((entry.module, *CONTRACT_MODULES))
        if name != "acquire_hf":
            assert "openrecipe.data.acquire_hf" not in closure, name
        else:
            others = {s.module for s in STAGES.values()} - {entry.module}
            assert not others & set(closure), others & set(closure)


def test_out_must_be_the_jobs_own_directory(
    project: Path,
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recipe = write_recipe(project, "tiny-hf", hf_entry(pins))
    monkeypatch.chdir(project)
    argv = ["acquire_hf", "--recipe", recipe, "--part", SOURCE, "--out"]
    for out in ("data/raw/brown", "data/raw", ".", f"data/hf/{SOURCE}"):
        assert cli.main([*argv, out]) == 2
        assert f"writes only data/raw/{SOURCE}" in capsys.readouterr().err
    assert cli.main([*argv[:-2], "brown", "--out", "data/raw/brown"]) == 2
    assert "is acquired by the acquire stage" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Through the Snakemake rules


def snakemake(project: Path, recipe: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        # --configfile takes every word after it: the recipe goes last
        [sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile", recipe],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def tree_bytes(*roots: Path) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes()
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "run_info.json"
    }


def test_the_workflow_acquires_file_by_file_resumes_and_repeats_byte_for_byte(
    project: Path, pins: dict[str, str]
) -> None:
    recipe = write_recipe(project, "tiny-hf", hf_entry(pins))
    target = f"data/raw/{SOURCE}/manifest.json"
    plan = snakemake(project, recipe, "-n", target)
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    assert job_counts(plan.stdout) == {"acquire_hf_file": 3, "acquire_hf": 1}

    # a partial run: one file's download is broken, the other two finish
    broken = project / SNAPSHOT / "web/part-00001.parquet"
    good = broken.read_bytes()
    broken.write_bytes(good[: len(good) // 2])
    first = snakemake(project, recipe, "--keep-going", target)
    assert first.returncode != 0
    log = project / "runs/logs/acquire_hf" / SOURCE / f"{file_id('web/part-00001.parquet')}.log"
    assert "does not match the pinned" in log.read_text()
    done = {p: project / acquire_hf.out_dir(part_of(p)) / "manifest.json" for p in pins}
    assert not done["web/part-00001.parquet"].exists()
    assert not (project / target).exists()
    stamps = {p: m.stat().st_mtime_ns for p, m in done.items() if m.exists()}
    assert len(stamps) == 2

    # the rerun redoes only the missing file, then gathers
    broken.write_bytes(good)
    second = snakemake(project, recipe, target)
    assert second.returncode == 0, second.stderr[-3000:]
    assert job_counts(second.stderr + second.stdout) == {"acquire_hf_file": 1, "acquire_hf": 1}
    assert {p: done[p].stat().st_mtime_ns for p in stamps} == stamps
    docs = read_docs(project / "data/raw" / SOURCE / "docs.jsonl")
    assert len(docs) == sum(len(texts) for texts, _ in FILES.values())
    assert len({d["id"] for d in docs}) == len(docs)
    outputs = (project / "data/raw" / SOURCE, project / "data/hf" / SOURCE)
    before = tree_bytes(*outputs)

    # determinism: the same recipe from scratch writes the same bytes
    for root in outputs:
        shutil.rmtree(root)
    third = snakemake(project, recipe, target)
    assert third.returncode == 0, third.stderr[-3000:]
    assert tree_bytes(*outputs) == before


def test_a_full_size_recipe_plans_acquire_hf_for_its_released_sources(project: Path) -> None:
    """Unpinned (no files: yet), each source still plans its gather, which refuses by name."""
    recipe = "recipes/nemotron_nano_12b_v2_base.yaml"
    plan = snakemake(project, recipe, "-n")
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    counts = job_counts(plan.stdout)
    assert counts.get("acquire_hf") == 7 and "acquire" not in counts, counts
    assert "acquire_hf_file" not in counts


def test_the_lock_names_each_released_dataset_file_as_a_dependency(
    project: Path, pins: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from openrecipe.lineage.predicates import MANIFEST_KEY, _imported_dependencies

    recipe = write_recipe(project, "tiny-hf", hf_entry(pins))
    for path in pins:
        assert job(project, recipe, part_of(path), monkeypatch) == 0
    assert job(project, recipe, SOURCE, monkeypatch) == 0
    lock = {"artifacts": {f"data/raw/{SOURCE}{MANIFEST_KEY}": "x"}}
    deps = _imported_dependencies(project, lock)
    assert {d["name"]: (d["uri"], d["digest"]["sha256"]) for d in deps} == {
        f"hf://datasets/{DATASET}@{REVISION}/{path}": (
            f"https://huggingface.co/datasets/{DATASET}/resolve/{REVISION}/{path}",
            sha,
        )
        for path, sha in pins.items()
    }


def test_curate_reads_the_gathered_source_unchanged(
    project: Path, pins: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The raw directory is what curate expects of any acquired source: every valid row is
    kept or dropped with a reason, the null text is quarantined and counted, nothing else."""
    from openrecipe.data import curate
    from openrecipe.stage import run_stage

    recipe = write_recipe(project, "tiny-hf", hf_entry(pins))
    for path in pins:
        assert job(project, recipe, part_of(path), monkeypatch) == 0
    assert job(project, recipe, SOURCE, monkeypatch) == 0
    loaded = load_recipe(project / recipe, project=project)
    out = project / "runs/tiny-hf/curate"
    raw = {f"raw_{SOURCE}": project / "data/raw" / SOURCE}
    run_stage("curate", loaded, out, raw, curate.run, project=project)
    kept = read_docs(out / "docs.jsonl")
    dropped = read_docs(out / "dropped.jsonl")
    quarantined = read_docs(out / "quarantine.jsonl")
    assert [q["reason"] for q in quarantined] == ["field_not_string"]
    assert quarantined[0]["input"] == f"raw_{SOURCE}"
    rows = sum(len(texts) for texts, _ in FILES.values())
    assert len(kept) + len(dropped) == rows - 1
    assert {d["source"] for d in kept + dropped} == {SOURCE}
