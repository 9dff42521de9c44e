"""What a release lock and an absence certificate attest, as in-toto Statements.

- A release lock is SLSA provenance v1 (``https://slsa.dev/provenance/v1``). Its subjects are
  the files the run produced (``runs/<recipe>/...`` and the released ``results/<recipe>/...``)
  with their sha256; ``buildDefinition.resolvedDependencies`` are the raw sources it consumed
  (``data/raw/<source>/...``), the files of an imported release (``hf://<repo>@<revision>/<file>``,
  the ``import`` stage's pin, with the Hub URL they resolve to) and the code commits the stages
  ran at;
  ``buildDefinition.externalParameters`` is the recipe. The lock as ``reproduce --check`` reads
  it (artifact hashes including each manifest's ``manifest_sha256``, metrics, envelope,
  ``lock_sha256``) rides along as the extension field ``openrecipeLock`` (in-toto's parsing
  rules let producers extend any object; other consumers ignore it).
- An absence certificate uses our own predicate type, ``ABSENCE_PREDICATE``: the predicate is
  the certificate itself, unchanged; the subjects are the checkpoint's manifest and outputs,
  i.e. the model the claim is about.

Builders here only read manifests that the lock and certify code already verified; the
``*_from_statement`` readers take a signature-verified Statement and check that its subjects
agree with the content it carries, so a consumer that checks only subjects and one that reads
the predicate see the same claim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openrecipe import __version__
from openrecipe.errors import AttestationError, StageInputError
from openrecipe.hashing import sha256_file
from openrecipe.lineage.attestation import (
    Verified,
    statement,
    statement_unverified,
    subject_digests,
)
from openrecipe.manifest import MANIFEST_NAME, RUN_INFO_NAME, read_manifest

SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
ABSENCE_PREDICATE = "https://openrecipe.dev/attestation/absence/v1"
BUILD_TYPE = "https://openrecipe.dev/buildtypes/recipe-run/v1"
BUILDER_ID = "https://openrecipe.dev/builders/local/v1"
LOCK_FIELD = "openrecipeLock"
MANIFEST_KEY = "/manifest.json#manifest_sha256"  # lock artifact keys of manifest content hashes
HF_PREFIX = "hf://"  # resolvedDependencies names of an imported release's files


# --------------------------------------------------------------------------------------------
# Release lock


def _split_artifacts(lock: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(produced files, consumed raw files) of a lock; manifest content hashes are neither
    (they are not digests of a file's bytes) and stay in the lock field."""
    recipe = lock["recipe"]
    produced_roots = (f"runs/{recipe}/", f"results/{recipe}/")
    produced, consumed = {}, {}
    for name, sha in lock["artifacts"].items():
        if name.endswith(MANIFEST_KEY):
            continue
        (produced if name.startswith(produced_roots) else consumed)[name] = sha
    return produced, consumed


def _code_dependencies(project: Path, lock: dict[str, Any]) -> list[dict[str, Any]]:
    """The git commits (and uncommitted-diff hashes) the locked stages ran at, from their
    ``run_info.json`` (the manifest addresses the code by content, not by commit): a run made
    from a dirty tree says so in its signed provenance."""
    seen = set()
    for name in lock["artifacts"]:
        if name.endswith(MANIFEST_KEY):
            info = project / name.removesuffix(MANIFEST_KEY) / RUN_INFO_NAME
            try:
                code = json.loads(info.read_text(encoding="utf-8")).get("git") or {}
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue  # volatile record absent (a pulled run): nothing to attest
            if code.get("git_commit"):
                seen.add((code["git_commit"], code.get("uncommitted_diff_sha256")))
    deps = []
    for commit, diff in sorted(seen, key=lambda item: (item[0], item[1] or "")):
        dep: dict[str, Any] = {"name": "openrecipe source", "digest": {"gitCommit": commit}}
        if diff:
            dep["annotations"] = {"uncommitted_diff_sha256": diff}
        deps.append(dep)
    return deps


# External-input kinds whose pinned files the lock names: {kind: (repository key, Hub path)}.
# A released checkpoint (import), a released tokenizer (tokenizer_import), a released dataset
# (acquire_hf; its repository lives under datasets/ on the Hub).
_RELEASED_KINDS = {
    "hf_model": ("repo", ""),
    "hf_tokenizer": ("repo", ""),
    "hf_dataset": ("dataset", "datasets/"),
}


def _imported_dependencies(project: Path, lock: dict[str, Any]) -> list[dict[str, Any]]:
    """Each released file the run read (an ``hf_model``, ``hf_tokenizer`` or ``hf_dataset``
    input of a locked stage's manifest), named ``hf://[datasets/]<repo>@<revision>/<file>``
    with its pinned sha256 and Hub URL. The copies under ``runs/<recipe>/`` are subjects like
    any output; these say where the bytes came from."""
    deps = {}
    for name in lock["artifacts"]:
        if not name.endswith(MANIFEST_KEY):
            continue
        try:
            manifest = read_manifest(project / name.removesuffix(MANIFEST_KEY))
        except StageInputError:  # a pulled run's upstream elsewhere: verify reports it
            continue
        for item in manifest.get("inputs", []):
            if item.get("kind") not in _RELEASED_KINDS:
                continue
            key, hub = _RELEASED_KINDS[item["kind"]]
            repo, revision = f"{hub}{item[key]}", item["revision"]
            for file, sha in item["files"].items():
                deps[f"{HF_PREFIX}{repo}@{revision}/{file}"] = {
                    "name": f"{HF_PREFIX}{repo}@{revision}/{file}",
                    "uri": f"https://huggingface.co/{repo}/resolve/{revision}/{file}",
                    "digest": {"sha256": sha},
                }
    return [deps[key] for key in sorted(deps)]


def lock_statement(project: Path, lock: dict[str, Any]) -> dict[str, Any]:
    """The SLSA provenance Statement of a release lock (``lock.make_lock``'s dict)."""
    recipe = lock["recipe"]
    produced, consumed = _split_artifacts(lock)
    external: dict[str, Any] = {"recipe": recipe}
    resolved = project / "runs" / recipe / "recipe.resolved.yaml"
    if resolved.is_file():
        external["resolvedRecipe"] = {
            "name": f"runs/{recipe}/recipe.resolved.yaml",
            "digest": {"sha256": sha256_file(resolved)},
        }
    metadata = {}
    report_key = f"results/{recipe}{MANIFEST_KEY}"
    if report_key in lock["artifacts"]:
        metadata["invocationId"] = (
            f"results/{recipe}/{MANIFEST_NAME}#{lock['artifacts'][report_key]}"
        )
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external,
            "resolvedDependencies": [
                {"name": name, "digest": {"sha256": sha}} for name, sha in sorted(consumed.items())
            ]
            + _imported_dependencies(project, lock)
            + _code_dependencies(project, lock),
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"openrecipe": __version__}},
            "metadata": metadata,
        },
        LOCK_FIELD: lock,
    }
    return statement(produced, SLSA_PROVENANCE, predicate)


def _lock_in(stmt: dict[str, Any], where: str) -> dict[str, Any]:
    lock = stmt["predicate"].get(LOCK_FIELD)
    if not isinstance(lock, dict) or not isinstance(lock.get("artifacts"), dict):
        raise AttestationError(
            f"{where}: the provenance carries no {LOCK_FIELD} (not a release lock)"
        )
    produced, consumed = _split_artifacts(lock)
    deps = {
        item.get("name"): item.get("digest", {}).get("sha256")
        for item in stmt["predicate"].get("buildDefinition", {}).get("resolvedDependencies", [])
        # an imported release's files are not lock artifacts (their copies are subjects)
        if "sha256" in item.get("digest", {}) and not str(item.get("name")).startswith(HF_PREFIX)
    }
    if subject_digests(stmt) != produced or deps != consumed:
        raise AttestationError(
            f"{where}: the signed subjects and dependencies disagree with the lock they carry"
        )
    return lock


def lock_from_statement(verified: Verified, where: Path) -> dict[str, Any]:
    """The lock inside a verified release-lock attestation."""
    return _lock_in(verified.statement, str(where))


def lock_in_envelope(envelope: Any, path: Path) -> dict[str, Any]:
    """The lock in an envelope read from ``path``, WITHOUT checking its signature: for
    ``verify``'s hash-only pass."""
    stmt = statement_unverified(envelope, path)
    if stmt.get("predicateType") != SLSA_PROVENANCE:
        raise AttestationError(f"{path}: predicateType is not {SLSA_PROVENANCE}")
    return _lock_in(stmt, str(path))


# --------------------------------------------------------------------------------------------
# Absence certificate


def certificate_statement(project: Path, cert: dict[str, Any]) -> dict[str, Any]:
    """The Statement of an absence certificate: about the checkpoint's manifest and outputs."""
    checkpoint = cert["checkpoint"]["dir"]
    stage_dir = project / checkpoint
    subjects = {f"{checkpoint}/{MANIFEST_NAME}": sha256_file(stage_dir / MANIFEST_NAME)}
    for rel, meta in read_manifest(stage_dir)["outputs"].items():
        subjects[f"{checkpoint}/{rel}"] = meta["sha256"]
    return statement(subjects, ABSENCE_PREDICATE, cert)


def certificate_from_statement(verified: Verified, where: Path) -> dict[str, Any]:
    """The certificate inside a verified absence attestation (subjects checked against it)."""
    cert = verified.predicate
    checkpoint = cert.get("checkpoint", {}).get("dir") if isinstance(cert, dict) else None
    subjects = subject_digests(verified.statement)
    manifest = f"{checkpoint}/{MANIFEST_NAME}"
    if not checkpoint or subjects.get(manifest) != cert.get("relied_on", {}).get(manifest):
        raise AttestationError(
            f"{where}: the signed subjects do not name the certificate's checkpoint manifest"
        )
    return cert
