"""Every pinned requirement is used: imported by our code, or on a short allow-list that says why.

An installed-but-unused package is not harmless: ``torchao`` logged a load failure on every
command (transformers imports it whenever it is installed) and ``trl`` pulled its own pins.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import importlib.util
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("src", "tests", "bench", "workflow")

# Distributions we need but never import, each with the reason. Keep it short: a new entry needs
# a reason a reader can check.
NOT_IMPORTED = {
    # Tools run as commands (the Makefile, the workflow, subprocess calls), not imported.
    "ruff": "CLI: `make lint`",
    # Imported on our behalf: lm_eval.models.huggingface (the HFLM evaluate/hflm.py subclasses)
    # imports it at module load; checked below, so the entry goes stale loudly.
    "accelerate": "imported by lm_eval.models.huggingface",
}


def _requirements() -> list[Requirement]:
    reqs = []
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            reqs.append(Requirement(line))
    return reqs


def _top_level_modules() -> dict[str, set[str]]:
    """canonical distribution name -> the top-level modules it installs."""
    modules: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            modules.setdefault(canonicalize_name(dist), set()).add(module)
    return modules


def _python_imports(text: str) -> set[str]:
    tree = ast.parse(text)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


_IMPORT_LINE = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.MULTILINE)


def _imported_modules(folders: tuple[str, ...] = CODE_DIRS) -> set[str]:
    found: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            found |= _python_imports(path.read_text(encoding="utf-8"))
    # Snakefiles are Python with rule blocks on top: read their import lines.
    for path in (
        [] if folders != CODE_DIRS else [ROOT / "Snakefile", *(ROOT / "workflow").rglob("*.smk")]
    ):
        for match in _IMPORT_LINE.finditer(path.read_text(encoding="utf-8")):
            found.add((match.group(1) or match.group(2)).split(".")[0])
    return found


def test_every_requirement_is_pinned_exactly() -> None:
    for req in _requirements():
        pins = list(req.specifier)
        assert len(pins) == 1 and pins[0].operator == "==", f"{req}: pin it with =="


def test_every_requirement_is_imported_or_allow_listed() -> None:
    modules = _top_level_modules()
    imported = _imported_modules()
    unused = []
    for req in _requirements():
        name = canonicalize_name(req.name)
        provides = modules.get(name)
        assert provides, f"{req.name}: not installed (rebuild the venv from requirements.txt)"
        used = provides & imported
        if name in NOT_IMPORTED:
            assert not used, f"{req.name}: imported as {sorted(used)}; drop its allow-list entry"
        elif not used:
            unused.append(f"{req.name} (provides {', '.join(sorted(provides))})")
    assert not unused, f"required but never imported: {unused}"


def test_allow_list_names_only_requirements() -> None:
    names = {canonicalize_name(r.name) for r in _requirements()}
    assert set(NOT_IMPORTED) <= names, set(NOT_IMPORTED) - names


def test_accelerate_is_still_needed_by_lm_eval() -> None:
    """The reason for pinning ``accelerate`` holds: the HFLM module we subclass imports it."""
    spec = importlib.util.find_spec("lm_eval.models.huggingface")
    assert spec is not None and spec.origin is not None
    assert "accelerate" in _python_imports(Path(spec.origin).read_text(encoding="utf-8"))


def test_dropped_packages_stay_dropped() -> None:
    """``trl`` (never imported; sft.py says why a plain loop) and ``torchao`` (a test-only
    cross-check, now the ``crosscheck`` extra) are not base requirements."""
    names = {canonicalize_name(r.name) for r in _requirements()}
    assert not names & {"trl", "torchao"}


def test_pyproject_declares_every_distribution_src_imports() -> None:
    """``pip install -e .`` alone must bring what the package imports (floors in pyproject,
    exact pins in requirements.txt), and pyproject names nothing requirements.txt lacks."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {canonicalize_name(Requirement(d).name) for d in project["dependencies"]}
    pinned = {canonicalize_name(r.name) for r in _requirements()}
    assert declared <= pinned, declared - pinned
    modules = _top_level_modules()
    imported = _imported_modules(("src",))
    needed = {name for name in pinned if modules.get(name, set()) & imported}
    assert needed <= declared, f"imported by src/ but not in pyproject: {needed - declared}"


def test_megatron_test_venv_installs_the_megatron_extra() -> None:
    """``make test`` runs the Megatron tests against the megatron-core the ``megatron`` extra pins
    (a cluster installs that extra); the two pins cannot drift apart."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (extra,) = project["optional-dependencies"]["megatron"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    installs = re.findall(r"\$\(MEGATRON_VENV\)/bin/pip install .*", makefile)
    assert installs and all(line.split()[-1] == extra for line in installs), (installs, extra)
