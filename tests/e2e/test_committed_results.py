"""The committed results/tiny/ is what this commit computes: CI remakes the tiny run from scratch
(the shared first run) and requires every hash of the committed, signed lock.

If this fails after a code change, the change altered what tiny computes: regenerate
results/tiny from a clean commit (`make run RECIPE=recipes/tiny.yaml`, `openrecipe lock tiny`)
and commit it with the change, as docs say; never edit the lock.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from openrecipe.lineage.attestation import load_trust
from openrecipe.lineage.check_results import RELEASE_SIGNERS
from openrecipe.lineage.lock import LOCK_NAME, check_lock

from .workflow import REPO, TINY, snakemake

pytestmark = pytest.mark.e2e


def test_committed_tiny_results_are_remade_hash_by_hash(first_run: Path) -> None:
    snakemake(first_run, *TINY)  # undo what other tests' overrides reran
    committed = REPO / "results" / "tiny" / LOCK_NAME
    signers = REPO / RELEASE_SIGNERS
    copy = first_run / "results" / "tiny" / LOCK_NAME
    shutil.copy2(committed, copy)
    try:
        result = check_lock(copy, load_trust([], signers, signers))
    finally:
        copy.unlink()
    assert result["verdict"] == "exact", (
        f"{len(result['artifacts_differing'])} artifact(s) differ from the committed lock, e.g. "
        f"{result['artifacts_differing'][:10]}"
    )
    assert result["made_by_other_code"] == []
