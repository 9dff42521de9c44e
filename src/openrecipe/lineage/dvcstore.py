"""Version a finished run with DVC and push it to the project's remote.

``dvc add runs/<name>`` writes ``runs/<name>.dvc`` (the record: one hash for the whole run,
committable since .gitignore lets ``runs/*.dvc`` through) and ``dvc push`` sends the content to
the default remote (``.dvc/config``; a local directory unless you configure another).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from openrecipe.errors import OpenRecipeError
from openrecipe.lineage.verify import verify_tree


def _dvc() -> str:
    candidate = Path(sys.executable).with_name("dvc")
    return str(candidate) if candidate.exists() else (shutil.which("dvc") or "dvc")


def push_run(run_dir: Path, remote: str | None = None) -> Path:
    problems, _ = verify_tree(run_dir)
    if problems:
        raise OpenRecipeError(
            f"push {run_dir}: refusing to push a run that fails verify:\n  " + "\n  ".join(problems)
        )
    run_dir = run_dir.resolve()
    cwd = run_dir.parents[1]
    rel = run_dir.relative_to(cwd).as_posix()
    for args in (["add", rel], ["push", f"{rel}.dvc", *(["-r", remote] if remote else [])]):
        done = subprocess.run([_dvc(), *args], cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0:
            raise OpenRecipeError(f"dvc {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        print(done.stdout.strip())
    return run_dir.with_suffix(".dvc")
