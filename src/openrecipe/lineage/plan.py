"""Ask Snakemake what a recipe would run, without writing anything in the project.

``plan`` runs ``snakemake -n`` in a *scratch project* under the system temporary directory: a
copy of the Snakefile, ``workflow/`` and ``recipes/`` (plus the file ``rerun`` is about to
write, which exists only there), symlinks to the project's ``data/``, ``results/`` and every
``runs/<name>`` entry, and a copy of Snakemake's metadata (``.snakemake/metadata`` and
``incomplete``, which the params/input/code rerun triggers read). Snakemake therefore plans on
exactly the project's outputs, mtimes and metadata, while its own dry-run files (iocache, lock)
land in the scratch copy. The workflow itself writes nothing at parse time (the resolved recipe
is written in an ``onstart`` handler, which Snakemake skips in a dry run), so a plan leaves the
project byte-for-byte and mtime-for-mtime as it was.

The plan is parsed into jobs (rule, output dir, ``--input`` names and paths, expected view
hash) from the shell commands Snakemake prints (the local profile sets ``printshellcmds``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from openrecipe.errors import OpenRecipeError

PROFILE = "workflow/profiles/local"
_COPIED = ("Snakefile", "workflow", "recipes")
_METADATA = ("metadata", "incomplete")


@dataclass(frozen=True)
class PlannedJob:
    """One job of a dry run, as its stage command line states it."""

    rule: str
    out: str | None  # the stage directory (--out), project-relative
    inputs: dict[str, str] = field(default_factory=dict)  # --input name -> dir
    config_hash: str | None = None  # --expect-config-hash
    part: str | None = None  # --part


def snakemake_command(configfiles: list[str], *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        PROFILE,
        *extra,
        "--configfile",
        *configfiles,
    ]


def run_snakemake(cwd: Path, configfiles: list[str], *extra: str) -> tuple[int, str]:
    done = subprocess.run(
        snakemake_command(configfiles, *extra), cwd=cwd, capture_output=True, text=True
    )
    return done.returncode, done.stdout + done.stderr


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table as {rule: count} (without 'all' and 'total')."""
    counts: dict[str, int] = {}
    if "Job stats:" not in output:
        return counts
    for line in output.split("Job stats:", 1)[1].splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        if match.group(1) not in ("all", "total"):
            counts[match.group(1)] = int(match.group(2))
    return counts


def _job_from_command(rule: str, command: str) -> PlannedJob:
    words = shlex.split(command)
    if ">" in words:
        words = words[: words.index(">")]
    values: dict[str, str] = {}
    inputs: dict[str, str] = {}
    for flag, value in zip(words, words[1:], strict=False):
        if flag == "--input":
            name, _, path = value.partition("=")
            inputs[name] = path
        elif flag in ("--out", "--expect-config-hash", "--part"):
            values[flag] = value
    return PlannedJob(
        rule,
        values.get("--out"),
        inputs,
        values.get("--expect-config-hash"),
        values.get("--part"),
    )


def planned_jobs(output: str) -> list[PlannedJob]:
    """The stage jobs of a dry run's output (jobs without a shell command are skipped)."""
    jobs, rule = [], None
    for line in output.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line)
        if match:
            rule = match.group(1)
        elif line.startswith("Shell command: ") and rule is not None:
            jobs.append(_job_from_command(rule, line.removeprefix("Shell command: ")))
            rule = None
    return jobs


@dataclass(frozen=True)
class Plan:
    output: str
    counts: dict[str, int]
    jobs: list[PlannedJob]


@contextmanager
def scratch_project(
    project: Path, files: dict[str, str], run_links: dict[str, dict[str, Path]] | None = None
) -> Iterator[Path]:
    """A throwaway project that sees the real one's outputs (see the module docstring).

    ``files``: project-relative path -> text, written only in the scratch copy.
    ``run_links``: ``{run name: {stage rel path: real stage dir}}`` builds ``runs/<name>`` as a
    real directory of links instead of linking the project's own ``runs/<name>`` (the plan of a
    variant whose shared stages are not linked into the project yet)."""
    run_links = run_links or {}
    with tempfile.TemporaryDirectory(prefix="openrecipe-plan-") as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        for name in _COPIED:
            source = project / name
            if source.is_dir():
                shutil.copytree(source, root / name, symlinks=True)
            elif source.is_file():
                shutil.copy2(source, root / name)
        for name in ("data", "results"):
            if (project / name).exists():
                (root / name).symlink_to(project / name)
        (root / "runs").mkdir()
        if (project / "runs").is_dir():
            for entry in sorted((project / "runs").iterdir()):
                if entry.name not in run_links:
                    (root / "runs" / entry.name).symlink_to(entry)
        for run, stages in run_links.items():
            _overlay(root / "runs" / run, project / "runs" / run, stages)
        for name in _METADATA:
            source = project / ".snakemake" / name
            if source.is_dir():
                shutil.copytree(source, root / ".snakemake" / name)
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        yield root


def _overlay(dest: Path, real: Path, links: dict[str, Path]) -> None:
    """``dest``: the real run directory seen through symlinks, except that each ``links`` path
    (relative, maybe nested) points at its given stage dir instead."""
    dirs = {
        Path(rel).parents[i].as_posix() for rel in links for i in range(len(Path(rel).parts) - 1)
    }
    dirs.add(".")
    for rel_dir in sorted(dirs):
        (dest / rel_dir).mkdir(parents=True, exist_ok=True)
        if not (real / rel_dir).is_dir():
            continue
        for entry in sorted((real / rel_dir).iterdir()):
            rel = (Path(rel_dir) / entry.name).as_posix()
            if rel not in links and rel not in dirs:
                (dest / rel).symlink_to(entry)
    for rel, target in sorted(links.items()):
        (dest / rel).symlink_to(target)


def dry_run(root: Path, configfiles: list[str]) -> Plan:
    """``snakemake -n`` in ``root`` (a scratch project); raises when Snakemake fails."""
    code, output = run_snakemake(root, configfiles, "-n")
    if code != 0:
        tail = output[-4000:].replace(str(root), "<project>")
        raise OpenRecipeError(f"snakemake dry run failed:\n{tail}")
    return Plan(output, job_counts(output), planned_jobs(output))


def link_or_copy(source: Path, dest: Path) -> None:
    """Hardlink ``source`` to ``dest``; copy (keeping mtime) where a link cannot be made."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)
