"""Version a finished run with DVC, push it to the project's remote, and pull it back.

Where the records live, and why:
- ``runs/<name>.dvc`` records one run (one hash for the whole directory). ``runs/.gitignore``
  ignores the run *directories* (``/*/``) but not ``runs/`` itself: DVC's repository walk skips
  every directory that git ignores, so a root ``/runs/*`` pattern hid the record from a plain
  ``dvc pull`` in a fresh clone.
- ``data/raw/<source>.dvc`` pins one raw source each (``data/raw/.gitignore`` likewise), so a
  recipe pulls exactly the sources it names and ``dvc status`` of those pins is clean after a run
  that acquired only them (one ``data.dvc`` over all sources read "changed" after any partial
  acquisition).

``push_run`` pushes the run together with the raw sources its manifests name, so a fresh clone
can restore and verify the run from the remote alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from openrecipe.errors import OpenRecipeError
from openrecipe.lineage.verify import verify_tree
from openrecipe.manifest import MANIFEST_NAME

RAW = Path("data") / "raw"


def _dvc() -> str:
    candidate = Path(sys.executable).with_name("dvc")
    return str(candidate) if candidate.exists() else (shutil.which("dvc") or "dvc")


def run_dvc(project: Path, *args: str) -> str:
    """Run the DVC CLI in ``project``; a failure is an error carrying DVC's own message."""
    done = subprocess.run([_dvc(), *args], cwd=project, capture_output=True, text=True)
    if done.returncode != 0:
        raise OpenRecipeError(f"dvc {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def raw_source_dirs(run_dir: Path) -> list[str]:
    """The raw source directories (``data/raw/<source>``, project-relative) that the stage
    manifests under ``run_dir`` name as inputs: what a restored run needs to verify."""
    found: set[str] = set()
    for manifest in sorted(run_dir.rglob(MANIFEST_NAME)):
        try:
            inputs = json.loads(manifest.read_text(encoding="utf-8")).get("inputs", [])
        except (OSError, ValueError) as exc:
            raise OpenRecipeError(f"{manifest}: unreadable manifest ({exc})") from exc
        for entry in inputs:
            path = Path(str(entry.get("path", "")))
            if path.parent == RAW and path.name not in ("", ".", ".."):
                found.add(path.as_posix())
    return sorted(found)


def pin_path(output: str) -> str:
    """The .dvc file DVC writes for ``output`` (``runs/tiny`` -> ``runs/tiny.dvc``)."""
    return f"{output}.dvc"


def recipe_targets(run_name: str, sources: list[str]) -> list[str]:
    """The .dvc files a recipe's run needs: the run's record and one pin per raw source."""
    return [pin_path(f"runs/{run_name}"), *(pin_path((RAW / s).as_posix()) for s in sources)]


def push_run(run_dir: Path, remote: str | None = None) -> Path:
    """Verify ``run_dir``, then ``dvc add`` it and its raw sources and ``dvc push`` them all."""
    problems, _ = verify_tree(run_dir)
    if problems:
        raise OpenRecipeError(
            f"push {run_dir}: refusing to push a run that fails verify:\n  " + "\n  ".join(problems)
        )
    run_dir = run_dir.resolve()
    cwd = run_dir.parents[1]
    outputs = [run_dir.relative_to(cwd).as_posix(), *raw_source_dirs(run_dir)]
    missing = [out for out in outputs if not (cwd / out).is_dir()]
    if missing:
        raise OpenRecipeError(f"push {run_dir}: raw source(s) not in the workspace: {missing}")
    print(run_dvc(cwd, "add", *outputs).strip())
    pins = [pin_path(out) for out in outputs]
    print(run_dvc(cwd, "push", *pins, *(["-r", remote] if remote else [])).strip())
    return run_dir.with_suffix(".dvc")
