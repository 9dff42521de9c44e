"""lm-eval's ``hf`` model with two things reasoning evaluation needs (model name ``openrecipe-hf``).

1. Generations keep the reasoning markers. ``HFLM`` decodes with ``skip_special_tokens=True``,
   which would delete ``<think>``/``</think>`` (added special tokens in our tokenizer) and with
   them the boundary between reasoning and answer. Here only pad and eos ids are dropped.
2. A thinking budget. With ``thinking_budget=N > 0``, once a sequence has generated N tokens
   after its ``<think>`` without closing it, ``</think>`` is forced as the next token and decoding
   continues, so the answer is still produced (the thinking-budget control NVIDIA describes for
   Nemotron Nano 2). Done per row by a logits processor, so batched greedy decoding stays one ``generate``.
"""

from __future__ import annotations

from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from transformers import LogitsProcessor, LogitsProcessorList

from openrecipe.data.chat import THINK_CLOSE, THINK_OPEN
from openrecipe.errors import StageInputError


class ThinkingBudget(LogitsProcessor):
    """Force ``close_id`` once a row has ``budget`` tokens after its first ``open_id``."""

    def __init__(self, prompt_len: int, open_id: int, close_id: int, budget: int) -> None:
        self.prompt_len = prompt_len
        self.open_id = open_id
        self.close_id = close_id
        self.budget = budget

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_len :]
        for row in range(generated.shape[0]):
            opens = (generated[row] == self.open_id).nonzero()
            if len(opens) == 0:
                continue
            thinking = generated[row, int(opens[0]) + 1 :]
            if len(thinking) >= self.budget and not bool((thinking == self.close_id).any()):
                scores[row] = torch.finfo(scores.dtype).min
                scores[row, self.close_id] = 0.0
        return scores


def thinking_token_ids(tokenizer: Any) -> tuple[int, int]:
    """Ids of ``<think>`` and ``</think>``; each must be a single token of the tokenizer."""
    ids = []
    for marker in (THINK_OPEN, THINK_CLOSE):
        encoded = tokenizer.encode(marker, add_special_tokens=False)
        if len(encoded) != 1:
            raise StageInputError(
                f"tokenizer: {marker!r} encodes to {len(encoded)} tokens {encoded}, expected one "
                "added token (tokenizer.special_tokens must list it)"
            )
        ids.append(encoded[0])
    return ids[0], ids[1]


@register_model("openrecipe-hf")
class OpenRecipeLM(HFLM):
    """``HFLM`` that keeps reasoning markers in generations and honours a thinking budget."""

    def __init__(self, *args: Any, thinking_budget: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.thinking_budget = int(thinking_budget)
        self.think_ids = thinking_token_ids(self.tokenizer)
        self._dropped = {self.tokenizer.pad_token_id, self.tokenizer.eos_token_id} - {None}

    def tok_decode(self, tokens: Any, skip_special_tokens: bool = True) -> str:
        if isinstance(tokens, int):
            tokens = [tokens]
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self._dropped]
        return self.tokenizer.decode(tokens, skip_special_tokens=False)

    def _model_generate(
        self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs: Any
    ) -> torch.Tensor:
        if self.thinking_budget > 0:
            budget = ThinkingBudget(context.shape[1], *self.think_ids, self.thinking_budget)
            generation_kwargs["logits_processor"] = LogitsProcessorList([budget])
        return super()._model_generate(context, max_length, stop, **generation_kwargs)
