"""Stage code identity: what counts as a code change, and which stages it reaches."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from openrecipe import codeid
from openrecipe.codeid import (
    changed_parts,
    import_closure,
    imported_names,
    normalised_source_hash,
    stage_code_identity,
)
from openrecipe.lineage.code_drift import explain, stage_drift
from openrecipe.registry import STAGE_MODULES

SOURCE = '''"""Module docstring."""

import numpy as np  # a comment


def f(x):
    """Docstring."""
    return x + 1
'''


def test_docstrings_comments_and_formatting_do_not_count() -> None:
    reformatted = (
        '"""Another docstring, longer."""\nimport numpy as np\n\n\n'
        "def f(x):\n    # new comment\n    return (x +\n            1)\n"
    )
    assert normalised_source_hash(SOURCE) == normalised_source_hash(reformatted)
    body_changed = SOURCE.replace("x + 1", "x + 2")
    assert normalised_source_hash(SOURCE) != normalised_source_hash(body_changed)
    # removing the only statement of a function after its docstring is still a change
    no_body = SOURCE.replace("    return x + 1\n", "")
    assert normalised_source_hash(SOURCE) != normalised_source_hash(no_body)


def test_imports_inside_functions_count_and_type_checking_ones_do_not() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..model import build\n"
        "if TYPE_CHECKING:\n    from openrecipe.lineage import trace\n"
        "def run():\n    import torch\n    from openrecipe.data.pack import pack\n"
    )
    ours, theirs = imported_names(source, "openrecipe.train.x", is_package=False)
    assert "openrecipe.train.sibling" in ours and "openrecipe.model.build" in ours
    assert "openrecipe.data.pack.pack" in ours and "openrecipe.data.pack" in ours
    assert not any(name.startswith("openrecipe.lineage") for name in ours)
    assert theirs == {"typing", "torch"}


def test_pretrain_closure_holds_its_code_and_the_contract_only() -> None:
    modules = import_closure(("openrecipe.train.pretrain", "openrecipe.stage"))
    assert {"openrecipe.train.pretrain", "openrecipe.hashing", "openrecipe.manifest"} <= set(
        modules
    )
    assert "openrecipe.model.precision.nvfp4" in modules  # imported by the model builder
    assert not {"openrecipe.evaluate.evaluate", "openrecipe.train.rl", "openrecipe.cli"} & set(
        modules
    )


def test_every_stage_has_an_identity_with_its_packages() -> None:
    identities = {stage: stage_code_identity(stage) for stage in STAGE_MODULES}
    assert len({i["sha256"] for i in identities.values()}) == len(STAGE_MODULES)
    assert "tokenizers" in identities["tokenizer"]["packages"]
    assert "tokenizers" not in identities["curate"]["packages"]
    assert "lm_eval" in {p.replace("-", "_") for p in identities["evaluate"]["packages"]}
    # the evaluate stage's task templates are package data: part of its code
    assert any(f.startswith("evaluate/tasks/") for f in identities["evaluate"]["data_files"])
    assert identities["pretrain"]["data_files"] == {}


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the openrecipe package to edit (the walker is pointed at it)."""
    copy = tmp_path / "openrecipe"
    shutil.copytree(codeid.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _identities(package_dir: Path) -> dict[str, str]:
    codeid.clear_caches()
    return {s: stage_code_identity(s, package_dir)["sha256"] for s in STAGE_MODULES}


def test_edits_reach_exactly_the_stages_that_import_them(package_copy: Path) -> None:
    before = _identities(package_copy)
    pretrain = package_copy / "train" / "pretrain.py"
    text = pretrain.read_text()
    pretrain.write_text('"""A rewritten docstring."""\n# a comment\n' + text.split('"""', 2)[2])
    assert _identities(package_copy) == before, "a docstring/comment edit changed an identity"

    assert "\ndef " in text
    pretrain.write_text(
        text.replace("\ndef ", "\ndef _unused_helper():\n    return 1\n\n\ndef ", 1)
    )
    after = _identities(package_copy)
    changed = {s for s in STAGE_MODULES if after[s] != before[s]}
    # distill trains with pretrain's loop pieces (it imports train.pretrain), so it reruns too
    assert changed == {"pretrain", "distill"}

    hashing = package_copy / "hashing.py"
    hashing.write_text(hashing.read_text() + "\n\ndef _another():\n    return 2\n")
    everything = _identities(package_copy)
    assert all(everything[s] != after[s] for s in STAGE_MODULES)


def test_package_version_change_reaches_only_stages_that_import_it(monkeypatch) -> None:
    before = {s: stage_code_identity(s) for s in STAGE_MODULES}
    real = codeid.distribution_version
    codeid.clear_caches()
    monkeypatch.setattr(
        codeid,
        "distribution_version",
        lambda name: "99.0" if name == "tokenizers" else real(name),
    )
    after = {s: stage_code_identity(s) for s in STAGE_MODULES}
    codeid.clear_caches()  # forget the faked version for the tests that follow
    changed = {s for s in STAGE_MODULES if after[s]["sha256"] != before[s]["sha256"]}
    assert changed == {s for s in STAGE_MODULES if "tokenizers" in before[s]["packages"]}
    assert "tokenizer" in changed and "curate" not in changed
    assert any(
        "package tokenizers" in c and "99.0" in c
        for c in changed_parts(before["tokenizer"], after["tokenizer"])
    )


def _manifest(stage: str, identity: dict, inputs: list[dict]) -> dict:
    return {"stage": stage, "code": identity, "inputs": inputs}


def test_drift_names_the_module_and_the_downstream_stages(tmp_path: Path) -> None:
    import json

    pretrain = stage_code_identity("pretrain")
    stale = {**pretrain, "sha256": "0" * 64}
    stale["modules"] = {**pretrain["modules"], "openrecipe.train.pretrain": "f" * 64}
    run = tmp_path / "runs" / "toy"
    layout = {
        "pretrain": _manifest("pretrain", stale, []),
        "sft": _manifest(
            "sft", stage_code_identity("sft"), [{"stage": "pretrain", "path": "runs/toy/pretrain"}]
        ),
        "tokenizer": _manifest("tokenizer", stage_code_identity("tokenizer"), []),
    }
    for name, manifest in layout.items():
        (run / name).mkdir(parents=True)
        (run / name / "manifest.json").write_text(json.dumps(manifest))
    assert stage_drift(layout["sft"]) == ()
    assert stage_drift(layout["pretrain"]) == ("module openrecipe.train.pretrain changed",)
    lines = explain(tmp_path, [run])
    assert "runs/toy/pretrain (pretrain): module openrecipe.train.pretrain changed" in lines[1]
    assert lines[2].strip() == "downstream: runs/toy/sft"
    assert len(lines) == 3  # sft and tokenizer were made by this code
    legacy = _manifest("tokenizer", {"git_commit": "abc", "packages": {}}, [])
    assert "no stage code identity recorded" in stage_drift(legacy)[0]


def test_uncommitted_code_is_named(tmp_path: Path) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    assert "not a git checkout" in codeid.uncommitted_code(tmp_path)
    git("init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not code\n")
    git("add", "src/a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    assert codeid.uncommitted_code(tmp_path) is None  # notes.txt is not under the code paths
    (tmp_path / "src" / "a.py").write_text("x = 2\n")
    assert codeid.uncommitted_code(tmp_path) == "uncommitted changes in src/a.py"
    git("checkout", "src/a.py")
    (tmp_path / "src" / "b.py").write_text("y = 1\n")
    assert codeid.uncommitted_code(tmp_path) == "uncommitted changes in src/b.py"


def test_verify_notes_a_stage_made_by_other_code_without_failing(
    project: Path, monkeypatch, capsys
) -> None:
    """The bytes verify; the code that made them is not the checkout's: a note, exit 0."""
    import json

    from openrecipe.cli import main
    from openrecipe.manifest import seal
    from openrecipe.recipe import load_recipe
    from openrecipe.stage import run_stage

    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)

    def body(ctx) -> dict:
        (ctx.out / "a.txt").write_text("a")
        return {}

    out = project / "runs" / "tiny" / "reasoning"
    run_stage("reasoning", recipe, out, {}, body, project=project)
    monkeypatch.chdir(project)
    assert main(["verify", "runs/tiny"]) == 0
    assert "0 made by other code" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    code = manifest["code"]
    manifest["code"] = {
        **code,
        "sha256": "0" * 64,
        "modules": {**code["modules"], "openrecipe.data.reasoning": "f" * 64},
        "packages": {**code["packages"], "numpy": "0.1"},
    }
    (out / "manifest.json").write_text(json.dumps(seal(manifest)))
    assert main(["verify", "runs/tiny"]) == 0
    printed = capsys.readouterr().out
    assert (
        "note: runs/tiny/reasoning: made by other code (reasoning: module "
        "openrecipe.data.reasoning changed; package numpy 0.1 -> "
    ) in printed
    assert "1 made by other code" in printed
