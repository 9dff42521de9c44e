"""The ``tokenizer`` stage: a byte-level BPE trained on the blend's streams.

Byte-level BPE (GPT-2 style, via the ``tokenizers`` library) never needs ``<unk>``: every byte
has a token, so code, any language and odd Unicode all round-trip. The special tokens take the
first ids in the recipe's list order (``<unk>``=0, ``<s>``=1, ``</s>``=2, ``<pad>``=3, then the
chat and reasoning markers), and are registered as added tokens, so ``<think>`` in raw text is one
id rather than seven bytes. The result is saved as a ``transformers`` tokenizer with the shared
chat template, so training, SFT, GRPO and lm-eval all load the same files with ``AutoTokenizer``.

Determinism: training reads the streams in sorted source order, documents in stream order. The
BPE trainer breaks ties between equally frequent pairs by the pair itself, so its merges do not
depend on thread scheduling (checked: identical ``tokenizer.json`` bytes with 1 and 2 threads).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.data.chat import CHAT_TEMPLATE
from openrecipe.errors import StageInputError
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field

# Role of each of the first four special tokens; the rest of the recipe's list are extra specials.
UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
_ROLES = (UNK, BOS, EOS, PAD)


@dataclass(frozen=True)
class TokenizerParams:
    """``tokenizer``: the BPE vocabulary size, merge frequency floor and special tokens (the
    first four are unk, bos, eos, pad)."""

    vocab_size: int
    min_frequency: int
    special_tokens: tuple[str, ...]


@dataclass(frozen=True)
class TokenizerConfig:
    """The tokenizer stage's view, typed. ``seed`` is in the view although BPE training is
    deterministic without one: a seed change reruns the whole pipeline by design."""

    seed: int = view_field("seed")
    tokenizer: TokenizerParams = view_field("tokenizer")


def stream_paths(blend_dir: Path) -> list[Path]:
    """The blend's per-source streams, sorted by source name (the fixed training order)."""
    streams = blend_dir / "streams"
    paths = sorted(streams.glob("*.jsonl"), key=lambda p: p.stem) if streams.is_dir() else []
    if not paths:
        raise StageInputError(
            f"{streams}: no <source>.jsonl streams; is {blend_dir} a blend stage?"
        )
    return paths


def iter_stream(
    path: Path, field: str = "source", expected: str | None = None
) -> Iterator[dict[str, Any]]:
    """Documents of one stream, in stream order; a malformed line is named by file and line.

    Every document's ``field`` must equal ``expected`` (default: the file's stem, the source of a
    per-source stream; a language stream passes ``field="lang"``)."""
    expected = path.stem if expected is None else expected
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StageInputError(f"{path}:{number}: not a JSON document ({exc})") from exc
            if not isinstance(doc, dict) or not isinstance(doc.get("text"), str) or "id" not in doc:
                raise StageInputError(f"{path}:{number}: expected an object with 'id' and 'text'")
            if doc.get(field, expected) != expected:
                raise StageInputError(
                    f"{path}:{number}: document {doc['id']!r} has {field} {doc[field]!r}, "
                    f"expected {expected!r}"
                )
            yield doc


def check_special_tokens(special_tokens: list[str]) -> None:
    """The first four ids are fixed roles that every later stage relies on (pad=3, eos=2...)."""
    if tuple(special_tokens[:4]) != _ROLES or len(set(special_tokens)) != len(special_tokens):
        raise StageInputError(
            f"tokenizer.special_tokens: must start with {list(_ROLES)} and hold no duplicates, "
            f"found {special_tokens}"
        )


def train_bpe(texts: list[str], vocab_size: int, min_frequency: int, special_tokens: list[str]):
    """Train a byte-level BPE; special tokens get ids 0..n-1 in list order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    check_special_tokens(special_tokens)
    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False: a document's first word is not given a fake leading space, so
    # decode(encode(text)) == text exactly.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    return tokenizer


def wrap(tokenizer, special_tokens: list[str]):
    """The ``transformers`` view of the trained tokenizer, with roles and the chat template."""
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=special_tokens[4:],
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def run(ctx: StageContext) -> dict[str, Any]:
    params = decode_view(TokenizerConfig, ctx.config, ctx.stage).tokenizer
    blend = ctx.input("blend")
    special_tokens = list(params.special_tokens)
    texts: list[str] = []
    docs_per_source: dict[str, int] = {}
    for path in stream_paths(blend):
        before = len(texts)
        texts.extend(doc["text"] for doc in iter_stream(path))
        docs_per_source[path.stem] = len(texts) - before
    if not any(texts):
        raise StageInputError(f"{blend / 'streams'}: the streams hold no text to train on")

    tokenizer = train_bpe(
        texts,
        vocab_size=params.vocab_size,
        min_frequency=params.min_frequency,
        special_tokens=special_tokens,
    )
    wrap(tokenizer, special_tokens).save_pretrained(ctx.out)

    n_chars = sum(len(text) for text in texts)
    n_tokens = sum(len(enc.ids) for enc in tokenizer.encode_batch(texts, add_special_tokens=False))
    return {
        "vocab_size": tokenizer.get_vocab_size(),
        "special_tokens": {token: index for index, token in enumerate(special_tokens)},
        "training_docs": len(texts),
        "training_docs_per_source": docs_per_source,
        "training_chars": n_chars,
        "training_tokens": n_tokens,
        "chars_per_token": round(n_chars / max(n_tokens, 1), 4),
    }
