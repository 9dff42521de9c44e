"""Evaluation throughput: the default recipe's lm-eval suite on one checkpoint, on this machine.

Usage: python bench/eval_suite.py [--checkpoint base|sft|rl] [--out results/bench/eval_suite.json]

Runs the evaluate stage (the real ``run_stage`` path: model load, task rendering, lm-eval, sample
logging) twice in this process: the tiny recipe's suite (the baseline) and the default recipe's
suite, on the same checkpoint: runs/default/<stage> when it exists, else runs/tiny/<stage> (the
JSON says which). The eval_data it reads is runs/<that recipe>/eval_data, or a fresh eval_data run
in a temporary directory. Requests are lm-eval's: one per choice for multiple choice, one per item
for generation and bits-per-byte; requests/s is over the whole stage wall time (model load and
dataset building included), the figure a workflow run sees. Both runs' outputs are compared with
a second default run's, so the JSON also records whether a rerun gives identical numbers.
Timings go to results/bench/, never into a manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from openrecipe.evaluate import eval_data, evaluate  # noqa: E402
from openrecipe.paths import find_project_root  # noqa: E402
from openrecipe.recipe import load_recipe  # noqa: E402
from openrecipe.registry import checkpoint_stages  # noqa: E402
from openrecipe.stage import run_stage  # noqa: E402

STAGE_OF = checkpoint_stages()  # checkpoint name -> the stage that trains it


def requests(out: Path) -> dict[str, int]:
    """lm-eval requests per task, counted from the stage's samples files."""
    counts = {}
    for path in sorted(out.glob("samples_*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        counts[path.stem.removeprefix("samples_")] = sum(len(r.get("choices", [0])) for r in rows)
    return counts


def timed(recipe_name: str, inputs: dict[str, Path], out: Path, part: str, project: Path) -> dict:
    recipe = load_recipe(project / "recipes" / f"{recipe_name}.yaml", project=project)
    start = time.perf_counter()
    manifest = run_stage("evaluate", recipe, out, inputs, evaluate.run, project=project, part=part)
    wall = time.perf_counter() - start
    per_task = requests(out)
    total = sum(per_task.values())
    return {
        "recipe_suite": recipe_name,
        "wall_s": round(wall, 2),
        "requests": per_task,
        "requests_total": total,
        "requests_per_s": round(total / wall, 2),
        "outputs": manifest["outputs"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="base", choices=sorted(STAGE_OF))
    parser.add_argument("--out", default="results/bench/eval_suite.json")
    args = parser.parse_args()
    project = find_project_root()
    run_dir = project / "runs" / "default"
    if not (run_dir / STAGE_OF[args.checkpoint] / "manifest.json").is_file():
        run_dir = project / "runs" / "tiny"
    inputs = {"model": run_dir / STAGE_OF[args.checkpoint], "reasoning": run_dir / "reasoning"}
    with tempfile.TemporaryDirectory(dir=project / "runs") as scratch:
        scratch = Path(scratch)
        inputs["eval_data"] = run_dir / "eval_data"
        if not (inputs["eval_data"] / "manifest.json").is_file():
            recipe = load_recipe(project / "recipes" / "default.yaml", project=project)
            inputs["eval_data"] = scratch / "eval_data"
            run_stage("eval_data", recipe, inputs["eval_data"], {}, eval_data.run, project=project)
        part = args.checkpoint
        baseline = timed("tiny", inputs, scratch / "tiny", part, project)
        suite = timed("default", inputs, scratch / "default", part, project)
        rerun = timed("default", inputs, scratch / "default_again", part, project)
    identical = suite.pop("outputs") == rerun.pop("outputs")
    baseline.pop("outputs")
    report = {
        "checkpoint": f"{run_dir.relative_to(project)}/{STAGE_OF[args.checkpoint]}",
        "threads": int(load_recipe(project / "recipes" / "default.yaml").get("resources.threads")),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "baseline_tiny_suite": baseline,
        "default_suite": suite,
        "default_suite_rerun_wall_s": rerun["wall_s"],
        "rerun_outputs_identical": identical,
        "ratio_default_over_tiny_wall": round(suite["wall_s"] / baseline["wall_s"], 2),
        "ratio_default_over_tiny_requests_per_s": round(
            suite["requests_per_s"] / baseline["requests_per_s"], 2
        ),
    }
    out = project / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}, indent=1))
    print(
        f"default suite: {suite['requests_total']} requests in {suite['wall_s']} s "
        f"({suite['requests_per_s']} req/s); tiny suite {baseline['wall_s']} s; rerun identical: "
        f"{identical}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
