"""The chat format shared by the tokenizer, SFT, GRPO and evaluation.

ChatML turns (``<|im_start|>role\\n...<|im_end|>``) with Nemotron-style reasoning control: a
system prompt ending in ``/think`` or ``/no_think``; the assistant's reasoning is wrapped in
``<think>...</think>`` (empty when reasoning is off, as Nemotron 3 Nano's template does).
"""

from __future__ import annotations

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
