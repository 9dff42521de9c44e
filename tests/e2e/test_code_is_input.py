"""Code is an input: after a finished tiny run, edit a copy of the package and plan again.

Snakemake is pointed at the edited copy through PYTHONPATH (as a pulled checkout would be), so
the plan is the real one: a function-body edit reruns that stage and its descendants only, a
docstring edit reruns nothing, an edit of a module every stage imports reruns everything, and a
package version change reruns the stages that import that package. Each plan says why.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import openrecipe

from .workflow import ALL_STAGES, TINY, job_counts, snakemake

pytestmark = pytest.mark.e2e

PACKAGE = Path(openrecipe.__file__).resolve().parent


def _plan(project: Path, code: Path) -> tuple[dict[str, int], str]:
    output, _ = snakemake(project, "-n", *TINY, env={"PYTHONPATH": str(code)})
    return job_counts(output), output


def test_code_edits_rerun_exactly_the_stages_that_run_them(first_run: Path, tmp_path: Path) -> None:
    snakemake(first_run, *TINY)  # other tests may have left evaluate/report behind: catch up
    code = tmp_path / "code"
    shutil.copytree(PACKAGE, code / "openrecipe", ignore=shutil.ignore_patterns("__pycache__"))
    planned, output = _plan(first_run, code)
    assert planned == {} and "Nothing to be done" in output, output[-3000:]

    pretrain = code / "openrecipe" / "train" / "pretrain.py"
    original = pretrain.read_text()
    pretrain.write_text("# reformatted\n" + original.replace('"""', '"""Edited docstring. ', 1))
    planned, output = _plan(first_run, code)
    assert planned == {}, f"a docstring edit planned {planned}"

    pretrain.write_text(original.replace("\ndef ", "\ndef _extra():\n    return 1\n\n\ndef ", 1))
    planned, output = _plan(first_run, code)
    assert planned == {"pretrain": 1, "sft": 1, "rl": 1, "evaluate": 3, "report": 1}, planned
    assert "runs/tiny/pretrain (pretrain): module openrecipe.train.pretrain changed" in output
    assert "downstream: " in output and "runs/tiny/sft" in output
    pretrain.write_text(original)

    hashing = code / "openrecipe" / "hashing.py"
    hashing.write_text(hashing.read_text() + "\n\nEXTRA = 1\n")
    planned, output = _plan(first_run, code)
    assert set(planned) == ALL_STAGES, planned
    assert "module openrecipe.hashing changed" in output
    shutil.copy2(PACKAGE / "hashing.py", hashing)

    template = code / "openrecipe" / "evaluate" / "tasks" / "heldout.yaml"
    template.write_text(template.read_text() + "# edited\n")
    planned, output = _plan(first_run, code)
    # what scores reruns; eval_data's sets (and decontamination, pretraining after them) do not
    assert planned == {"lm_eval_tasks": 1, "evaluate": 3, "report": 1}, planned
    assert "file evaluate/tasks/heldout.yaml changed" in output
    shutil.copy2(PACKAGE / "evaluate" / "tasks" / "heldout.yaml", template)

    # A newer tokenizers: a dist-info ahead of site-packages is what an upgrade looks like to
    # importlib.metadata; the module itself is untouched.
    dist = code / "tokenizers-99.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tokenizers\nVersion: 99.0\n")
    (dist / "top_level.txt").write_text("tokenizers\n")
    planned, output = _plan(first_run, code)
    assert {"tokenizer", "pack", "pretrain", "report"} <= set(planned), planned
    assert not {"acquire", "curate", "langid", "quality", "reasoning"} & set(planned), planned
    assert "package tokenizers" in output and "-> 99.0" in output
