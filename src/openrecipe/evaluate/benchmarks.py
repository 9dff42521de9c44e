"""The standard benchmarks of openrecipe's lm-eval suite, over the ``eval_data`` stage's files.

Each benchmark is a task template in ``tasks/`` (prompts and metrics copied from lm-eval 0.4.13's
own task of the same name where one exists, so our numbers mean what lm-eval's mean), the
``eval_data`` file(s) it reads, whether the checkpoint's chat template wraps its prompt, and the
answer format and source split the report prints beside its score. lm-eval knows each as
``openrecipe_<name>`` (``Benchmark.lm_eval_task``), never under a stock task's name.

- Multiple choice (arc_easy, arc_challenge, hellaswag, piqa, winogrande, mmlu; the other answer
  format of ARC and MMLU as arc_easy_mc, arc_challenge_mc, mmlu_rc) and gold-answer
  bits-per-byte (gsm8k_bpb, math500_bpb) are scored on the raw prompt, no chat template: that is
  how published base-model scores are measured (lm-eval's defaults, OLMES' "rc"/"bpb" formats),
  and log-likelihood of a fixed continuation needs no reasoning mode.
- Generative math (gsm8k, math500) runs through the chat template and reasoning mode like the
  held-out set; the answer is the last ``\\boxed{}`` or final number after ``</think>`` and is
  graded by ``openrecipe.evaluate.grader.Verifier`` (exact fractions for numbers, math-verify in a
  worker process for LaTeX), the same grader GRPO rewards with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.errors import StageInputError
from openrecipe.evaluate.grader import extract_answer
from openrecipe.hashing import sha256_file

TASKS_DIR = Path(__file__).parent / "tasks"
UTILS_FILE = "bench_utils.py"


@dataclass(frozen=True)
class Benchmark:
    template: str  # file in tasks/
    data: str  # eval_data set read as the test split
    chat: bool  # prompt wrapped in the chat template (+ system prompt / reasoning mode)
    fewshot: str | None = None  # eval_data set used as the few-shot split
    # How the answer is scored, shown beside each figure in the report: "mc" (the option
    # letter), "rc" (cloze: each answer text), "gen" (generated, graded), "bpb" (bits per byte
    # of the reference answer). OLMES' names; lm-eval's own arc/hellaswag/piqa are "rc".
    format: str = "rc"
    split: str = "test"  # the source split of `data` (eval_data's index.json says the same)

    @property
    def lm_eval_task(self) -> str:
        """The name lm-eval knows the task by: prefixed, so an exported task directory never
        shadows lm-eval's own task of the same name (which reads other data)."""
        return f"openrecipe_{self.template.removesuffix('.yaml')}"


# Where lm-eval has the task, our name is its name and our default format is its format; the
# other format of a benchmark (MMLU cloze, ARC letters) gets a suffix and its own config hash.
BENCHMARKS: dict[str, Benchmark] = {
    "arc_easy": Benchmark("arc_easy.yaml", "arc_easy", False, "arc_easy_validation"),
    "arc_easy_mc": Benchmark(
        "arc_easy_mc.yaml", "arc_easy", False, "arc_easy_validation", format="mc"
    ),
    "arc_challenge": Benchmark(
        "arc_challenge.yaml", "arc_challenge", False, "arc_challenge_validation"
    ),
    "arc_challenge_mc": Benchmark(
        "arc_challenge_mc.yaml", "arc_challenge", False, "arc_challenge_validation", format="mc"
    ),
    "hellaswag": Benchmark("hellaswag.yaml", "hellaswag", False, split="validation"),
    "piqa": Benchmark("piqa.yaml", "piqa", False, split="validation"),
    "winogrande": Benchmark("winogrande.yaml", "winogrande", False, split="validation"),
    "mmlu": Benchmark("mmlu.yaml", "mmlu", False, "mmlu_dev", format="mc"),
    "mmlu_rc": Benchmark("mmlu_rc.yaml", "mmlu", False, "mmlu_dev"),
    "gsm8k": Benchmark("gsm8k.yaml", "gsm8k", True, format="gen"),
    "gsm8k_bpb": Benchmark("gsm8k_bpb.yaml", "gsm8k", False, format="bpb"),
    "math500": Benchmark("math500.yaml", "math500", True, format="gen"),
    "math500_bpb": Benchmark("math500_bpb.yaml", "math500", False, format="bpb"),
}


def lm_eval_task(task: str) -> str:
    """lm-eval's name for a recipe task (openrecipe's own tasks are already prefixed)."""
    return BENCHMARKS[task].lm_eval_task if task in BENCHMARKS else task


# openrecipe's own tasks, on the reasoning stage's held-out problems
_OWN_VARIANTS = {
    "openrecipe_reasoning_heldout": ("gen", "held-out"),
    "openrecipe_reasoning_bpb": ("bpb", "held-out"),
}


def variant(key: str) -> tuple[str, str]:
    """(answer format, split) of a scores key (``<task>`` or ``<task>__reasoning_off`` ...),
    printed beside each figure so a reader knows which formulation and split it measured."""
    task = key.partition("__")[0]
    if task in BENCHMARKS:
        return BENCHMARKS[task].format, BENCHMARKS[task].split
    return _OWN_VARIANTS.get(task, ("?", "?"))


def uses_chat_template(task: str) -> bool:
    """Whether ``task``'s prompt goes through the chat template (openrecipe's own tasks do)."""
    return BENCHMARKS[task].chat if task in BENCHMARKS else True


def data_files(task: str, eval_data: Path | None) -> tuple[Path, Path]:
    """(test file, few-shot file) of a benchmark in an ``eval_data`` stage dir."""
    spec = BENCHMARKS[task]
    if eval_data is None:
        raise StageInputError(
            f"eval.tasks: {task!r} reads the eval_data stage's files; pass --input eval_data=DIR"
        )
    paths = (eval_data / f"{spec.data}.jsonl", eval_data / f"{spec.fewshot or spec.data}.jsonl")
    for path in paths:
        if not path.is_file():
            raise StageInputError(f"{path}: missing; is the eval_data input an eval_data stage?")
    return paths


def dataset_pins(tasks: list[str], eval_data: Path | None) -> dict[str, dict[str, str]]:
    """{task: {file name: sha256}} of the data each benchmark read (recorded in the manifest)."""
    pins = {}
    for task in tasks:
        if task in BENCHMARKS:
            pins[task] = {p.name: sha256_file(p) for p in data_files(task, eval_data)}
    return pins


def utils_sha256() -> str:
    """Hash of the task functions file: scoring code is part of a task's definition."""
    return sha256_file(TASKS_DIR / UTILS_FILE)


# ------------------------------------------------------------------------------------------
# per-item records for samples_<task>.jsonl


def sample_rows(task: str, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per evaluated item: the inputs and what was scored, nothing volatile."""
    rows = []
    for sample in samples:
        row: dict[str, Any] = {
            "doc_id": sample["doc_id"],
            "id": sample["doc"]["openrecipe_id"],
            "prompt": sample["arguments"][0][0],
        }
        if "bits_per_byte" in sample:
            loglikelihood, n_bytes = sample["bits_per_byte"]
            row |= {"target": sample["arguments"][0][1], "loglikelihood": loglikelihood}
            row["bytes"] = n_bytes
        elif "exact_match" in sample:
            generation = sample["resps"][0][0]
            row |= {"generation": generation, "extracted": extract_answer(generation)}
            row |= {"gold": sample["doc"]["gold"], "correct": bool(sample["exact_match"])}
        else:  # multiple choice: one (loglikelihood, is_greedy) per choice
            row["choices"] = [arguments[1] for arguments in sample["arguments"]]
            row["loglikelihoods"] = [float(r[0]) for r in sample["filtered_resps"]]
            row["target"] = sample["target"]
            row |= {m: float(sample[m]) for m in ("acc", "acc_norm") if m in sample}
        rows.append(row)
    return rows
