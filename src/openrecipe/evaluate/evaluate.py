"""The ``evaluate`` stage: run openrecipe's lm-eval suite on one checkpoint, offline.

Inputs: ``model`` (a checkpoint stage dir whose ``model/`` holds an HF ``save_pretrained`` of
``NemotronHForCausalLM`` plus its tokenizer and chat template) and ``reasoning`` (its
``heldout.jsonl``). The same code scores base, SFT and RL checkpoints (``--part`` names which; the
manifest records it): all share one tokenizer, so all get the same chat prompt.

Outputs (all byte-identical across reruns):
- ``results.json``: {task: lm-eval's results dict}, with volatile fields (dates, git hash,
  environment dump) dropped and run-time paths replaced by ``<model>``, ``<reasoning>``...;
- ``samples_<task>.jsonl``: one line per evaluated item, ordered by doc id;
- ``scores.json``: {task: {metric: value}}.

Each task gets its own ``simple_evaluate`` call (the recipe gives each its own ``limit``), all on
one loaded model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from openrecipe.data.chat import CHAT_TEMPLATE, system_prompt
from openrecipe.errors import StageInputError
from openrecipe.evaluate import benchmarks, suite
from openrecipe.evaluate.answers import extract_answer, thinking_span
from openrecipe.evaluate.eval_data import EvalDataParams
from openrecipe.evaluate.suite import render_suite
from openrecipe.hashing import sha256_bytes, sha256_file
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, optional_key, view_field

HELDOUT_FIELDS = ("id", "question", "thinking", "answer")
HELDOUT_TASK = "openrecipe_reasoning_heldout"  # the generative task: reasoning modes and budgets
# Top-level keys of lm-eval's results that describe the run, not the result (see
# lm_eval.evaluator.simple_evaluate and lm_eval.loggers.utils.add_env_info).
_VOLATILE_KEYS = (
    "date",
    "git_hash",
    "upper_git_hash",
    "pretty_env_info",
    "start_time",
    "end_time",
    "total_evaluation_time_seconds",
    "model_name_sanitized",
)
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")  # "<function f at 0x7f...>" in lm-eval's config dumps
# Standard-error draws for metrics without a closed form (ours all have one or none).
_BOOTSTRAP_ITERS = 1000


@dataclass(frozen=True)
class EvalTask:
    """One ``eval.tasks`` entry: a task of the local suite, its item limit and shots. The schema
    fills both (0: all items, no shots); a section built in memory may leave them out, read 0."""

    name: str
    limit: int | None = optional_key()
    num_fewshot: int | None = optional_key()


@dataclass(frozen=True)
class EvalParams:
    """``eval``: the tasks, the decoding and reasoning settings, the seed, and the eval_data
    stage's pinned wheel (read by that stage; here only part of the view)."""

    tasks: tuple[EvalTask, ...]
    checkpoints: tuple[Literal["base", "sft", "rl"], ...]
    """The checkpoints evaluated, one job each (evaluate.smk)."""
    batch_size: int
    max_new_tokens: int
    reasoning: Literal["on", "off", "both"]
    thinking_budgets: tuple[int, ...]
    thinking_budget: int
    seed: int
    data: EvalDataParams | None = optional_key()


@dataclass(frozen=True)
class EvaluateConfig:
    """The evaluate stage's view, typed."""

    eval: EvalParams = view_field("eval")
    threads: int = view_field("resources.threads")


@dataclass(frozen=True)
class _Plan:
    """What a run evaluates, from ``eval``: (name, limit, shots) per task, the primary
    reasoning mode and whether the held-out task runs with reasoning off too (``both``)."""

    tasks: list[tuple[str, int, int]]
    reasoning: str
    both: bool

    @classmethod
    def of(cls, cfg: EvalParams) -> _Plan:
        both = cfg.reasoning == "both"
        tasks = [(t.name, t.limit or 0, t.num_fewshot or 0) for t in cfg.tasks]
        return cls(tasks, "on" if both else cfg.reasoning, both)


@dataclass(frozen=True)
class _Outcome:
    """The evaluation's results, scores, rendered task hashes and the model's chat template."""

    results: dict[str, Any]
    scores: dict[str, dict[str, float]]
    task_hashes: Any
    chat_template: str


def _runs(
    tasks: list[tuple[str, int, int]],
    primary: str,
    both: bool,
    budget: int,
    budgets: list[int],
) -> list[tuple[str, str, int, int, str, int]]:
    """(scores key, task, limit, num_fewshot, reasoning mode, thinking budget) of each
    ``simple_evaluate`` call. Every task runs once in the primary mode under its own name; the
    held-out task runs again with reasoning off (``both``) and at each extra budget, reasoning
    on, under ``<task>__reasoning_off`` and ``<task>__budget_<N>``. Only the held-out task: it is
    the one whose outcome depends on the generated reasoning."""
    runs = []
    for name, limit, num_fewshot in tasks:
        runs.append((name, name, limit, num_fewshot, primary, budget))
        if name != HELDOUT_TASK:
            continue
        if both:
            runs.append((f"{name}__reasoning_off", name, limit, num_fewshot, "off", budget))
        for extra in budgets:
            runs.append((f"{name}__budget_{extra}", name, limit, num_fewshot, "on", extra))
    return runs


def check_heldout(path: Path) -> int:
    """Number of items in ``heldout.jsonl``; a malformed line is named by file and line."""
    if not path.is_file():
        raise StageInputError(f"{path}: missing; is the reasoning input a reasoning stage dir?")
    count = 0
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StageInputError(f"{path}:{number}: not JSON ({exc})") from exc
            missing = [f for f in HELDOUT_FIELDS if not isinstance(record.get(f), str)]
            if missing:
                raise StageInputError(f"{path}:{number}: fields {missing} missing or not strings")
            count += 1
    if count == 0:
        raise StageInputError(f"{path}: no held-out items")
    return count


def checkpoint_dir(stage_dir: Path) -> Path:
    model_dir = stage_dir / "model"
    for name in ("config.json", "tokenizer_config.json"):
        if not (model_dir / name).is_file():
            raise StageInputError(
                f"{model_dir / name}: missing; is the model input a checkpoint stage?"
            )
    return model_dir


def scrub(value: Any, replacements: dict[str, str]) -> Any:
    """``value`` with run-time paths replaced by placeholders and object addresses removed."""
    if isinstance(value, dict):
        return {str(k): scrub(v, replacements) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, replacements) for v in value]
    if isinstance(value, str):
        for path, placeholder in replacements.items():
            value = value.replace(path, placeholder)
        return _ADDRESS.sub("", value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return scrub(str(value), replacements)  # e.g. torch.dtype in lm-eval's model info


def clean_results(results: dict[str, Any], replacements: dict[str, str]) -> dict[str, Any]:
    """lm-eval's results dict without samples and volatile fields, paths as placeholders."""
    kept = {k: v for k, v in results.items() if k not in ("samples", *_VOLATILE_KEYS)}
    return scrub(kept, replacements)


def metric_values(task_results: dict[str, Any]) -> dict[str, float]:
    """{metric: value} from lm-eval's "metric,filter" keys (stderr kept when it is a number)."""
    values = {}
    for key, value in task_results.items():
        metric, sep, _filter = key.partition(",")
        if sep and isinstance(value, (int, float)):
            values[metric] = value
    return values


def heldout_rows(samples: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """Per-item record of the generative task. Thinking length is counted by re-encoding the
    generated reasoning text (no special tokens): equal to the generated count for well-formed
    text, larger where a (random) model emitted byte fragments that decode to U+FFFD. The
    budget itself is enforced on the generated ids (hflm.ThinkingBudget), not on this count."""
    rows = []
    for sample in samples:
        generation = sample["resps"][0][0]
        thinking = thinking_span(generation)
        rows.append(
            {
                "doc_id": sample["doc_id"],
                "id": sample["doc"]["id"],
                "prompt": sample["arguments"][0][0],
                "generation": generation,
                "thinking_tokens": (
                    len(tokenizer.encode(thinking, add_special_tokens=False))
                    if thinking is not None
                    else 0
                ),
                "extracted": extract_answer(generation),
                "gold": sample["doc"]["answer"].strip(),
                "correct": bool(sample["exact_match"]),
            }
        )
    return rows


def bpb_rows(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for sample in samples:
        loglikelihood, n_bytes = sample["bits_per_byte"]
        rows.append(
            {
                "doc_id": sample["doc_id"],
                "id": sample["doc"]["id"],
                "prompt": sample["arguments"][0][0],
                "target": sample["arguments"][0][1],
                "loglikelihood": loglikelihood,
                "bytes": n_bytes,
            }
        )
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in sorted(rows, key=lambda r: r["doc_id"]):
            handle.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(
        json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def run(ctx: StageContext) -> dict[str, Any]:
    cfg = decode_view(EvaluateConfig, ctx.config, ctx.stage).eval
    plan = _Plan.of(cfg)
    model_dir = checkpoint_dir(ctx.input("model"))
    heldout = ctx.input("reasoning") / "heldout.jsonl"
    n_heldout = check_heldout(heldout)
    eval_data = ctx.inputs.get("eval_data")  # needed only by the standard benchmarks

    # Offline, and every datasets cache in a scratch dir beside the output, deleted afterwards.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    scratch = Path(tempfile.mkdtemp(prefix=".evaluate-scratch-", dir=ctx.out.parent))
    os.environ["HF_DATASETS_CACHE"] = str(scratch / "hf_datasets")
    try:
        outcome = _evaluate(ctx, cfg, plan, model_dir, heldout, eval_data, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    _write_json(ctx.out / "results.json", outcome.results)
    _write_json(ctx.out / "scores.json", outcome.scores)
    return _run_info(cfg, plan, outcome, heldout, n_heldout, eval_data)


def _evaluate(
    ctx: StageContext,
    cfg: EvalParams,
    plan: _Plan,
    model_dir: Path,
    heldout: Path,
    eval_data: Path | None,
    scratch: Path,
) -> _Outcome:
    """Render the suite into ``scratch``, load the model once and run each task's
    ``simple_evaluate`` (``_runs``), writing its ``samples_<key>.jsonl``."""
    import lm_eval
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    from openrecipe.evaluate import hflm  # noqa: F401  (registers "openrecipe-hf")

    include = scratch / "tasks"
    task_hashes = render_suite(
        [name for name, _, _ in plan.tasks],
        include,
        data_file=heldout,
        cache_dir=scratch / "hf_datasets",
        max_gen_toks=cfg.max_new_tokens,
        reasoning=plan.reasoning,
        eval_data=eval_data,
    )
    manager = TaskManager(include_path=str(include), include_defaults=False)
    lm = get_model("openrecipe-hf").create_from_arg_obj(
        {
            "pretrained": str(model_dir),
            "dtype": "float32",
            "add_bos_token": False,
            "thinking_budget": cfg.thinking_budget,
        },
        {"batch_size": cfg.batch_size, "device": "cpu"},
    )
    chat_template = lm.tokenizer.chat_template
    if not chat_template:
        raise StageInputError(f"{model_dir}: the tokenizer has no chat_template")
    replacements = {
        str(heldout): "<reasoning>/heldout.jsonl",
        str(model_dir): "<model>",
        str(scratch): "<scratch>",
        **({str(eval_data): "<eval_data>"} if eval_data else {}),
        str(ctx.project): "<project>",
    }

    results: dict[str, Any] = {}
    scores: dict[str, dict[str, float]] = {}
    seed = cfg.seed
    for key, name, limit, num_fewshot, mode, lm.thinking_budget in _runs(
        plan.tasks, plan.reasoning, plan.both, cfg.thinking_budget, list(cfg.thinking_budgets)
    ):
        chat = benchmarks.uses_chat_template(name)
        lm_name = benchmarks.lm_eval_task(name)
        raw = lm_eval.simple_evaluate(
            model=lm,
            tasks=[lm_name],
            task_manager=manager,
            # 0 shots: leave it to lm-eval, which then sets 0 itself (the task templates
            # name none) instead of warning that it overrides the template's default
            num_fewshot=num_fewshot or None,
            limit=limit or None,
            log_samples=True,
            bootstrap_iters=_BOOTSTRAP_ITERS,
            system_instruction=system_prompt(mode == "on") if chat else None,
            apply_chat_template=chat,
            fewshot_as_multiturn=chat,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
        samples = raw["samples"][lm_name]
        results[key] = clean_results(raw, replacements)
        scores[key] = metric_values(raw["results"][lm_name])
        if name == HELDOUT_TASK:
            rows = heldout_rows(samples, lm.tokenizer)
            thinking = [r["thinking_tokens"] for r in rows]
            scores[key]["thinking_tokens_mean"] = sum(thinking) / len(thinking)
        elif name in benchmarks.BENCHMARKS:
            rows = benchmarks.sample_rows(name, samples)
        else:
            rows = bpb_rows(samples)
        scores[key]["n"] = len(rows)
        _write_jsonl(ctx.out / f"samples_{key}.jsonl", scrub(rows, replacements))
    return _Outcome(results, scores, task_hashes, chat_template)


def _run_info(
    cfg: EvalParams,
    plan: _Plan,
    outcome: _Outcome,
    heldout: Path,
    n_heldout: int,
    eval_data: Path | None,
) -> dict[str, Any]:
    """The manifest's run info: versions and hashes of everything the scores depend on, the
    sampling settings, the tasks and the scores."""
    import lm_eval

    tasks = plan.tasks
    return {
        "lm_eval_version": lm_eval.__version__,
        "task_config_sha256": outcome.task_hashes,
        "task_utils_sha256": {
            name: sha256_file(suite.TASKS_DIR / name)
            for name in ("utils.py", benchmarks.UTILS_FILE)
        },
        "dataset_sha256": benchmarks.dataset_pins([name for name, _, _ in tasks], eval_data),
        "chat_template_tasks": sorted(n for n, _, _ in tasks if benchmarks.uses_chat_template(n)),
        "chat_template_sha256": sha256_bytes(outcome.chat_template.encode("utf-8")),
        "system_prompt_sha256": sha256_bytes(system_prompt(plan.reasoning == "on").encode("utf-8")),
        "chat_template_is_openrecipe": outcome.chat_template == CHAT_TEMPLATE,
        "heldout_sha256": sha256_file(heldout),
        "heldout_items": n_heldout,
        "sampling": {
            "decoding": "greedy",
            "until": ["<|im_end|>"],
            "max_gen_toks": cfg.max_new_tokens,
            "reasoning": "both" if plan.both else plan.reasoning,
            "thinking_budget": cfg.thinking_budget,
            "thinking_budgets": list(cfg.thinking_budgets),
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "dtype": "float32",
            "add_bos_token": False,
        },
        "tasks": {
            name: {"limit": limit, "num_fewshot": num_fewshot} for name, limit, num_fewshot in tasks
        },
        "scores": outcome.scores,
    }
