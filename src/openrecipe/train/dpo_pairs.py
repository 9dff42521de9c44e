"""The preference pairs of the ``dpo`` stage (``dpo.pairs``; docs/post-training.md): sampled
from the starting policy and graded by the verifier (``rollouts``), or read from a pinned JSONL
file (``dataset``). What each source does, and why, is in ``openrecipe.train.dpo``'s docstring;
this module builds the pairs, ``dpo`` trains on them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import PreTrainedModel

from openrecipe.data import chat
from openrecipe.data.reasoning import read_split
from openrecipe.errors import RecipeError, StageInputError
from openrecipe.evaluate.grader import Verifier
from openrecipe.hashing import derive_seed, sha256_file
from openrecipe.paths import resolve_inside
from openrecipe.stage import StageContext
from openrecipe.stage_config import optional_key
from openrecipe.train.sampling import sample_group

PAIR_KEYS = ("prompt", "chosen", "rejected")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class PairsParams:
    """``dpo.pairs``: the source and its fields (rollouts: prompts, samples, temperature,
    max_new_tokens; dataset: path, sha256; the schema requires those of the source)."""

    source: Literal["rollouts", "dataset"]
    prompts: int | None = optional_key()
    samples: int | None = optional_key()
    temperature: float | None = optional_key()
    max_new_tokens: int | None = optional_key()
    path: str | None = optional_key()
    sha256: str | None = optional_key()


@dataclass
class Pair:
    """One preference pair as trained: token ids, and the reference's sequence log-probs."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    record: dict[str, Any]
    """Evidence kept in pairs.jsonl (ids, texts, sample indices or dataset line)."""
    ref_chosen: float = 0.0
    ref_rejected: float = 0.0


def describe(pair: Pair) -> str:
    """Where a pair came from, for error messages."""
    record = pair.record
    if "line" in record:
        return f"{record['file']} line {record['line']}"
    return f"prompt {record['prompt_index']} (id {record['id']})"


def rollout_pairs(
    ctx: StageContext, policy: PreTrainedModel, tokenizer: Any, spec: PairsParams
) -> tuple[list[Pair], dict[str, int]]:
    """Pairs from the starting policy's own samples, graded by the verifier (module docstring),
    and the counts of prompts sampled and skipped."""
    assert spec.prompts and spec.samples and spec.temperature and spec.max_new_tokens
    records = read_split(ctx.input("reasoning"), "train")
    if spec.prompts > len(records):
        raise RecipeError(
            f"dpo.pairs.prompts: {spec.prompts} train prompts asked for, the reasoning set "
            f"has {len(records)} (sft.data.n_train)"
        )
    stop_id = tokenizer.convert_tokens_to_ids(chat.IM_END)
    pairs: list[Pair] = []
    counts = {"prompts_sampled": spec.prompts, "skipped_no_correct": 0, "skipped_no_incorrect": 0}
    with Verifier() as verifier:
        for index, record in enumerate(records[: spec.prompts]):
            prompt = chat.encode_prompt(tokenizer, record["question"], reasoning=True)
            rollouts = []
            for sample in range(spec.samples):
                seed = derive_seed(ctx.seed, "pairs", str(index), str(sample))
                rollouts += sample_group(
                    policy,
                    prompt,
                    1,
                    max_new_tokens=spec.max_new_tokens,
                    temperature=spec.temperature,
                    stop_id=stop_id,
                    generator=torch.Generator().manual_seed(seed),
                )
            texts = [tokenizer.decode(r.tokens, skip_special_tokens=False) for r in rollouts]
            scored = verifier.score(texts, [record["answer"]] * len(texts))
            correct = [ok and chat.THINK_CLOSE in t for ok, t in zip(scored, texts, strict=True)]
            good = [j for j, r in enumerate(rollouts) if correct[j] and r.stopped]
            bad = [j for j in range(len(rollouts)) if not correct[j]]
            if not good:
                counts["skipped_no_correct"] += 1
                continue
            if not bad:
                counts["skipped_no_incorrect"] += 1
                continue
            chosen, rejected = good[0], bad[0]
            pairs.append(
                Pair(
                    prompt,
                    rollouts[chosen].tokens,
                    rollouts[rejected].tokens,
                    {
                        "prompt_index": index,
                        "id": record["id"],
                        "question": record["question"],
                        "answer": record["answer"],
                        "chosen_sample": chosen,
                        "rejected_sample": rejected,
                        "chosen": texts[chosen],
                        "rejected": texts[rejected],
                    },
                )
            )
    return pairs, counts


def dataset_pairs(
    ctx: StageContext, tokenizer: Any, spec: PairsParams
) -> tuple[list[Pair], list[dict[str, Any]]]:
    """Pairs from the pinned JSONL file; the manifest entry that records it as a raw input."""
    assert spec.path and spec.sha256
    path = resolve_inside(spec.path, [ctx.project], "dpo.pairs.path")
    if not path.is_file():
        raise StageInputError(f"dpo.pairs.path: {path}: no such file")
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise StageInputError(
            f"dpo.pairs.path: {path} has sha256 {digest}, the recipe pins {spec.sha256} "
            "(dpo.pairs.sha256); refused"
        )
    name = path.relative_to(ctx.project.resolve()).as_posix()
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                pairs.append(dataset_pair(tokenizer, name, number, line))
    # named by its path, as trace lists raw inputs by name (an imported release: its repo id)
    external = {"name": name, "kind": "preference_dataset", "path": name, "sha256": digest}
    return pairs, [external]


def dataset_pair(tokenizer: Any, name: str, number: int, line: str) -> Pair:
    where = f"{name} line {number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise StageInputError(f"{where}: not JSON ({error.msg})") from None
    if not isinstance(row, dict) or any(key not in row for key in PAIR_KEYS):
        raise StageInputError(f"{where}: a pair needs the keys {', '.join(PAIR_KEYS)}")
    prompt = _messages(row["prompt"], f"{where}: prompt")
    if prompt[-1]["role"] == "assistant":
        raise StageInputError(f"{where}: prompt ends with an assistant turn")
    ids = chat_ids(tokenizer, prompt, add_generation_prompt=True)
    completions = []
    for key in ("chosen", "rejected"):
        turn = _messages(row[key], f"{where}: {key}")
        if len(turn) != 1 or turn[0]["role"] != "assistant":
            raise StageInputError(f"{where}: {key} must be one assistant message")
        full = chat_ids(tokenizer, prompt + turn, add_generation_prompt=False)
        if full[: len(ids)] != ids:
            raise StageInputError(f"{where}: the prompt does not tokenize as a prefix of {key}")
        end = full.index(tokenizer.convert_tokens_to_ids(chat.IM_END), len(ids)) + 1
        completions.append(full[len(ids) : end])
    meta = {k: v for k, v in row.items() if k not in PAIR_KEYS}
    return Pair(ids, completions[0], completions[1], {"file": name, "line": number, **meta})


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    """A chat message list, checked: non-empty, each {role, content} with a known role."""
    if not isinstance(value, list) or not value:
        raise StageInputError(f"{where}: expected a non-empty list of messages")
    for index, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or set(message) != {"role", "content"}
            or message["role"] not in ROLES
            or not isinstance(message["content"], str)
        ):
            raise StageInputError(
                f"{where}[{index}]: a message is {{role: {'|'.join(ROLES)}, content: text}}"
            )
    return value


def chat_ids(
    tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool
) -> list[int]:
    """Token ids of ``messages`` through the policy's chat template."""
    return list(
        tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
        )
    )
