"""openrecipe's local lm-eval task suite: templates in ``tasks/``, rendered at run time.

The held-out file's path is only known when the stage runs, so each template's ``${...}`` fields
are filled then and the result is written, with ``tasks/utils.py``, into a temporary include dir
handed to ``TaskManager(include_path=..., include_defaults=False)``. The hash recorded for a task
is that of its text *as used* except for the two run-time paths (left as placeholders), so it
changes with the template or the sampling settings but not with where the checkout lives.
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


def _render(task: str, fields: dict[str, str]) -> str:
    if task not in TASKS:
        raise RecipeError(
            f"eval.tasks: unknown task {task!r}; openrecipe's suite has {sorted(TASKS)}"
        )
    template = Template((TASKS_DIR / TASKS[task]).read_text(encoding="utf-8"))
    return template.substitute(fields)


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
        placeholders = {name: f"${{{name}}}" for name in _PATH_FIELDS}
        hashes[task] = sha256_bytes(_render(task, common | placeholders).encode("utf-8"))
        test_file = fewshot_file = data_file
        if task in benchmarks.BENCHMARKS:
            test_file, fewshot_file = benchmarks.data_files(task, eval_data)
        # JSON strings are valid YAML scalars and quote any path safely.
        paths = {
            "data_file": json.dumps(str(test_file)),
            "fewshot_file": json.dumps(str(fewshot_file)),
            "cache_dir": json.dumps(str(cache_dir)),
        }
        (include_dir / f"{task}.yaml").write_text(_render(task, common | paths), encoding="utf-8")
    return hashes
