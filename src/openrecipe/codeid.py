"""Code identity recorded in every manifest: git commit, hash of uncommitted changes to the
code that runs (src/, workflow/, Snakefile), and versions of the packages that shape numbers."""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
from functools import cache
from pathlib import Path

KEY_PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "trl",
    "lm_eval",
    "numpy",
    "snakemake",
    "dvc",
)
CODE_PATHS = ("src", "workflow", "Snakefile", "pyproject.toml", "requirements.txt")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode("utf-8", "replace").strip()


@cache
def code_identity() -> dict[str, object]:
    source_root = Path(__file__).resolve().parents[2]
    commit = _git(source_root, "rev-parse", "HEAD")
    diff = _git(source_root, "diff", "HEAD", "--", *CODE_PATHS) if commit else None
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git_commit": commit,
        "uncommitted_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
        "packages": versions,
    }
