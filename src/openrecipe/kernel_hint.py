"""Drop transformers' "install causal_conv1d / mamba_ssm" hint where it cannot be acted on.

NemotronH's Mamba-2 mixer calls ``causal_conv1d_fn``, ``mamba_chunk_scan_combined`` and friends
through ``transformers.integrations.hub_kernels``, which logs once per function that it is
"falling back to its reference PyTorch implementation because `causal_conv1d` is not installed".
No configuration avoids the call (the mixer has one code path; ``use_mamba_kernels`` is
deprecated and ignored), and on a machine without CUDA the packages cannot be installed: their
kernels are CUDA-only, so the PyTorch path is the only one there is. The hint stays on a machine
with a GPU, where installing the ``gpu`` extra is the right reaction.

``openrecipe.cli.main`` installs it, so every stage process has it; the CLI is outside every
stage's code identity (``openrecipe.codeid``), so adding it reran no stage.
"""

from __future__ import annotations

import logging

HUB_KERNELS_LOGGER = "transformers.integrations.hub_kernels"
_FALLBACK = "is falling back to its reference PyTorch implementation"


class CpuKernelHintFilter(logging.Filter):
    """Refuse exactly the fallback hint, and only while no CUDA device is visible."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _FALLBACK not in record.getMessage():
            return True
        import torch  # loaded already: only a model forward logs this

        return torch.cuda.is_available()


def install() -> None:
    """Attach the filter once (idempotent); it does not import transformers or torch."""
    logger = logging.getLogger(HUB_KERNELS_LOGGER)
    if not any(isinstance(f, CpuKernelHintFilter) for f in logger.filters):
        logger.addFilter(CpuKernelHintFilter())
