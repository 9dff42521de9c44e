"""Megatron's own code, run from a side environment, on what the Megatron plan hands it.

megatron-core is not a CPU requirement, so it lives in a separate venv named by
``OPENRECIPE_MCORE_PYTHON`` (``make test`` builds one, .venv-megatron, and names it; by hand:
``python3.11 -m venv /tmp/mcore && /tmp/mcore/bin/pip install -c
constraints.txt megatron-core==0.16.1 numpy torch==2.13.0``); Megatron-LM's argument parser also
needs a checkout of Megatron-LM at the plan's ``MEGATRON_LM_COMMIT``, named by
``OPENRECIPE_MEGATRON_LM`` (its training package imports triton: ``pip install triton`` in the
same venv). Tests skip when either is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Builds the training datasets as pretrain_hybrid.py does (core_gpt_dataset_config_from_args
# and train_valid_test_datasets_provider at Megatron-LM d98e8a64dd) from the flags given, and
# prints each training sample's tokens and labels, plus the files the build wrote.
GPT_DATASET = r"""
import json, os, sys
import numpy as np
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.datasets.utils import get_blend_from_list
from megatron.core.tokenizers.text.libraries.null_tokenizer import NullTokenizer

flags = json.loads(sys.argv[1])
paths = flags["--data-path"]  # nargs="*" in Megatron-LM's parser
tokenizer = NullTokenizer(int(flags["vocab_size"]))
config = GPTDatasetConfig(
    random_seed=int(flags["--seed"]),
    sequence_length=int(flags["--seq-length"]),
    blend=get_blend_from_list(paths if isinstance(paths, list) else [paths]),
    split=flags["--split"],
    path_to_cache=flags.get("--data-cache-path"),
    mmap_bin_files=True,
    tokenizer=tokenizer,
    reset_position_ids=False,
    reset_attention_mask=False,
    eod_mask_loss=False,
    create_attention_mask=True,
)
train, _, _ = BlendedMegatronDatasetBuilder(
    GPTDataset, [int(flags["samples"]), 0, 0], lambda: True, config
).build()
samples = [train[i] for i in range(len(train))]
print(json.dumps({
    "tokens": [s["tokens"].tolist() for s in samples],
    "labels": [s["labels"].tolist() for s in samples],
    "loss_mask": [s["loss_mask"].tolist() for s in samples],
}))
"""

# Parses argument lists with Megatron-LM's own parser (megatron.training.arguments) and prints,
# per list, the flags it does not know. Megatron-LM at d98e8a64dd uses typing.override
# (Python 3.12); on 3.11 the same object comes from typing_extensions.
ARGPARSE = r"""
import argparse, json, sys, typing
import typing_extensions
typing.override = getattr(typing, "override", typing_extensions.override)
sys.path.insert(0, sys.argv[1])
from megatron.training.arguments import add_megatron_arguments
parser = add_megatron_arguments(argparse.ArgumentParser(allow_abbrev=False))
deprecated = sorted(o for a in parser._actions for o in a.option_strings
                    if "deprecated" in (a.help or "").lower())
results = []
for args in json.loads(sys.argv[2]):
    namespace, unknown = parser.parse_known_args(args)
    results.append({"unknown": unknown, "deprecated": deprecated,
                    "parsed": {k: v for k, v in vars(namespace).items()
                               if isinstance(v, (int, float, str, list, bool, type(None)))}})
print(json.dumps(results))
"""


def mcore_python() -> str | None:
    """An interpreter that imports megatron.core: this one, or OPENRECIPE_MCORE_PYTHON's."""
    if importlib.util.find_spec("megatron") and importlib.util.find_spec("megatron.core"):
        return sys.executable
    candidate = os.environ.get("OPENRECIPE_MCORE_PYTHON")
    # absolute: the tests run it from other working directories (a relative venv path and a
    # resolved symlink would both break it, so the path is made absolute, not resolved)
    return os.path.abspath(candidate) if candidate and os.path.exists(candidate) else None


def megatron_lm() -> str | None:
    """A Megatron-LM checkout (OPENRECIPE_MEGATRON_LM), or None."""
    candidate = os.environ.get("OPENRECIPE_MEGATRON_LM")
    ok = candidate and (Path(candidate) / "megatron" / "training" / "arguments.py").is_file()
    return candidate if ok else None


def _run(python: str, code: str, *argv: str, cwd: Path | None = None) -> Any:
    done = subprocess.run(
        [python, "-c", code, *argv], capture_output=True, text=True, timeout=600, cwd=cwd
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def gpt_dataset(python: str, flags: dict[str, Any], cwd: Path) -> dict[str, list]:
    """The training samples megatron-core's GPTDataset yields for these Megatron flags (relative
    paths resolve against ``cwd``, the project root the plan's paths are relative to)."""
    return _run(python, GPT_DATASET, json.dumps(flags), cwd=cwd)


def parse_megatron_args(python: str, checkout: str, arg_lists: list[list[str]]) -> list[dict]:
    """Megatron-LM's parser's verdict on each argument list: the flags it does not know, its
    deprecated flags, and the parsed values."""
    return _run(python, ARGPARSE, checkout, json.dumps(arg_lists))


def flag_values(args: list[str]) -> dict[str, Any]:
    """{flag: value} of an argument list; a flag followed by several values maps to a list
    (``--data-path``), a bare flag to None."""
    out: dict[str, Any] = {}
    key = None
    for arg in args:
        if arg.startswith("--"):
            key = arg
            out[key] = None
        elif key is not None:
            out[key] = arg if out[key] is None else [*_as_list(out[key]), arg]
    return out


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]
