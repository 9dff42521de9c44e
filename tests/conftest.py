"""Shared fixtures: a throwaway project (schema + recipes) in tmp_path, so loader and stage tests
never touch the checkout, and a throwaway signing key, so locks and certificates are signed
(and verified) without ever reading the user's own keys."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def session_signing_key(tmp_path_factory: pytest.TempPathFactory):
    """A fresh ed25519 key for the whole session, made the default signing key (and so the
    default trusted key) through ``$OPENRECIPE_SIGNING_KEY``; CLI subprocesses inherit it."""
    from openrecipe.lineage.attestation import KEY_ENV, generate_key

    key = generate_key(tmp_path_factory.mktemp("keys") / "signing_key", "openrecipe-tests")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, str(key.path))
        yield key


@pytest.fixture
def signing_key(session_signing_key):
    """The session's signing key (``SigningKey``)."""
    return session_signing_key


@pytest.fixture
def trust(session_signing_key):
    """Trust in the session's signing key only."""
    from openrecipe.lineage.attestation import Trust

    return Trust((session_signing_key.public,))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A minimal project: the real schema and recipes, an empty Snakefile."""
    root = tmp_path / "project"
    (root / "workflow").mkdir(parents=True)
    shutil.copytree(REPO / "workflow" / "schemas", root / "workflow" / "schemas")
    shutil.copytree(REPO / "recipes", root / "recipes")
    (root / "Snakefile").write_text("# test project\n")
    return root
