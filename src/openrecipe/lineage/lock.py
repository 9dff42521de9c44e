"""Release lock: ``results/<recipe>/release.lock.json`` pins every artifact hash of a finished
run, and ``reproduce --check`` compares a run against it.

Two levels of agreement, said explicitly:

- ``exact``: every artifact hash equals the lock's (same code, same hardware class; the project
  makes two runs on one machine byte-identical);
- ``envelope``: some hashes differ (other hardware, other kernels) but every score lies within
  the lock's envelope of the locked value. The envelope is recorded in the lock, per metric:
  ``max(2 x stderr, ENVELOPE_RELATIVE x |value|, ENVELOPE_ABSOLUTE)``; two standard errors is
  the usual bound for "the same model, measured again"; the relative floor covers metrics
  without a standard error (bits per byte, losses);
- otherwise ``outside``, naming each metric out of bounds.

The lock is written beside the report (``verify`` treats it as an audit file, not an output) and
is itself hashed (``lock_sha256``). Hashes alone cannot stop a forger who edits a file and
recomputes them, so the lock is signed: ``release.lock.json`` is a DSSE envelope holding an
in-toto Statement with the SLSA provenance predicate (``lineage/predicates.py``), signed with the
releaser's ed25519 key. ``reproduce --check`` refuses a lock that is unsigned, badly signed or
signed by an untrusted key, says who signed it, and refuses released files
(``results/<recipe>/...``) that differ from the signed digests while every stage they were made
from is unchanged: the report is a pure function of those stages, so such a difference is an
edit after signing (or a report remade by other code), never a reproduction. A forger who also
edits and reseals upstream stages makes the run differ from the lock, and is judged like any
rerun: at best ``envelope``, which states that the files are not the signed ones and bounds how
far a score can be moved. Nothing short of a signature on the new run can tell such a rerun from
a genuine one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openrecipe.errors import AttestationError, LineageError
from openrecipe.hashing import hash_obj
from openrecipe.lineage.attestation import SigningKey, Trust, open_attestation, sign, write_envelope
from openrecipe.lineage.code_drift import made_by_other_code
from openrecipe.lineage.diff import scores
from openrecipe.lineage.predicates import SLSA_PROVENANCE, lock_from_statement, lock_statement
from openrecipe.lineage.verify import stage_dirs, verify_roots
from openrecipe.lineage.walk import closure
from openrecipe.manifest import read_manifest
from openrecipe.paths import find_project_root

LOCK_NAME = "release.lock.json"
ENVELOPE_RELATIVE = 0.05
ENVELOPE_ABSOLUTE = 1e-6


def artifact_hashes(project: Path, recipe: str) -> dict[str, str]:
    """{project-relative path: sha256} of every output of the run, its results and the raw
    sources it consumed, taken from manifests (``verify`` checks the files against them)."""
    run, results = project / "runs" / recipe, project / "results" / recipe
    dirs = [*stage_dirs(run), *([results] if (results / "manifest.json").is_file() else [])]
    hashes = {}
    # every upstream is opened by the manifest hash its consumer recorded (walk.closure)
    for stage_dir, manifest in closure(project, dirs).items():
        rel_dir = _project_relative(stage_dir, project)
        hashes[f"{rel_dir}/manifest.json#manifest_sha256"] = manifest["manifest_sha256"]
        for rel, meta in manifest["outputs"].items():
            hashes[f"{rel_dir}/{rel}"] = meta["sha256"]
    return dict(sorted(hashes.items()))


def _project_relative(path: Path, project: Path) -> str:
    path, project = path.resolve(), project.resolve()
    if path != project and project not in path.parents:
        raise LineageError(f"{path}: a stage of the run lies outside the project {project}")
    return path.relative_to(project).as_posix()


def _envelope(metrics: dict[str, float]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if key.endswith("_stderr") or key.endswith(".n"):
            continue
        stderr = metrics.get(f"{key}_stderr", 0.0)
        out[key] = max(2 * stderr, ENVELOPE_RELATIVE * abs(value), ENVELOPE_ABSOLUTE)
    return out


def _check_run(project: Path, recipe: str) -> None:
    roots = [project / "runs" / recipe, project / "results" / recipe]
    problems = verify_roots([root for root in roots if root.exists()] or roots[:1]).problems
    if problems:
        raise LineageError(f"run {recipe} fails verify:\n  " + "\n  ".join(problems))


def _refuse_uncommitted(project: Path, recipe: str) -> None:
    """A lock vouches that a clean checkout of a commit remakes these files: refuse results
    the report stage marked as made from uncommitted code."""
    path = project / "results" / recipe / "metrics.json"
    try:
        marked = json.loads(path.read_text(encoding="utf-8")).get("reproducibility") or {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return  # _check_run / scores() report a missing or unreadable metrics.json
    if marked.get("reproducible") is False:
        raise LineageError(
            f"{path}: made from uncommitted code ({marked.get('reason')}); commit the code "
            "and rerun before locking, or pass --allow-uncommitted for a lock that is not a release"
        )


def make_lock(project: Path, recipe: str, *, allow_uncommitted: bool = False) -> dict[str, Any]:
    _check_run(project, recipe)
    if not allow_uncommitted:
        _refuse_uncommitted(project, recipe)
    metrics = scores(project / "runs" / recipe)
    if not metrics:
        raise LineageError(f"results/{recipe}/metrics.json: missing; is the run finished?")
    body = {
        "recipe": recipe,
        "artifacts": artifact_hashes(project, recipe),
        "metrics": metrics,
        "envelope": _envelope(metrics),
    }
    return {**body, "lock_sha256": hash_obj(body)}


def write_lock(
    project: Path, recipe: str, key: SigningKey, *, allow_uncommitted: bool = False
) -> Path:
    """Sign the lock of a finished run with ``key`` and write it (atomically)."""
    lock = make_lock(project, recipe, allow_uncommitted=allow_uncommitted)
    path = project / "results" / recipe / LOCK_NAME
    write_envelope(path, sign(lock_statement(project, lock), key))
    return path


def _released_files_altered(
    project: Path, recipe: str, locked: dict[str, str], differing: list[str]
) -> list[str]:
    """Released files that differ from the lock although the report stage's recorded inputs
    are exactly the locked ones (so a rerun would have rewritten them byte for byte)."""
    released = [k for k in differing if k.startswith(f"results/{recipe}/") and "#" not in k]
    results = project / "results" / recipe
    if not released or not (results / "manifest.json").is_file():
        return []
    for item in read_manifest(results).get("inputs", []):
        if "stage" not in item:
            continue
        try:
            rel = (project / item["path"]).resolve().relative_to(project).as_posix()
        except ValueError:  # an input outside the project is not in the lock: not provable
            return []
        if locked.get(f"{rel}/manifest.json#manifest_sha256") != item["manifest_sha256"]:
            return []  # the report was remade from other inputs: a rerun, judged by envelope
    return released


def check_lock(lock_path: Path, trust: Trust) -> dict[str, Any]:
    """Compare the current ``runs/<recipe>`` (+ results, raw sources) against a signed lock."""
    verified = open_attestation(lock_path, trust, SLSA_PROVENANCE)
    lock = lock_from_statement(verified, lock_path)
    body = {k: v for k, v in lock.items() if k != "lock_sha256"}
    if hash_obj(body) != lock.get("lock_sha256"):
        raise LineageError(f"{lock_path}: lock_sha256 does not match its content; it was altered")
    project = find_project_root(lock_path.resolve().parent)
    recipe = lock["recipe"]
    _check_run(project, recipe)
    current = artifact_hashes(project, recipe)
    locked = lock["artifacts"]
    differing = sorted(k for k in set(locked) | set(current) if locked.get(k) != current.get(k))
    altered = _released_files_altered(project, recipe, locked, differing)
    if altered:
        raise AttestationError(
            f"{lock_path}: {', '.join(altered)} differ from the digests signed by "
            f"{verified.signer.describe()}, although every stage the report was made from is "
            "unchanged: the released files were edited after signing (or remade by other "
            "report code); they are not the signed release"
        )
    metrics = scores(project / "runs" / recipe)
    outside = []
    for key, tolerance in sorted(lock["envelope"].items()):
        value = metrics.get(key)
        if value is None or abs(value - lock["metrics"][key]) > tolerance:
            outside.append(
                {
                    "metric": key,
                    "locked": lock["metrics"][key],
                    "now": value,
                    "tolerance": tolerance,
                }
            )
    verdict = "exact" if not differing else ("envelope" if not outside else "outside")
    roots = [project / "runs" / recipe, project / "results" / recipe]
    return {
        "made_by_other_code": made_by_other_code(project, [r for r in roots if r.exists()]),
        "recipe": recipe,
        "signed_by": verified.signer.describe(),
        "verdict": verdict,
        "artifacts_checked": len(locked),
        "artifacts_differing": differing,
        "metrics_outside_envelope": outside,
    }


def format_check(result: dict[str, Any]) -> str:
    lines = [
        f"reproduce {result['recipe']}: {result['verdict'].upper()}"
        f" ({result['artifacts_checked']} locked artifacts, "
        f"{len(result['artifacts_differing'])} differ)"
    ]
    lines.append(f"  lock signed by {result['signed_by']}")
    if result["verdict"] == "exact":
        lines.append("  every artifact hash matches the signed lock: these are the signed files")
    elif result["verdict"] == "envelope":
        lines.append(
            "  hashes differ (these are not the signed files), every metric is within the "
            "lock's envelope"
        )
    lines += [f"  differs: {path}" for path in result["artifacts_differing"]]
    # Reported, not failed: the files may match byte for byte yet no longer be what this
    # checkout computes (code edited or pulled since the lock, or packages upgraded).
    lines += [f"  note: {line}" for line in result.get("made_by_other_code", [])]
    lines += [
        f"  outside envelope: {m['metric']} locked {m['locked']} now {m['now']} (±{m['tolerance']:g})"
        for m in result["metrics_outside_envelope"]
    ]
    return "\n".join(lines)
