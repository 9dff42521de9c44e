"""Stand-ins for upstream stages, shared by the reasoning/SFT/GRPO tests.

A real ``pretrain`` stage directory is built through ``run_stage`` (so its manifest is genuine):
a byte-level BPE trained on reasoning text, with the special tokens the tokenizer stage
declares, wrapped in ``PreTrainedTokenizerFast``, and a random tiny NemotronH from the recipe's
model section."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from openrecipe.data import chat, reasoning
from openrecipe.model.build import build_model, nemotronh_config
from openrecipe.paths import find_project_root
from openrecipe.recipe import Recipe, load_recipe
from openrecipe.stage import StageContext, run_stage

SPECIALS = ["<s>", "</s>", "<pad>", chat.IM_START, chat.IM_END, chat.THINK_OPEN, chat.THINK_CLOSE]
PROJECT = find_project_root(Path(__file__).parent)


def tiny_recipe(overrides: dict | None = None) -> Recipe:
    """recipes/tiny.yaml with sections patched in memory (e.g. fewer SFT steps)."""
    recipe = load_recipe(PROJECT / "recipes" / "tiny.yaml", project=PROJECT)
    for section, values in (overrides or {}).items():
        recipe.data[section].update(values)
    return recipe


def train_tokenizer(texts: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=SPECIALS[3:],
    )
    fast.chat_template = chat.CHAT_TEMPLATE
    return fast


def make_reasoning(recipe: Recipe, out: Path) -> Path:
    run_stage("reasoning", recipe, out, {}, reasoning.run, project=PROJECT)
    return out


def make_pretrain(recipe: Recipe, reasoning_dir: Path, out: Path) -> Path:
    """A finished ``pretrain`` stage dir holding ``model/`` (random weights + tokenizer)."""
    texts = [
        f"{r['question']} {r['thinking']} {r['answer']}"
        for r in reasoning.read_split(reasoning_dir, "train")
    ]

    def body(ctx: StageContext) -> dict:
        tokenizer = train_tokenizer(texts)
        ids = tokenizer.convert_tokens_to_ids
        config = nemotronh_config(
            recipe.get("model"),
            len(tokenizer),
            bos_id=ids("<s>"),
            eos_id=ids("</s>"),
            pad_id=ids("<pad>"),
        )
        model = build_model(config, seed=ctx.seed)
        model.save_pretrained(ctx.out / "model")
        tokenizer.save_pretrained(ctx.out / "model")
        return {}

    run_stage("pretrain", recipe, out, {}, body, project=PROJECT)
    return out
