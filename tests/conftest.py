"""Shared fixtures: a throwaway project (schema + recipes) in tmp_path, so loader and stage tests
never touch the checkout."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A minimal project: the real schema and recipes, an empty Snakefile."""
    root = tmp_path / "project"
    (root / "workflow").mkdir(parents=True)
    shutil.copytree(REPO / "workflow" / "schemas", root / "workflow" / "schemas")
    shutil.copytree(REPO / "recipes", root / "recipes")
    (root / "Snakefile").write_text("# test project\n")
    return root
