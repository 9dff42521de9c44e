"""A NemotronH forward on CPU prints no "install causal_conv1d" hint; other records still pass."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import openrecipe  # noqa: F401  (installs the filter, as every entry point does)
from openrecipe.kernel_hint import HUB_KERNELS_LOGGER, CpuKernelHintFilter

SRC = Path(__file__).resolve().parents[2] / "src"

TINY = {
    "hybrid_override_pattern": "M*-",
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "mamba_num_heads": 4,
    "mamba_head_dim": 8,
    "ssm_state_size": 8,
    "n_groups": 1,
    "num_hidden_layers": 3,
}


_FORWARD = f"""
import torch
from openrecipe.model.build import build_model, nemotronh_config
model = build_model(nemotronh_config({TINY!r}, 50), seed=0)
ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
model(ids, labels=ids).loss.backward()  # training path: chunk scan + conv1d
model.eval()
model.generate(ids[:1, :4], max_new_tokens=2, do_sample=False)  # decode path: the *_update kernels
print("ok")
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="the hint is kept where CUDA exists")
def test_cpu_forward_and_generate_print_no_kernel_hint() -> None:
    """In a fresh process, as a stage runs: the real stderr, not a captured logger."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _FORWARD], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert "falling back" not in done.stderr and "causal_conv1d" not in done.stderr, done.stderr


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord(HUB_KERNELS_LOGGER, logging.WARNING, __file__, 1, message, (), None)


def test_filter_keeps_other_records_and_the_hint_on_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    hint = _record("`causal_conv1d_fn` is falling back to its reference PyTorch implementation")
    other = _record("`causal_conv1d_fn` can't keep packed sequences apart")
    filt = CpuKernelHintFilter()
    assert filt.filter(other)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not filt.filter(hint)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert filt.filter(hint)


def test_filter_is_installed_once() -> None:
    openrecipe.kernel_hint.install()
    filters = logging.getLogger(HUB_KERNELS_LOGGER).filters
    assert sum(isinstance(f, CpuKernelHintFilter) for f in filters) == 1
