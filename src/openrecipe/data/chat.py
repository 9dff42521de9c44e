"""The chat format shared by the tokenizer, SFT, GRPO and evaluation.

ChatML turns (``<|im_start|>role\\n...<|im_end|>``) with Nemotron-style reasoning control: a
system prompt ending in ``/think`` or ``/no_think``; the assistant's reasoning is wrapped in
``<think>...</think>`` (empty when reasoning is off, as Nemotron 3 Nano's template does).
"""

from __future__ import annotations

from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
REASONING_ON = "/think"
REASONING_OFF = "/no_think"

# Jinja template stored in tokenizer_config.json, so lm-eval's ``apply_chat_template`` and any
# HF consumer format prompts exactly as training did.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def system_prompt(reasoning: bool) -> str:
    return f"You are a careful assistant. {REASONING_ON if reasoning else REASONING_OFF}"


def assistant_content(thinking: str | None, answer: str) -> str:
    """Assistant turn text; ``thinking=None`` means reasoning off (an empty think block)."""
    inner = thinking if thinking else ""
    return f"{THINK_OPEN}{inner}{THINK_CLOSE}{answer}"


def messages(question: str, reasoning: bool, assistant: str | None = None) -> list[dict[str, str]]:
    """System (reasoning switch) + user turns, and the assistant turn when given."""
    turns = [
        {"role": "system", "content": system_prompt(reasoning)},
        {"role": "user", "content": question},
    ]
    if assistant is not None:
        turns.append({"role": "assistant", "content": assistant})
    return turns


def encode_prompt(tokenizer: Any, question: str, reasoning: bool = True) -> list[int]:
    """Token ids of the prompt up to and including ``<|im_start|>assistant\\n``."""
    return list(
        tokenizer.apply_chat_template(
            messages(question, reasoning),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
    )


def encode_sft(
    tokenizer: Any, question: str, thinking: str | None, answer: str, reasoning: bool = True
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one SFT conversation: labels are -100 except on the assistant's
    reply and its closing ``<|im_end|>`` (what generation must produce to stop); the template's
    trailing newline is not trained.

    The prompt is tokenized alone and must be a prefix of the whole conversation; that holds
    because the boundary (``assistant\\n`` then ``<think>``) falls before a special token, which
    the BPE pre-tokenizer never merges across. It is checked, not assumed."""
    prompt = encode_prompt(tokenizer, question, reasoning)
    full = list(
        tokenizer.apply_chat_template(
            messages(question, reasoning, assistant_content(thinking, answer)),
            tokenize=True,
            return_dict=False,
        )
    )
    if full[: len(prompt)] != prompt:
        raise ValueError(f"chat template: the prompt of {question!r} does not tokenize as a prefix")
    end = full.index(tokenizer.convert_tokens_to_ids(IM_END), len(prompt)) + 1
    labels = [-100] * len(prompt) + full[len(prompt) : end] + [-100] * (len(full) - end)
    return full, labels
