"""The ``lm_eval_tasks`` stage: the run's lm-eval task directory, rendered for stock lm-eval.

``runs/<recipe>/lm_eval_tasks/`` holds one concrete task YAML per log-likelihood benchmark
(``suite.export_benchmarks``: data paths point at the ``eval_data`` stage's sets, relative to the
repository root), ``bench_utils.py`` and a README with the command, so that

    lm_eval --model hf --include_path runs/<recipe>/lm_eval_tasks --tasks openrecipe_arc_easy ...

scores the same items with the same prompts as the evaluate stage, without openrecipe installed.

A stage of its own, not part of ``eval_data``, on purpose: the task templates
(``evaluate/tasks/``) are in this stage's code identity, and an edit to them must rerun only
what scores (this stage, evaluate, report). ``eval_data``'s sets feed decontamination, so had
``eval_data`` rendered the tasks, a template edit would rerun decontamination and everything
trained after it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.evaluate.suite import export_benchmarks
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field


@dataclass(frozen=True)
class EvalTasksConfig:
    """The lm_eval_tasks stage's view, typed: the recipe name, since the rendered data paths name
    the run's directory (``runs/<name>/eval_data``)."""

    name: str = view_field("name")


def run(ctx: StageContext) -> dict[str, Any]:
    decode_view(EvalTasksConfig, ctx.config, ctx.stage)
    data_dir = Path(os.path.relpath(ctx.input("eval_data"), ctx.project)).as_posix()
    include_dir = Path(os.path.relpath(ctx.dest or ctx.out, ctx.project)).as_posix()
    return {"task_config_sha256": export_benchmarks(ctx.out, data_dir, include_dir)}
