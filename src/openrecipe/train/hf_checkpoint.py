"""The ``model/`` output of the alignment stages: a Hugging Face checkpoint (``save_pretrained``
safetensors, config, generation config) plus the tokenizer files of the model it started from,
copied byte for byte, so lm-eval's ``hf`` backend and vLLM read it as is. ``sft`` reads the
pretrain stage's, ``rl`` the sft stage's.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from openrecipe.data import chat
from openrecipe.errors import StageInputError

_MODEL_FILES = ("config.json", "generation_config.json")  # written by save_pretrained itself


def load_checkpoint(stage_dir: Path) -> tuple[PreTrainedModel, Any]:
    """The model (float32, for CPU training) and tokenizer in ``stage_dir/model``."""
    model_dir = stage_dir / "model"
    if not (model_dir / "config.json").is_file():
        raise StageInputError(f"{model_dir}/config.json: missing; not a stage with a model/ output")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.chat_template is None or chat.THINK_CLOSE not in tokenizer.get_vocab():
        raise StageInputError(
            f"{model_dir}: tokenizer lacks the chat template or {chat.THINK_CLOSE}"
        )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model, tokenizer


def save_checkpoint(model: PreTrainedModel, source_dir: Path, out_dir: Path) -> None:
    """``save_pretrained`` (safetensors) plus the tokenizer files of ``source_dir/model``."""
    target = out_dir / "model"
    model.save_pretrained(target, safe_serialization=True)
    for path in sorted((source_dir / "model").iterdir()):
        is_weights = path.name.startswith("model") and ".safetensors" in path.name
        if path.is_file() and not is_weights and path.name not in _MODEL_FILES:
            shutil.copyfile(path, target / path.name)
