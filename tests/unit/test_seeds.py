"""Alignment seeds (issue 13: the RL gain must hold over seeds, not on one): the pooled paired
test, the seed parts of the sft/rl stages, the workflow's per-seed fan-out and the per-seed
section of reasoning.md."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from align_fixtures import PROJECT, tiny_recipe

from openrecipe.errors import RecipeError, StageInputError
from openrecipe.evaluate import reasoning_report
from openrecipe.evaluate.evaluate import HELDOUT_TASK
from openrecipe.evaluate.paired import pooled_paired
from openrecipe.hashing import derive_seed
from openrecipe.recipe import load_recipe
from openrecipe.report import _extra_seed
from openrecipe.seeds import align_seeds, check_part, seed_of_checkpoint, stage_dir
from openrecipe.stage import run_stage

# --- pooling -------------------------------------------------------------------------------


def test_pooled_paired_clusters_by_item() -> None:
    """Two seeds with the same per-item differences [+1, 0, 0, +1] (perfectly correlated):
    per-item means [1, 0, 0, 1], mean 0.5, sample variance 1/3, se sqrt(1/3 / 4) = 0.2887,
    z = 1.732; as if the seeds were independent: each seed's se^2 = 1/12, sqrt(2/12) / 2 =
    0.2041, z = 2.449. Clustering by item does not count the same items twice."""
    a = {"q0": 0.0, "q1": 1.0, "q2": 0.0, "q3": 0.0}
    b = {"q0": 1.0, "q1": 1.0, "q2": 0.0, "q3": 1.0}
    pooled = pooled_paired([(a, b), (a, b)])
    assert pooled["seeds"] == 2 and pooled["n"] == 4
    assert pooled["difference"] == pytest.approx(0.5)
    assert pooled["paired_stderr"] == pytest.approx(math.sqrt(1 / 12))
    assert pooled["z"] == pytest.approx(0.5 / math.sqrt(1 / 12))  # 1.732
    assert pooled["stderr_independent"] == pytest.approx(math.sqrt(2 / 12) / 2)
    assert pooled["z_independent"] == pytest.approx(0.5 / (math.sqrt(2 / 12) / 2))  # 2.449


def test_pooled_paired_seeds_that_disagree_cancel() -> None:
    """Seed 1 differences [+1, +1, 0, 0], seed 2 [-1, 0, +1, 0]: per-item means
    [0, 0.5, 0.5, 0], mean 0.25, sample variance (3 * 0.0625 + 0.0625) / 3 = 1/12,
    se sqrt(1/12 / 4) = 0.1443."""
    zeros = {f"q{i}": 0.0 for i in range(4)}
    seed1 = {"q0": 1.0, "q1": 1.0, "q2": 0.0, "q3": 0.0}
    seed2_sft = {"q0": 1.0, "q1": 0.0, "q2": 0.0, "q3": 0.0}
    seed2_rl = {"q0": 0.0, "q1": 0.0, "q2": 1.0, "q3": 0.0}
    pooled = pooled_paired([(zeros, seed1), (seed2_sft, seed2_rl)])
    assert pooled["difference"] == pytest.approx(0.25)
    assert pooled["paired_stderr"] == pytest.approx(math.sqrt(1 / 12 / 4))
    assert pooled["z"] == pytest.approx(0.25 / math.sqrt(1 / 48))


def test_pooled_paired_uses_the_items_every_seed_scored() -> None:
    a = {"q0": 0.0, "q1": 0.0, "q2": 1.0}
    b = {"q0": 1.0, "q1": 0.0, "q2": 1.0}
    pooled = pooled_paired([(a, b), ({"q0": 0.0, "q1": 0.0}, {"q0": 1.0, "q1": 1.0, "q9": 1.0})])
    assert pooled["n"] == 2  # q2 and q9 are not scored by both seeds
    assert pooled["difference"] == pytest.approx(0.75)  # per item: (1 + 1) / 2, (0 + 1) / 2
    assert pooled_paired([]) is None
    assert pooled_paired([({"q0": 1.0}, {"q0": 0.0})]) is None


# --- seeds of the sft and rl stages -------------------------------------------------------


def test_names_and_parts() -> None:
    assert align_seeds({}) == [0]
    assert align_seeds({"align": {"seeds": [0, 2]}}) == [0, 2]
    assert [stage_dir("rl", k) for k in (0, 3)] == ["rl", "rl_seed3"]
    assert seed_of_checkpoint("sft") == ("sft", 0)
    assert seed_of_checkpoint("rl_seed12") == ("rl", 12)
    for other in ("base", "rl_seed0", "rl_seed", "pretrain_seed1", "rl_seed1x"):
        assert seed_of_checkpoint(other) is None
    assert _extra_seed("rl_seed2") and not _extra_seed("rl") and not _extra_seed("base")


def test_check_part_refuses_seeds_the_recipe_does_not_name() -> None:
    data = {"align": {"seeds": [0, 1, 2]}}
    assert check_part("rl", None, data, "runs/default/rl") == 0
    assert check_part("rl", "seed2", data, "runs/default/rl_seed2") == 2
    for bad in ("seed3", "seed0", "seed01", "2", "../x"):
        with pytest.raises(
            StageInputError, match=r"align.seeds: \[0, 1, 2\]; valid parts: seed1, seed2"
        ):
            check_part("rl", bad, data, "runs/default/rl_seed1")
    with pytest.raises(StageInputError, match="valid parts: none"):
        check_part("sft", "seed1", {}, "runs/tiny/sft_seed1")
    # one directory, one seed: a resume checkpoint beside it is never resumed under another
    for part_name, out in (
        ("seed1", "runs/default/rl_seed2"),
        ("seed1", "runs/default/rl"),
        (None, "runs/default/rl_seed1"),
        ("seed1", "runs/default/sft_seed1"),
    ):
        with pytest.raises(StageInputError, match="is not the directory of seed"):
            check_part("rl", part_name, data, out)


def test_a_seed_part_gives_the_stage_its_own_seed(tmp_path: Path) -> None:
    """Seed 0 is the stage seed a single-seed recipe always had; seed k its own, recorded."""
    seen = {}

    def body(ctx):
        seen[ctx.part] = ctx.seed
        return {}

    recipe = tiny_recipe()
    run_stage("rl", recipe, tmp_path / "rl", {}, body, project=PROJECT)
    manifest = run_stage(
        "rl", recipe, tmp_path / "rl_seed1", {}, body, project=PROJECT, part="seed1"
    )
    assert seen[None] == derive_seed(recipe.data["seed"], "rl")
    assert seen["seed1"] == derive_seed(recipe.data["seed"], "rl", "seed1") != seen[None]
    assert manifest["part"] == "seed1" and manifest["seed"] == seen["seed1"]


def test_the_cli_refuses_an_unknown_seed_part() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "openrecipe", "rl", "--recipe", "recipes/default.yaml"]
        + ["--out", "runs/default/rl_seed7", "--part", "seed7"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--part 'seed7' is not an alignment seed" in done.stderr
    assert not (PROJECT / "runs" / "default" / "rl_seed7").exists()


@pytest.mark.parametrize("seeds", ["[1, 2]", "[0, 1, 1]", "[0, -1]", "[]", "0"])
def test_the_schema_refuses_bad_seed_lists(tmp_path: Path, seeds: str) -> None:
    recipe = tmp_path / "recipes" / "bad.yaml"
    recipe.parent.mkdir()
    shutil.copy(PROJECT / "recipes" / "tiny.yaml", recipe.parent / "tiny.yaml")
    shutil.copytree(PROJECT / "workflow" / "schemas", tmp_path / "workflow" / "schemas")
    recipe.write_text(f"name: bad\nextends: tiny\nalign:\n  seeds: {seeds}\n")
    with pytest.raises(RecipeError, match="align.seeds"):
        load_recipe(recipe, project=tmp_path)


# --- the workflow fans out per seed ---------------------------------------------------------


def _dry_run(tmp_path: Path, recipe: str) -> str:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Snakefile", "workflow", "recipes", "pyproject.toml"):
        source = PROJECT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name)
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--configfile"]
        + [f"recipes/{recipe}.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


def _calls(output: str) -> list[tuple[str, str, str | None]]:
    """(stage, --out, --part) of every stage command in a dry run's printed shell commands."""
    calls = []
    for line in output.splitlines():
        found = re.search(r"-m openrecipe (\w+) --recipe \S+ (.*?)--out (\S+)", line)
        if found:
            part = re.search(r"--part (\S+)", found.group(2))
            calls.append((found.group(1), found.group(3), part and part.group(1)))
    return calls


def test_default_plans_three_alignment_chains(tmp_path: Path) -> None:
    output = _dry_run(tmp_path, "default")
    calls = _calls(output)
    by_stage = Counter(stage for stage, _, _ in calls)
    assert (by_stage["sft"], by_stage["rl"], by_stage["evaluate"]) == (3, 3, 7)
    aligned = sorted((s, out, part) for s, out, part in calls if s in ("sft", "rl"))
    assert aligned == [
        ("rl", "runs/default/rl", None),
        ("rl", "runs/default/rl_seed1", "seed1"),
        ("rl", "runs/default/rl_seed2", "seed2"),
        ("sft", "runs/default/sft", None),
        ("sft", "runs/default/sft_seed1", "seed1"),
        ("sft", "runs/default/sft_seed2", "seed2"),
    ]
    evaluated = sorted(part for stage, _, part in calls if stage == "evaluate")
    assert evaluated == sorted(
        ["base", "sft", "rl", "sft_seed1", "rl_seed1", "sft_seed2", "rl_seed2"]
    )
    # each seed's RL trains from that seed's SFT, and the report reads every chain
    assert (
        "--input sft=runs/default/sft_seed2 --input reasoning=runs/default/reasoning "
        + ("--part seed2 --out runs/default/rl_seed2")
        in output
    )
    report = next(line for line in output.splitlines() if "-m openrecipe report" in line)
    for name in ("sft_seed1", "rl_seed2", "eval_rl_seed1", "eval_sft_seed2", "eval_rl"):
        assert f"--input {name}=" in report


def test_a_single_seed_recipe_plans_as_before(tmp_path: Path) -> None:
    calls = _calls(_dry_run(tmp_path, "tiny"))
    aligned = sorted((s, out, part) for s, out, part in calls if s in ("sft", "rl"))
    assert aligned == [("rl", "runs/tiny/rl", None), ("sft", "runs/tiny/sft", None)]
    assert sorted(p for s, _, p in calls if s == "evaluate") == ["base", "rl", "sft"]


# --- reasoning.md per seed -----------------------------------------------------------------


def _samples(directory: Path, correct: list[int]) -> Path:
    directory.mkdir(parents=True)
    rows = [{"id": f"q{i}", "correct": bool(c)} for i, c in enumerate(correct)]
    (directory / f"samples_{HELDOUT_TASK}.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    return directory


def test_reasoning_md_reports_each_seed_and_the_pooled_test(tmp_path: Path) -> None:
    """Seed 0: SFT 2/4, RL 3/4 (+0.25); seed 1: SFT 1/4, RL 2/4 (+0.25), on different items;
    per-item mean differences [0.5, 0.5, 0, 0], mean 0.25, variance 1/12, se sqrt(1/48)."""
    inputs = {
        "eval_sft": _samples(tmp_path / "e_sft", [1, 0, 1, 0]),
        "eval_rl": _samples(tmp_path / "e_rl", [1, 1, 1, 0]),
        "eval_sft_seed1": _samples(tmp_path / "e_sft1", [0, 0, 1, 0]),
        "eval_rl_seed1": _samples(tmp_path / "e_rl1", [1, 0, 1, 0]),
    }
    (tmp_path / "rl_seed1").mkdir()
    rows = [{"step": s, "accuracy": a} for s, a in enumerate([0.25, 0.5])]
    (tmp_path / "rl_seed1" / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    inputs["rl_seed1"] = tmp_path / "rl_seed1"
    seeds = reasoning_report.seed_table(inputs)
    assert [r["seed"] for r in seeds["per_seed"]] == [0, 1]
    assert [r["difference"] for r in seeds["per_seed"]] == pytest.approx([0.25, 0.25])
    pooled = seeds["pooled"]
    assert pooled["difference"] == pytest.approx(0.25)
    assert pooled["paired_stderr"] == pytest.approx(math.sqrt(1 / 48))
    assert (pooled["sft_accuracy"], pooled["rl_accuracy"]) == pytest.approx((0.375, 0.625))
    text = reasoning_report.reasoning_md("default", {}, [], None, seeds)
    # seed 1's differences [+1, 0, 0, 0]: variance 0.25, se sqrt(0.25 / 4) = 0.25, z 1.00
    row = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert row == "| 1 | 0.2500 | 0.5000 | +0.2500 | 0.2500 | 1.00 | 1 | 0 | 4 | 0.2500 -> 0.5000 |"
    z = 0.25 / math.sqrt(1 / 48)
    assert f"| pooled (2 seeds) | 0.3750 | 0.6250 | +0.2500 | 0.1443 | {z:.2f} |" in text
    assert (
        f"Pooled over 2 seeds: RL - SFT = +0.2500, paired standard error 0.1443, z = {z:.2f}"
        in text
    )


def test_a_single_seed_report_has_no_seed_section(tmp_path: Path) -> None:
    inputs = {
        "eval_sft": _samples(tmp_path / "e_sft", [1, 0, 1, 0]),
        "eval_rl": _samples(tmp_path / "e_rl", [1, 1, 1, 0]),
        "eval_rl_seed1": _samples(tmp_path / "e_rl1", [1, 0, 1, 0]),  # no sft_seed1: no pair
    }
    assert reasoning_report.seed_table(inputs) is None
    out = tmp_path / "results"
    out.mkdir()
    table = reasoning_report.write_reasoning(out, "tiny", inputs)
    assert "seeds" not in table
    assert "per alignment seed" not in (out / "reasoning.md").read_text()


def test_the_results_check_reads_the_pooled_row(tmp_path: Path) -> None:
    """test_reasoning_results parses the table reasoning_md writes (three seeds here)."""
    from test_reasoning_results import seed_rows

    inputs = {}
    for seed, (sft, rl) in enumerate(
        [([1, 0, 1, 0], [1, 1, 1, 0]), ([0, 0, 1, 0], [1, 0, 1, 0]), ([1, 1, 0, 0], [1, 1, 0, 0])]
    ):
        inputs[f"eval_{stage_dir('sft', seed)}"] = _samples(tmp_path / f"s{seed}", sft)
        inputs[f"eval_{stage_dir('rl', seed)}"] = _samples(tmp_path / f"r{seed}", rl)
    seeds = reasoning_report.seed_table(inputs)
    rows = seed_rows(reasoning_report.reasoning_md("default", {}, [], None, seeds))
    assert list(rows) == ["0", "1", "2", "pooled (3 seeds)"]
    cells = rows["pooled (3 seeds)"]
    assert float(cells[2]) == pytest.approx(seeds["pooled"]["difference"], abs=5e-5)
    assert float(cells[4]) == pytest.approx(seeds["pooled"]["z"], abs=5e-3)
    assert int(cells[7]) == 4
