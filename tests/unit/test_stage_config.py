"""Typed stage configs (openrecipe.stage_config): decoded once from the stage's view, checked
field by field, and giving the same view (so the same hash) back (before, stages read
``ctx.cfg("dotted.path")`` values by string keys). Stages with one: the keys of ``TYPED``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from openrecipe.data.blend import BlendConfig, ExcludeRule
from openrecipe.data.curate import CurateConfig
from openrecipe.data.pack import PackConfig
from openrecipe.data.reasoning import ReasoningConfig
from openrecipe.data.stages.decontam import DecontamConfig
from openrecipe.data.stages.fuzzy_dedup import FuzzyDedupConfig
from openrecipe.data.stages.langid import LangidConfig
from openrecipe.data.stages.quality import QualityConfig
from openrecipe.data.tokenizer import TokenizerConfig
from openrecipe.errors import RecipeError
from openrecipe.evaluate.eval_data import EvalDataConfig
from openrecipe.evaluate.evaluate import EvaluateConfig
from openrecipe.hashing import hash_obj
from openrecipe.model.megatron_data import MegatronDataConfig
from openrecipe.model.megatron_plan import PlanConfig, compile_plan, encode_recipe
from openrecipe.recipe import load_recipe
from openrecipe.registry import STAGES, stand_ins
from openrecipe.report import ReportConfig
from openrecipe.stage_config import (
    decode_view,
    encode_view,
    optional_key,
    plain,
    view_field,
    view_paths,
)
from openrecipe.train.import_checkpoint import ImportConfig
from openrecipe.train.pretrain import PretrainConfig
from openrecipe.train.rl import RlConfig
from openrecipe.train.sft import SftConfig

REPO = Path(__file__).resolve().parents[2]
TYPED = {
    "curate": CurateConfig,
    "langid": LangidConfig,
    "fuzzy_dedup": FuzzyDedupConfig,
    "quality": QualityConfig,
    "decontam": DecontamConfig,
    "blend": BlendConfig,
    "tokenizer": TokenizerConfig,
    "pack": PackConfig,
    "reasoning": ReasoningConfig,
    "eval_data": EvalDataConfig,
    "report": ReportConfig,
    "plan": PlanConfig,
    "megatron_data": MegatronDataConfig,
    "pretrain": PretrainConfig,
    "sft": SftConfig,
    "rl": RlConfig,
    "evaluate": EvaluateConfig,
    "import": ImportConfig,
}
RECIPES = sorted(p.name for p in (REPO / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("stage", sorted(TYPED))
def test_the_config_declares_exactly_the_registry_view(stage: str) -> None:
    assert view_paths(TYPED[stage]) == STAGES[stage].view


@pytest.mark.parametrize("recipe_file", RECIPES)
def test_the_megatron_plan_of_the_typed_config_is_the_plan_of_the_view(recipe_file: str) -> None:
    recipe = load_recipe(REPO / "recipes" / recipe_file, project=REPO)
    view = recipe.view("plan")
    if recipe.get("backend") != "megatron":
        pytest.skip("the plan stage runs for the megatron backend only")
    raw = {path: view[path] for path in ("name", "seed", "model", "pretrain", "parallelism")}
    raw["data"] = {"phases": view["data.phases"]}
    assert compile_plan(encode_recipe(decode_view(PlanConfig, view, "plan"))) == compile_plan(raw)


@pytest.mark.parametrize("recipe_file", RECIPES)
def test_every_recipe_decodes_and_hashes_as_its_view(recipe_file: str) -> None:
    recipe = load_recipe(REPO / "recipes" / recipe_file, project=REPO)
    for stage, cls in TYPED.items():
        if STAGES[stage].backend not in (None, recipe.get("backend")):
            continue  # the stage does not run for this recipe (plan: megatron only)
        if STAGES[stage].stands_in_for and stage not in stand_ins(recipe.data).values():
            continue  # a stand-in (import) runs only for a recipe that switches it on
        config = decode_view(cls, recipe.view(stage), stage)
        assert encode_view(config) == recipe.view(stage)
        assert hash_obj(encode_view(config)) == recipe.view_hash(stage)


def _langid_view(**params: object) -> dict[str, object]:
    base = {
        "mismatch_confidence": 0.8,
        "relabel_min_confidence": 0.5,
        "max_chars": 2000,
        "skip_langs": ["code"],
    }
    return {"data.curation.langid": {**base, **params}, "data.curation.shards": 2}


def test_values_are_typed_and_kept_as_read() -> None:
    config = decode_view(LangidConfig, _langid_view(mismatch_confidence=1), "langid")
    assert config.params.skip_langs == ("code",) and config.shards == 2
    assert encode_view(config)["data.curation.langid"]["mismatch_confidence"] == 1  # not 1.0
    with pytest.raises(Exception, match="frozen|cannot assign"):
        config.shards = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_chars": "2000"}, r"data\.curation\.langid\.max_chars: expected int, found '2000'"),
        ({"max_chars": True}, r"data\.curation\.langid\.max_chars: expected int, found True"),
        ({"skip_langs": "code"}, r"data\.curation\.langid\.skip_langs: expected a list"),
        ({"skip_langs": ["code", 3]}, r"data\.curation\.langid\.skip_langs\[1\]: expected str"),
        ({"extra": 1}, r"data\.curation\.langid: unknown keys \['extra'\], missing keys \[\]"),
    ],
)
def test_a_bad_value_names_its_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        decode_view(LangidConfig, _langid_view(**change), "langid")


def test_a_view_with_other_paths_is_refused() -> None:
    view = {**_langid_view(), "data.curation.decontam": {"ngram": 13, "min_words": 8}}
    with pytest.raises(RecipeError, match="stage langid: view paths"):
        decode_view(LangidConfig, view, "langid")


@dataclass(frozen=True)
class Toy:
    unit: Literal["word", "char"] = view_field("toy.unit")
    bands: int | None = view_field("toy.bands")


def test_literals_and_optionals() -> None:
    assert decode_view(Toy, {"toy.unit": "char", "toy.bands": None}, "toy").bands is None
    assert decode_view(Toy, {"toy.unit": "word", "toy.bands": 4}, "toy").bands == 4
    with pytest.raises(RecipeError, match=r"toy\.unit: 'line' is not one of \['word', 'char'\]"):
        decode_view(Toy, {"toy.unit": "line", "toy.bands": 4}, "toy")
    with pytest.raises(RecipeError, match=r"toy\.bands: expected int, found 4\.5"):
        decode_view(Toy, {"toy.unit": "word", "toy.bands": 4.5}, "toy")


def _wrong(stage: str, recipe_file: str, path: str, key: str | None, value: object) -> dict:
    """The view of ``stage`` in ``recipe_file`` with ``path`` (or its ``key``) set to ``value``."""
    recipe = load_recipe(REPO / "recipes" / recipe_file, project=REPO)
    view = dict(recipe.view(stage))
    view[path] = value if key is None else {**view[path], key: value}
    return view


@pytest.mark.parametrize(
    ("stage", "path", "key", "value", "message"),
    [
        ("curate", "data.curation.normalization", None, "NFD", r"normalization: 'NFD' is not one"),
        ("curate", "data.curation.min_chars", None, 2.5, r"min_chars: expected int, found 2\.5"),
        (
            "curate",
            "data.curation.repetition",
            "dup_line_fraction",
            "x",
            r"repetition\.dup_line_fraction: expected float, found 'x'",
        ),
        ("quality", "data.curation.quality", "n_buckets", "5", r"quality\.n_buckets: expected int"),
        ("quality", "data.curation.exempt_langs", None, "code", r"exempt_langs: expected a list"),
        ("tokenizer", "tokenizer", "vocab_size", 1e4, r"tokenizer\.vocab_size: expected int"),
        ("tokenizer", "tokenizer", "special_tokens", [1], r"special_tokens\[0\]: expected str"),
        (
            "pack",
            "pretrain.seq_length",
            None,
            None,
            r"pretrain\.seq_length: expected int, found None",
        ),
        ("reasoning", "sft.data", "n_train", 1.5, r"sft\.data\.n_train: expected int, found 1\.5"),
        ("reasoning", "sft.data", "max_value", None, r"sft\.data\.max_value: expected int"),
        ("eval_data", "eval.data", "version", 1, r"eval\.data\.version: expected str, found 1"),
        ("eval_data", "eval.data", "seed", "0", r"eval\.data\.seed: expected int, found '0'"),
        ("report", "name", None, 3, r"name: expected str, found 3"),
        ("report", "release", "scale", "huge", r"release\.scale: 'huge' is not one of"),
        ("report", "release", "envelope", [{"task": "t"}], r"release\.envelope\[0\]: unknown"),
        ("plan", "parallelism", "tp", "2", r"parallelism\.tp: expected int, found '2'"),
        ("plan", "model", "head_dim", None, r"model\.head_dim: null is not allowed"),
        ("plan", "pretrain", "precision", "fp4", r"pretrain\.precision: 'fp4' is not one of"),
        ("pretrain", "resources.device", None, "tpu", r"resources\.device: 'tpu' is not one"),
        ("pretrain", "pretrain", "optimizer", {"lr": 1}, r"pretrain\.optimizer: unknown keys"),
        (
            "pretrain",
            "model",
            "tie_word_embeddings",
            0,
            r"model\.tie_word_embeddings: expected bool",
        ),
        ("blend", "pretrain.steps", None, "10", r"pretrain\.steps: expected int, found '10'"),
        (
            "blend",
            "data.exclude",
            None,
            [{"ids": "a/1"}],
            r"data\.exclude\[0\]\.ids: expected a list",
        ),
        (
            "blend",
            "data.exclude",
            None,
            [{"lang": None}],
            r"exclude\[0\]\.lang: null is not allowed",
        ),
        ("blend", "data.exclude", None, [{"langs": "en"}], r"unknown keys \['langs'\]"),
        (
            "blend",
            "data.phases",
            None,
            [{"name": "p", "fraction": 1, "weights": {"web": "1"}}],
            r"data\.phases\[0\]\.weights\.web: expected float, found '1'",
        ),
        ("sft", "sft.batch_size", None, 2.0, r"sft\.batch_size: expected int, found 2\.0"),
        ("rl", "rl", "clip_high", "0.28", r"rl\.clip_high: expected float, found '0\.28'"),
        ("rl", "rl", "algorithm", "ppo", r"rl\.algorithm: 'ppo' is not one of \['grpo'\]"),
        ("evaluate", "eval", "thinking_budgets", [8, "16"], r"thinking_budgets\[1\]: expected int"),
        (
            "evaluate",
            "eval",
            "tasks",
            [{"name": "piqa", "limit": 0, "num_fewshot": 0.5}],
            r"eval\.tasks\[0\]\.num_fewshot: expected int, found 0\.5",
        ),
    ],
)
def test_a_wrong_typed_field_is_named(
    stage: str, path: str, key: str | None, value: object, message: str
) -> None:
    recipe_file = "nemotron_nano_12b_v2_base.yaml" if stage == "plan" else "tiny.yaml"
    view = _wrong(stage, recipe_file, path, key, value)
    with pytest.raises(RecipeError, match=message):
        decode_view(TYPED[stage], view, stage)


@dataclass(frozen=True)
class Free:
    weights: dict[str, float] = view_field("toy.weights")
    rules: tuple[ExcludeRule, ...] = view_field("toy.rules")


def test_free_mappings_and_optional_keys_round_trip() -> None:
    view = {"toy.weights": {"a": 1, "lang:fr": 0.5}, "toy.rules": [{"source": "a"}, {"ids": []}]}
    config = decode_view(Free, view, "toy")
    assert config.rules[0] == ExcludeRule(source="a") and config.rules[1].ids == ()
    assert encode_view(config) == view and plain(config.rules) == view["toy.rules"]
    with pytest.raises(RecipeError, match=r"toy\.weights: expected a mapping, found list"):
        decode_view(Free, {**view, "toy.weights": [1]}, "toy")


@dataclass(frozen=True)
class Maybe:
    note: str | None = optional_key()
    count: int = 0


def test_only_optional_keys_may_be_absent() -> None:
    @dataclass(frozen=True)
    class Holder:
        maybe: Maybe = view_field("toy.maybe")

    assert decode_view(Holder, {"toy.maybe": {"count": 1}}, "toy").maybe == Maybe(count=1)
    with pytest.raises(
        RecipeError, match=r"toy\.maybe: unknown keys \[\], missing keys \['count'\]"
    ):
        decode_view(Holder, {"toy.maybe": {"note": "x"}}, "toy")


def test_an_eval_task_without_limit_or_shots_round_trips() -> None:
    """Sections patched in memory (tests, benches) may leave a task's limit and shots out; the
    stage reads 0 for them, as before, and the view encodes back without them."""
    view = dict(load_recipe(REPO / "recipes" / "tiny.yaml", project=REPO).view("evaluate"))
    view["eval"] = {**view["eval"], "tasks": [{"name": "piqa"}, {"name": "mmlu", "limit": 5}]}
    config = decode_view(EvaluateConfig, view, "evaluate")
    assert [(t.limit, t.num_fewshot) for t in config.eval.tasks] == [(None, None), (5, None)]
    assert encode_view(config) == view
