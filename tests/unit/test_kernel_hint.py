"""A NemotronH forward on CPU in an ``openrecipe`` process prints no "install causal_conv1d"
hint; other records still pass, and the hint stays where CUDA exists."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from openrecipe.codeid import import_closure
from openrecipe.kernel_hint import HUB_KERNELS_LOGGER, CpuKernelHintFilter, install
from openrecipe.registry import STAGE_MODULES

REPO = Path(__file__).resolve().parents[2]
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

# A stage process: cli.main first (here a cheap verb), then a model forward and generate.
_STAGE_PROCESS = f"""
import torch
from openrecipe.cli import main
from openrecipe.model.build import build_model, nemotronh_config
assert main(["resolve", {str(REPO / "recipes" / "tiny.yaml")!r}, "-o", "/dev/null"]) == 0
model = build_model(nemotronh_config({TINY!r}, 50), seed=0)
ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
model(ids, labels=ids).loss.backward()  # training path: chunk scan + conv1d
model.eval()
model.generate(ids[:1, :4], max_new_tokens=2, do_sample=False)  # decode path: the *_update kernels
print("ok")
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="the hint is kept where CUDA exists")
def test_cpu_stage_process_prints_no_kernel_hint() -> None:
    """In a fresh process, as a stage runs: the real stderr, not a captured logger."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _STAGE_PROCESS],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO,
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
    install()
    install()
    filters = logging.getLogger(HUB_KERNELS_LOGGER).filters
    assert sum(isinstance(f, CpuKernelHintFilter) for f in filters) == 1


def test_no_stage_code_identity_includes_the_filter() -> None:
    """A logging filter must not re-address (and so rerun) any stage."""
    for stage, module in STAGE_MODULES.items():
        assert "openrecipe.kernel_hint" not in import_closure((module, "openrecipe.stage")), stage
