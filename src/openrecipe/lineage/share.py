"""Content-sharing of unchanged stages between a run and its named variant.

A variant (``rerun tiny --name tiny-no-austen ...``) gets its own ``runs/<variant>/``. Every stage
the variant's workflow would compute exactly as the original did is not recomputed: its
directory is linked from the original run (files hardlinked, or copied across devices; the
``manifest.json`` copied, so it is byte-identical but its own file, see below). A stage is shared
when, for the job Snakemake plans in the variant:

- the original stage directory verifies (every output matches its manifest);
- its manifest ran with the view hash the variant's job expects (``--expect-config-hash``) and
  the same ``--part``;
- its manifest's stage inputs are the job's ``--input`` names, at the job's paths with the
  variant's run directory read as the original's; and
- every such input is itself shared, or already sits in the variant with the manifest hash the
  original recorded, or (outside the run directory, e.g. ``data/raw/<source>``) still holds
  the manifest hash the original recorded.

So a shared stage's whole upstream closure is identical by content, and what the variant would
have computed is what the original computed (stages are deterministic). Downstream stages of
the variant verify the shared inputs like any other (hash by hash against their manifest).

Snakemake's view of a linked output: it exists and is not older than its inputs (the original's
mtimes), and it has no metadata record under the variant's path, which Snakemake treats as "no
reason to rerun", not as a change. ``record_metadata`` then runs ``snakemake --touch`` on the
shared outputs so each gets a record of the variant's own params (its resolved recipe path
included): a later edit of the variant reruns them like any stage. Touch sets mtimes, which is
why each variant's ``manifest.json`` is a copy, not a link to the original's inode.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.errors import LineageError, OpenRecipeError, StageInputError
from openrecipe.lineage.plan import PlannedJob, link_or_copy, run_snakemake
from openrecipe.manifest import MANIFEST_NAME, RUN_INFO_NAME, read_manifest, verify_stage_dir


@dataclass(frozen=True)
class Shared:
    """A stage of the variant taken from the original: ``runs/<variant>/<rel>`` <- ``source``."""

    rel: str
    source: Path
    job: PlannedJob
    stage_inputs: dict[str, dict[str, Any]]  # name -> the original manifest's input record


def _manifest_or_none(stage_dir: Path) -> dict[str, Any] | None:
    try:
        return read_manifest(stage_dir)
    except StageInputError:
        return None


def _candidate(project: Path, original: str, variant: str, job: PlannedJob) -> Shared | None:
    """The original's stage for ``job`` if it ran with the same view, part and inputs."""
    prefix = f"runs/{variant}/"
    if job.out is None or not job.out.startswith(prefix):
        return None
    rel = job.out.removeprefix(prefix)
    source = project / "runs" / original / rel
    manifest = _manifest_or_none(source)
    if manifest is None or manifest.get("config_hash") != job.config_hash:
        return None
    if manifest.get("part") != job.part:
        return None
    recorded = {i["name"]: i for i in manifest.get("inputs", []) if "manifest_sha256" in i}
    if set(recorded) != set(job.inputs):
        return None
    for name, path in job.inputs.items():
        if path.startswith(prefix):
            path = f"runs/{original}/" + path.removeprefix(prefix)
        if recorded[name].get("path") != path:
            return None
    if verify_stage_dir(source):
        return None
    return Shared(rel, source, job, recorded)


def _input_holds(
    project: Path, variant: str, path: str, record: dict[str, Any], shared: set[str]
) -> bool:
    """Whether one input of a shared stage is the same bytes the original stage read."""
    if path.startswith(f"runs/{variant}/") and path in shared:
        return True
    current = _manifest_or_none(project / path)
    return current is not None and current["manifest_sha256"] == record["manifest_sha256"]


def choose_shared(
    project: Path, original: str, variant: str, jobs: list[PlannedJob]
) -> list[Shared]:
    """The variant's planned stages that can be taken from the original (module docstring)."""
    candidates = {}
    for job in jobs:
        found = _candidate(project, original, variant, job)
        if found is not None:
            candidates[str(job.out)] = found
    changed = True
    while changed:  # drop candidates with an input that is neither shared nor identical
        changed = False
        for out, item in list(candidates.items()):
            if not all(
                _input_holds(project, variant, path, item.stage_inputs[name], set(candidates))
                for name, path in item.job.inputs.items()
            ):
                del candidates[out]
                changed = True
    return [candidates[out] for out in sorted(candidates)]


def link_stage(source: Path, dest: Path) -> None:
    """Materialise ``dest`` as a content-identical copy of ``source`` (atomically: built under
    a temporary name, then renamed into place)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for path in sorted(source.rglob("*")):
        target = tmp / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.name in (MANIFEST_NAME, RUN_INFO_NAME) and path.parent == source:
            shutil.copy2(path, target)  # its own inode: Snakemake touches it (docstring)
        else:
            link_or_copy(path, target)
    tmp.mkdir(parents=True, exist_ok=True)
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    if read_manifest(dest)["manifest_sha256"] != read_manifest(source)["manifest_sha256"]:
        raise LineageError(f"{dest}: linked manifest differs from {source}")


def link_shared(project: Path, variant: str, shared: list[Shared]) -> None:
    for item in shared:
        link_stage(item.source, project / "runs" / variant / item.rel)


def record_metadata(project: Path, configfiles: list[str], shared: list[Shared]) -> None:
    """Give the linked outputs Snakemake metadata of the variant's own (module docstring)."""
    if not shared:
        return
    targets = [f"{item.job.out}/{MANIFEST_NAME}" for item in shared]
    code, output = run_snakemake(project, configfiles, "--touch", "--force", *targets)
    if code != 0:
        raise OpenRecipeError(f"snakemake --touch of the shared stages failed:\n{output[-4000:]}")
