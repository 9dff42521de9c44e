"""``openrecipe verify <dir>``: rehash every stage directory below ``dir``, and every stage
upstream of them, against its manifest.

Reports, one line each and naming the file: an altered, missing or unexpected file; a manifest
whose own hash no longer matches its content; a stage whose input is now another stage's output
(the upstream manifest hash differs from the one recorded, ``walk.open_upstream``); and a stage
directory without its manifest, whether another manifest names it as an input (``runs/<r>``'s
stages, or ``results/<r>/manifest.json`` naming them) or it holds files but was never sealed.

The walk covers the whole closure of what the stages consumed: an upstream outside ``dir`` (the
raw sources under ``data/raw/<source>/`` that acquire wrote, shared by every run) is rehashed
too, so a changed ``docs.jsonl`` there is reported when verifying the run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from openrecipe.errors import LineageError, StageInputError
from openrecipe.hashing import hash_obj
from openrecipe.lineage.parallel_hash import FileHasher
from openrecipe.lineage.walk import locate, open_upstream, stage_inputs
from openrecipe.manifest import MANIFEST_NAME, list_output_files, read_manifest
from openrecipe.paths import find_project_root

# Audit records written beside a finished stage's outputs after it ran (``openrecipe lock``):
# not outputs of the stage, so not in its manifest; each carries its own content hash instead.
AUDIT_FILES = {"release.lock.json": "lock_sha256"}


def _audit_file_problems(path: Path) -> list[str]:
    # imported here: verify loads the signing code only when a run holds a lock
    from openrecipe.errors import OpenRecipeError
    from openrecipe.lineage.predicates import lock_in_envelope

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{path}: audit file unreadable ({exc})"]
    # The lock is a signed envelope; verify checks its shape and hash only. The signature is
    # ``reproduce --check``'s to check, against the keys its user trusts.
    try:
        record = lock_in_envelope(record, path)
    except OpenRecipeError as exc:
        return [str(exc)]
    key = AUDIT_FILES[path.name]
    if hash_obj({k: v for k, v in record.items() if k != key}) != record.get(key):
        return [f"{path}: {key} does not match its content; the file was altered"]
    return []


def _listed_outputs(stage_dir: Path) -> dict[str, dict] | None:
    """The manifest's outputs, or None when the manifest cannot be read (reported by the check)."""
    try:
        listed = read_manifest(stage_dir).get("outputs", {})
    except StageInputError:
        return None
    return listed if isinstance(listed, dict) else None


def prefetch_stage_dir(stage_dir: Path, hasher: FileHasher) -> None:
    """Start hashing the outputs ``stage_dir``'s manifest lists (those present), so they are
    hashed on every core while the walk goes on."""
    listed = _listed_outputs(stage_dir) or {}
    hasher.prefetch(p for p in (stage_dir / rel for rel in sorted(listed)) if p.is_file())


def check_stage_dir(stage_dir: Path, hasher: FileHasher | None = None) -> list[str]:
    """Every output the manifest lists, rehashed (``manifest.verify_stage_dir``'s check, its
    messages word for word, hashed on ``hasher``'s threads), then every file the manifest does
    not list: audit files pass after their own hash check, any other is reported by name."""
    if hasher is None:
        with FileHasher() as own:
            return check_stage_dir(stage_dir, own)
    try:
        listed = read_manifest(stage_dir).get("outputs", {})
    except StageInputError as exc:
        return [str(exc)]
    if not isinstance(listed, dict):
        return [f"{stage_dir / MANIFEST_NAME}: outputs is not a mapping of file to sha256"]
    prefetch_stage_dir(stage_dir, hasher)
    problems = []
    for rel, meta in sorted(listed.items()):
        path = stage_dir / rel
        if not path.is_file():
            problems.append(f"{path}: missing (listed in {stage_dir / MANIFEST_NAME})")
            continue
        actual = hasher.sha256(path)
        if actual != meta["sha256"]:
            problems.append(
                f"{path}: sha256 {actual[:12]}… does not match manifest {meta['sha256'][:12]}…"
            )
    for path in list_output_files(stage_dir):
        rel = path.relative_to(stage_dir).as_posix()
        if rel in listed:
            continue
        if rel in AUDIT_FILES:
            problems.extend(_audit_file_problems(path))
        else:
            problems.append(f"{path}: unexpected file (not in {stage_dir / MANIFEST_NAME})")
    return problems


# Directories of a run tree that hold files and are not stages: the Snakemake logs, and
# Megatron-LM's own checkpoint directory (the scale backend writes it, not a stage, so no
# manifest covers it). A run directory itself (it holds the resolved recipe every stage reads,
# and Snakemake's report.html) is not a stage either.
NOT_STAGE_DIRS = frozenset({"logs", "pretrain_megatron"})
RUN_MARKER = "recipe.resolved.yaml"


def stage_dirs(root: Path) -> list[Path]:
    dirs = {
        p.parent
        for p in root.rglob(MANIFEST_NAME)
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    }
    if (root / MANIFEST_NAME).is_file():
        dirs.add(root)
    return sorted(dirs)


def unsealed_dirs(root: Path) -> dict[Path, int]:
    """{directory: number of files} of every directory under ``root`` that holds files but no
    ``manifest.json`` and lies inside no stage directory: a stage whose manifest was deleted,
    or one that never finished (hidden temporaries, ``logs/`` and run directories excepted)."""
    found = {}
    for current, subdirs, files in os.walk(root):
        here = Path(current)
        if (here / MANIFEST_NAME).is_file():
            subdirs[:] = []  # a stage's own files are checked against its manifest
            continue
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d not in NOT_STAGE_DIRS)
        held = [f for f in files if not f.startswith(".") and not f.endswith(".dvc")]
        if here != root and held and RUN_MARKER not in files:
            found[here] = len(held)
    return found


@dataclass
class Verification:
    """What ``verify`` found: problems (one line each), the stage directories checked under the
    roots, and those checked upstream of them outside the roots (raw sources)."""

    problems: list[str]
    checked: int
    upstream: list[Path]


def _results_consumer(root: Path, project: Path) -> Path | None:
    """``results/<r>`` when ``root`` is ``runs/<r>`` and its report stage exists: its manifest
    names the run's final stages (``evaluate/<checkpoint>``), which no stage of the run does."""
    if root.parent != project / "runs":
        return None
    results = project / "results" / root.name
    return results if (results / MANIFEST_NAME).is_file() else None


def verify_roots(roots: list[Path], workers: int | None = None) -> Verification:
    """Verify the stage directories under ``roots`` and the closure of their inputs, hashing
    on ``workers`` threads (every core by default; the report is the same for any number)."""
    roots = [root.resolve() for root in roots]
    problems = [f"{root}: no such directory" for root in roots if not root.exists()]
    roots = [root for root in roots if root.exists()]
    if not roots:
        return Verification(problems, 0, [])
    project = find_project_root(roots[0])
    dirs = sorted({d for root in roots for d in stage_dirs(root)})
    unsealed = {d: n for root in roots for d, n in unsealed_dirs(root).items()}
    for root in roots:
        if not any(d == root or root in d.parents for d in [*dirs, *unsealed]):
            problems.append(f"{root}: no manifest.json found; not a run directory")
    downstream = [_results_consumer(root, project) for root in roots]
    with FileHasher(workers) as hasher:
        consumers = [d for d in downstream if d is not None and d not in dirs]
        walked = _walk(project, dirs, consumers, hasher)
    problems += walked.problems
    for directory in sorted(set(walked.missing) | set(unsealed)):
        why = (
            "named as an input by " + ", ".join(walked.missing[directory])
            if directory in walked.missing
            else f"the directory holds {unsealed[directory]} file(s) but was never sealed"
        )
        state = "" if directory.is_dir() else " (the whole stage directory is gone)"
        problems.append(f"{directory / MANIFEST_NAME}: missing{state}; {why}")
    return Verification(problems, len(dirs), walked.upstream)


@dataclass
class _Walk:
    # a line, or a stage directory whose check (its files hashed meanwhile) goes in its place
    found: list[str | Path]
    upstream: list[Path]  # stage directories reached outside the roots
    missing: dict[Path, list[str]]  # a named directory without manifest -> ["<manifest> (input X)"]

    @property
    def problems(self) -> list[str]:
        return [line for line in self.found if isinstance(line, str)]


def _walk(project: Path, dirs: list[Path], downstream: list[Path], hasher: FileHasher) -> _Walk:
    """Check ``dirs`` and, breadth-first, every upstream stage their inputs name (opened by the
    recorded manifest hash). ``downstream`` manifests (``results/<r>``) are not checked here;
    only the stage directories they name that have no manifest are collected.

    The walk reads manifests only; each stage directory's files are handed to ``hasher`` as it
    is reached and checked once the whole closure is known, in walk order."""
    walk = _Walk([], [], {})
    queue = [(d, True) for d in dirs] + [(d, False) for d in downstream]
    seen = set(dirs)
    while queue:
        stage_dir, check = queue.pop(0)
        if check:
            prefetch_stage_dir(stage_dir, hasher)
            walk.found.append(stage_dir)
        try:
            manifest = read_manifest(stage_dir)
        except Exception:  # an unreadable manifest is already the problem reported
            continue
        for item in stage_inputs(manifest):
            path = item.get("path")
            target = locate(project, path) if isinstance(path, str) else None
            if target is not None and not (target / MANIFEST_NAME).is_file():
                named = f"{stage_dir / MANIFEST_NAME} (input {item.get('name')})"
                walk.missing.setdefault(target, []).append(named)
                continue
            if not check:
                continue
            try:
                found = open_upstream(project, item, stage_dir / MANIFEST_NAME)
            except LineageError as exc:
                walk.found.append(str(exc))
                continue
            if found.dir not in seen:
                seen.add(found.dir)
                walk.upstream.append(found.dir)
                queue.append((found.dir, True))
    walk.found = [
        line
        for item in walk.found
        for line in (check_stage_dir(item, hasher) if isinstance(item, Path) else [item])
    ]
    return walk


def verify_tree(root: Path) -> tuple[list[str], int]:
    """(problems, stage directories checked under ``root``); see ``verify_roots``."""
    result = verify_roots([root])
    return result.problems, result.checked
