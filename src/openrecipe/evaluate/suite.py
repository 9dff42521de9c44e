"""openrecipe's local lm-eval task suite: templates in ``tasks/``, rendered to concrete YAML.

Two renderings of the same templates:
- ``render_suite`` (the evaluate stage): every task of the recipe, into a temporary include dir
  handed to ``TaskManager(include_path=..., include_defaults=False)``, with absolute paths (the
  held-out file's path is only known when the stage runs).
- ``export_benchmarks`` (the lm_eval_tasks stage): the log-likelihood benchmarks into the run's
  ``lm_eval_tasks/``, data paths relative to the repository root, so that stock
  ``lm_eval --model hf --include_path runs/<r>/lm_eval_tasks --tasks openrecipe_arc_easy ...``
  run from the root scores the same items with the same prompts, without openrecipe.

The hash recorded for a task is that of its text as used except for the run-time paths (left as
placeholders), so it changes with the template or the sampling settings but not with where the
checkout lives; both renderings of a task have the same hash.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from string import Template

from openrecipe.errors import RecipeError
from openrecipe.evaluate import benchmarks
from openrecipe.hashing import sha256_bytes

TASKS_DIR = Path(__file__).parent / "tasks"
# task name -> template file (the standard benchmarks: evaluate/benchmarks.py)
TASKS: dict[str, str] = {
    "openrecipe_reasoning_heldout": "heldout.yaml",
    "openrecipe_reasoning_bpb": "bpb.yaml",
    **{name: spec.template for name, spec in benchmarks.BENCHMARKS.items()},
}
_PATH_FIELDS = ("data_file", "fewshot_file", "cache_dir")
# Benchmarks a stock lm-eval reproduces from the exported directory: scored by log-likelihood
# on the raw prompt. The generative ones need the checkpoint's chat template, our system prompt,
# a generation length from the recipe's eval section and openrecipe's grader.
EXPORTED = tuple(name for name, spec in benchmarks.BENCHMARKS.items() if not spec.chat)
EXPORT_README = "README.md"


def _render(task: str, fields: dict[str, str]) -> str:
    if task not in TASKS:
        raise RecipeError(
            f"eval.tasks: unknown task {task!r}; openrecipe's suite has {sorted(TASKS)}"
        )
    template = Template((TASKS_DIR / TASKS[task]).read_text(encoding="utf-8"))
    return template.substitute(fields)


def task_hash(task: str, common: dict[str, str]) -> str:
    """sha256 of ``task``'s rendered text with its run-time paths left as placeholders."""
    placeholders = {name: f"${{{name}}}" for name in _PATH_FIELDS}
    return sha256_bytes(_render(task, common | placeholders).encode("utf-8"))


def _path_fields(test_file: str, fewshot_file: str, cache_dir: str | None) -> dict[str, str]:
    # JSON strings are valid YAML scalars and quote any path safely (null: lm-eval's default).
    return {
        "data_file": json.dumps(test_file),
        "fewshot_file": json.dumps(fewshot_file),
        "cache_dir": json.dumps(cache_dir),
    }


def render_suite(
    tasks: list[str],
    include_dir: Path,
    *,
    data_file: Path,
    cache_dir: Path,
    max_gen_toks: int,
    reasoning: str,
    eval_data: Path | None = None,
) -> dict[str, str]:
    """Write the rendered task YAMLs + utils.py into ``include_dir``; return {task: sha256}.
    ``data_file`` is the held-out set; the benchmarks read ``eval_data`` (a stage dir)."""
    include_dir.mkdir(parents=True, exist_ok=True)
    for name in ("utils.py", benchmarks.UTILS_FILE):
        shutil.copyfile(TASKS_DIR / name, include_dir / name)
    common = {"max_gen_toks": str(int(max_gen_toks)), "reasoning": reasoning}
    hashes: dict[str, str] = {}
    for task in tasks:
        hashes[task] = task_hash(task, common)
        test_file = fewshot_file = data_file
        if task in benchmarks.BENCHMARKS:
            test_file, fewshot_file = benchmarks.data_files(task, eval_data)
        paths = _path_fields(str(test_file), str(fewshot_file), str(cache_dir))
        (include_dir / f"{task}.yaml").write_text(_render(task, common | paths), encoding="utf-8")
    return hashes


def export_benchmarks(tasks_dir: Path, data_dir: str, include_dir: str) -> dict[str, str]:
    """The ``EXPORTED`` benchmarks rendered into ``tasks_dir`` with each data file as
    ``<data_dir>/<set>.jsonl`` (``data_dir``: the eval_data stage dir relative to the repository
    root), plus ``bench_utils.py`` and a README with the command (``include_dir``: where
    ``tasks_dir`` ends up, relative to the repository root); returns {task: sha256}."""
    tasks_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TASKS_DIR / benchmarks.UTILS_FILE, tasks_dir / benchmarks.UTILS_FILE)
    hashes: dict[str, str] = {}
    for task in EXPORTED:
        spec = benchmarks.BENCHMARKS[task]
        hashes[task] = task_hash(task, {})
        test_file = f"{data_dir}/{spec.data}.jsonl"
        fewshot_file = f"{data_dir}/{spec.fewshot or spec.data}.jsonl"
        text = _render(task, _path_fields(test_file, fewshot_file, None))
        (tasks_dir / f"{spec.lm_eval_task}.yaml").write_text(text, encoding="utf-8")
    names = " ".join(benchmarks.BENCHMARKS[t].lm_eval_task for t in EXPORTED)
    (tasks_dir / EXPORT_README).write_text(
        f"# lm-eval tasks of this run (rendered, concrete)\n\n"
        f"Run from the repository root (data paths are relative to it), offline:\n\n"
        f"    HF_DATASETS_OFFLINE=1 lm_eval --model hf \\\n"
        f"      --model_args pretrained=<checkpoint>/model,dtype=float32,add_bos_token=False \\\n"
        f"      --include_path {include_dir} --tasks <task> --limit <N> --seed <eval.seed>\n\n"
        f"Tasks: {names}.\n"
        f"Each scores exactly the items and prompts of openrecipe's evaluate stage for the same\n"
        f"limit, num_fewshot and seed (eval.seed; `--seed` sets lm-eval's four seeds).\n",
        encoding="utf-8",
    )
    return hashes
