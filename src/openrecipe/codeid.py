"""Code identity: which code made a stage's outputs, so that code is an input like any other.

Two layers, recorded side by side in every manifest:

* ``code_identity()``: the git commit, a hash of uncommitted changes and the versions of the
  key packages. It says *where* the code came from, but it changes on every commit, so it
  cannot decide what reruns (a docstring edit would re-address every stage).
* ``stage_code_identity(stage)``: what decides reruns. The hash of every openrecipe module in
  the stage's static import closure, each normalised to its AST with docstrings removed (so
  comments, docstrings and formatting do not count), the package data files beside those
  modules, the versions of the third-party distributions those modules import, and the Python
  version. Snakemake receives its digest as a rule param, so editing the body of a function a
  stage can run reruns that stage and its descendants, and nothing else.

The closure is computed statically (``ast``), imports inside functions included (this project
imports heavy modules lazily) and ``if TYPE_CHECKING:`` blocks excluded (they never run). A
hand-written walker rather than ``modulefinder``: modulefinder executes no code either, but it
follows every third-party import into site-packages (seconds per stage) and offers no hook
for the docstring normalisation; ours reads about 100 small files in tens of milliseconds.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import platform
import subprocess
import sys
from functools import cache
from pathlib import Path

from openrecipe.hashing import hash_obj

PACKAGE = "openrecipe"
PACKAGE_DIR = Path(__file__).resolve().parent

KEY_PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "lm_eval",
    "numpy",
    "snakemake",
    "dvc",
)
CODE_PATHS = ("src", "workflow", "Snakefile", "pyproject.toml", "requirements.txt")

# Modules every stage runs through, whatever its own module imports: the stage contract
# (``run_stage`` and everything it imports: manifest, hashing, recipe, ...). The CLI module
# only parses arguments and dispatches, so it is left out: editing a subcommand's help text
# must not rerun the world.
CONTRACT_MODULES = ("openrecipe.stage",)

# Modules that wire stages rather than compute them: the registry (what reads a stage's entry,
# its view, is hashed as the stage's view, its module is the closure's root). Left out, so that
# adding a stage to the registry does not rerun every other stage.
WIRING_MODULES = frozenset({"openrecipe.registry"})

# Distributions whose version cannot shape a stage's numbers (progress bars, type stubs).
NOT_NUMERIC_DISTRIBUTIONS = frozenset({"tqdm", "typing-extensions", "typing_extensions"})


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
    """Where the code came from: commit, uncommitted diff, key package versions."""
    source_root = PACKAGE_DIR.parents[1]
    commit = _git(source_root, "rev-parse", "HEAD")
    diff = _git(source_root, "diff", "HEAD", "--", *CODE_PATHS) if commit else None
    return {
        "git_commit": commit,
        "uncommitted_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
        "packages": {name: distribution_version(name) for name in KEY_PACKAGES},
    }


def uncommitted_code(root: Path | None = None) -> str | None:
    """Why results made now could not be reproduced from a commit (None: they could): no git
    checkout, or changed or untracked files under the code paths of ``root`` (default: the
    checkout this package runs from)."""
    root = root or PACKAGE_DIR.parents[1]
    if _git(root, "rev-parse", "HEAD") is None:
        return f"{root} is not a git checkout with a commit"
    status = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    if status is None:
        return f"git status failed in {root}"
    if status:
        changed = [line.split(maxsplit=1)[-1] for line in status.splitlines()]
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        return f"uncommitted changes in {', '.join(changed[:5])}{more}"
    return None


def distribution_version(name: str) -> str | None:
    return _installed_version(name)


@cache
def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# Modules: where they are, what they import, what they hash to.


def module_path(name: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of an openrecipe module or package, or None if there is none."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    parts = name.split(".")[1:]
    base = package_dir.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    found: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        for child in ast.iter_child_nodes(node):
            if _is_type_checking_block(child):
                stack.extend(child.orelse)  # the else branch does run
            else:
                stack.append(child)
    return found


def _resolve_relative(module: str | None, level: int, importer: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imported_names(source: str, importer: str, is_package: bool) -> tuple[set[str], set[str]]:
    """(openrecipe modules, third-party top-level names) that ``source`` imports at run time."""
    tree = ast.parse(source)
    ours: set[str] = set()
    theirs: set[str] = set()

    def note(name: str) -> None:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            ours.add(name)
        elif name:
            theirs.add(name.split(".")[0])

    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                note(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(node.module, node.level, importer, is_package)
            note(base)
            if base == PACKAGE or base.startswith(PACKAGE + "."):
                # `from openrecipe.data import sources` imports a submodule, not a name.
                for alias in node.names:
                    ours.add(f"{base}.{alias.name}")
    return ours, theirs


def _parents(name: str) -> list[str]:
    """Packages Python imports before ``name`` (their ``__init__`` runs)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@cache
def _module_facts(name: str, package_dir: Path) -> tuple[str, frozenset[str], frozenset[str]]:
    """(normalised hash, openrecipe imports, third-party imports) of one module."""
    path = module_path(name, package_dir)
    if path is None:
        return "", frozenset(), frozenset()
    source = path.read_text(encoding="utf-8")
    ours, theirs = imported_names(source, name, path.name == "__init__.py")
    return normalised_source_hash(source), frozenset(ours), frozenset(theirs)


def normalised_source_hash(source: str) -> str:
    """sha256 of the module's AST without docstrings: comments, docstrings, blank lines and
    formatting do not change it; any change to what runs does."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    dumped = ast.dump(tree, annotate_fields=True, include_attributes=False)
    return hashlib.sha256(dumped.encode("utf-8")).hexdigest()


def import_closure(roots: tuple[str, ...], package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Every openrecipe module the roots can import at run time (parents included), sorted."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name in WIRING_MODULES or module_path(name, package_dir) is None:
            continue
        seen.add(name)
        _, ours, _ = _module_facts(name, package_dir)
        todo.extend(ours)
        todo.extend(_parents(name))
    return sorted(seen)


@cache
def _string_constants(name: str, package_dir: Path) -> frozenset[str]:
    path = module_path(name, package_dir)
    if path is None:
        return frozenset()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return frozenset(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def package_data_files(modules: list[str], package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Files that ship beside the closure's modules and are read rather than imported.

    A file or a non-package directory beside a module counts when that module names it in a
    string literal (``Path(__file__).parent / "tasks"``); a directory counts whole, Python
    files included (lm-eval loads ``tasks/utils.py`` through ``!function``). Attributing data
    to the module that names it keeps a prompt edit from rerunning stages that merely import
    a sibling module."""
    files = set()
    for name in modules:
        path = module_path(name, package_dir)
        if path is None:
            continue
        named = _string_constants(name, package_dir)
        for entry in path.parent.iterdir():
            if entry.name not in named or entry.name == "__pycache__":
                continue
            if entry.is_file() and entry.suffix not in (".py", ".pyc"):
                files.add(entry)
            elif entry.is_dir() and not (entry / "__init__.py").exists():
                files.update(p for p in entry.rglob("*") if p.is_file() and p.suffix != ".pyc")
    return sorted(files)


@cache
def _distributions_by_module() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def third_party_distributions(modules: list[str], package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Installed distributions the closure imports directly (the stdlib is the Python version)."""
    by_module = _distributions_by_module()
    names: set[str] = set()
    for name in modules:
        _, _, theirs = _module_facts(name, package_dir)
        for top in theirs:
            if top in sys.stdlib_module_names:
                continue
            names.update(d.lower() for d in by_module.get(top, []))
    return sorted(names - NOT_NUMERIC_DISTRIBUTIONS)


def stage_module(stage: str) -> str:
    from openrecipe.registry import STAGE_MODULES

    return STAGE_MODULES[stage]


def clear_caches() -> None:
    """Forget what was read (tests that edit a package copy or fake a version call this)."""
    for cached in (_module_facts, _string_constants, _installed_version, _stage_identity):
        cached.cache_clear()


def stage_code_identity(stage: str, package_dir: Path = PACKAGE_DIR) -> dict[str, object]:
    """The code that decides a stage's outputs, and its digest (``sha256``). Computed once per
    process (the Snakefile asks once per rule: the no-op plan must stay fast)."""
    return dict(_stage_identity(stage, package_dir))


@cache
def _stage_identity(stage: str, package_dir: Path) -> dict[str, object]:
    modules = import_closure((stage_module(stage), *CONTRACT_MODULES), package_dir)
    module_hashes = {name: _module_facts(name, package_dir)[0] for name in modules}
    data = {
        path.relative_to(package_dir).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in package_data_files(modules, package_dir)
    }
    packages = {
        name: distribution_version(name) for name in third_party_distributions(modules, package_dir)
    }
    body = {
        "modules": module_hashes,
        "data_files": data,
        "packages": packages,
        "python": platform.python_version(),
    }
    return {"sha256": hash_obj(body), **body}


def stage_code_digest(stage: str) -> str:
    """What the Snakemake rule passes as its ``code`` param (a rerun trigger)."""
    return str(stage_code_identity(stage)["sha256"])


def changed_parts(recorded: dict, current: dict) -> list[str]:
    """Human-readable differences between two stage code identities, one item each."""
    changes = []
    for key, label in (("modules", "module"), ("data_files", "file"), ("packages", "package")):
        old, new = recorded.get(key, {}), current.get(key, {})
        for name in sorted(set(old) | set(new)):
            if name not in old:
                changes.append(f"{label} {name} added")
            elif name not in new:
                changes.append(f"{label} {name} removed")
            elif old[name] != new[name]:
                if key == "packages":
                    changes.append(f"package {name} {old[name]} -> {new[name]}")
                else:
                    changes.append(f"{label} {name} changed")
    if recorded.get("python") != current.get("python"):
        changes.append(f"python {recorded.get('python')} -> {current.get('python')}")
    return changes
