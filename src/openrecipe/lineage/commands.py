"""The audit verbs of the CLI: certify, verify-certificate, diff, rerun, lock, reproduce, keygen.

Kept apart from ``cli.py`` (which registers them with one call) so the audit tools live with
the lineage code they drive; every import is inside its verb, so ``--help`` stays fast.
Exit codes: 0 = holds, 1 = an audit finding (altered file, claim not proven, outside the
envelope), 2 = the command could not run (``OpenRecipeError``, from ``cli.main``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openrecipe.lineage.attestation import SigningKey, Trust


def _signing_key(args: argparse.Namespace) -> SigningKey:
    """``--key``, else ``$OPENRECIPE_SIGNING_KEY``, else ~/.config/openrecipe/signing_key. A
    missing key is refused with how to make one: a signing identity is never created behind
    the user's back."""
    from openrecipe.lineage.attestation import default_key_path, load_signing_key

    return load_signing_key(Path(args.key) if args.key else default_key_path())


def _trust(args: argparse.Namespace) -> Trust:
    from openrecipe.lineage.attestation import default_key_path, load_trust

    return load_trust(
        [Path(p) for p in args.trusted_key],
        Path(args.allowed_signers) if args.allowed_signers else None,
        default_key_path(),
    )


def _keygen(args: argparse.Namespace) -> int:
    import getpass
    import socket

    from openrecipe.lineage.attestation import default_key_path, generate_key, pub_path

    path = Path(args.out) if args.out else default_key_path()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        user = "openrecipe"
    comment = args.comment or f"{user}@{socket.gethostname()}"
    key = generate_key(path, comment)
    print(f"keygen: wrote {path} (private, 0600) and {pub_path(path)}")
    print(f"keygen: key {key.public.describe()}")
    print(f"keygen: give auditors this public key: {key.public.openssh()}")
    return 0


def _certify(args: argparse.Namespace) -> int:
    from openrecipe.lineage.certify import certify, render_markdown, write_certificate
    from openrecipe.paths import find_project_root

    key = _signing_key(args) if args.out else None  # fail before the long count, not after
    cert = certify(args.absent, Path(args.checkpoint))
    if key is not None:
        project = find_project_root(Path(args.checkpoint).resolve())
        json_path, md_path = write_certificate(cert, Path(args.out), key, project)
        print(f"certify: wrote {json_path} and {md_path}, signed by {key.public.describe()}")
    print(render_markdown(cert))
    return 0 if cert["absent"] else 1


def _verify_certificate(args: argparse.Namespace) -> int:
    from openrecipe.lineage.certify import open_certificate, verify_certificate

    trust = _trust(args)
    signer = open_certificate(Path(args.certificate), trust).signer
    print(f"verify-certificate: {args.certificate}: signed by {signer.describe()}")
    problems = verify_certificate(Path(args.certificate), trust)
    for line in problems:
        print(line)
    print(f"verify-certificate: {len(problems)} problem(s)")
    return 1 if problems else 0


def _run_dir(ref: str) -> Path:
    """A run directory given as a path or as a run name (``runs/<name>``)."""
    from openrecipe.errors import LineageError
    from openrecipe.paths import find_project_root

    path = Path(ref)
    if path.is_dir():
        return path
    named = find_project_root() / "runs" / ref
    if "/" not in ref and ref not in ("", ".", "..") and named.is_dir():
        return named
    raise LineageError(f"diff: {ref}: no such run directory (give runs/<name> or a path)")


def _diff(args: argparse.Namespace) -> int:
    from openrecipe.lineage.diff import diff_runs, format_diff

    result = diff_runs(_run_dir(args.run_a), _run_dir(args.run_b))
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else format_diff(result))
    return 0


def _rerun(args: argparse.Namespace) -> int:
    from openrecipe.lineage.rerun import format_rerun, rerun
    from openrecipe.paths import find_project_root

    result = rerun(
        find_project_root(),
        args.recipe,
        args.exclude,
        args.weight,
        args.set,
        dry_run=args.dry_run,
        argv=sys.argv[2:],
        name=args.name,
        progress=sys.stderr,  # Snakemake's progress as it runs; the result goes to stdout
    )
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else format_rerun(result))
    return 0


def _lock(args: argparse.Namespace) -> int:
    from openrecipe.lineage.lock import write_lock
    from openrecipe.paths import find_project_root

    key = _signing_key(args)
    path = write_lock(
        find_project_root(), args.recipe, key, allow_uncommitted=args.allow_uncommitted
    )
    print(f"lock: wrote {path}, signed by {key.public.describe()}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from openrecipe.lineage.lock import check_lock, format_check

    result = check_lock(Path(args.check), _trust(args))
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else format_check(result))
    return 0 if result["verdict"] in ("exact", "envelope") else 1


def _check_results(args: argparse.Namespace) -> int:
    from openrecipe.lineage.check_results import check_results
    from openrecipe.lineage.lock import format_check
    from openrecipe.paths import find_project_root

    result = check_results(find_project_root(), args.recipe)
    print(format_check(result))
    return 0 if result["verdict"] == "exact" else 1


def _add_key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key",
        metavar="PATH",
        help="unencrypted OpenSSH ed25519 private key to sign with "
        "(default: $OPENRECIPE_SIGNING_KEY, else ~/.config/openrecipe/signing_key)",
    )


def _add_trust_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        metavar="KEY.pub",
        help="a signer's OpenSSH ed25519 public key to accept (repeatable)",
    )
    p.add_argument(
        "--allowed-signers",
        metavar="FILE",
        help="OpenSSH allowed_signers file ('principal ssh-ed25519 BASE64' lines) to accept",
    )


def add_audit_verbs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="write a new ed25519 signing key (OpenSSH format)")
    p.add_argument(
        "--out",
        metavar="PATH",
        help="private key path, PATH.pub beside it "
        "(default: $OPENRECIPE_SIGNING_KEY, else ~/.config/openrecipe/signing_key)",
    )
    p.add_argument("--comment", help="label in the .pub file (default: user@host)")
    p.set_defaults(func=_keygen)
    p = sub.add_parser(
        "certify", help="exact training-token count from documents (exclusion proof)"
    )
    p.add_argument(
        "--absent", required=True, metavar="SELECTOR", help="source=X, license=Y, lang=Z, ids=FILE"
    )
    p.add_argument("checkpoint", help="a pretrain, sft or rl stage directory")
    p.add_argument("--out", help="write OUT.json (the signed certificate) and OUT.md")
    _add_key_option(p)
    p.set_defaults(func=_certify)
    p = sub.add_parser(
        "verify-certificate", help="check a certificate: signature, hashes and counts"
    )
    p.add_argument("certificate", help="the certificate JSON written by certify --out")
    _add_trust_options(p)
    p.set_defaults(func=_verify_certificate)
    p = sub.add_parser(
        "diff", help="which stages of two runs differ, why, and each score's paired difference"
    )
    p.add_argument("run_a", help="runs/<name> (or a run name)")
    p.add_argument("run_b", help="runs/<name> (or a run name), any recipe")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=_diff)
    p = sub.add_parser("rerun", help="write an override, show what reruns and why, run it")
    p.add_argument("recipe", help="recipe name (recipes/<name>.yaml) or path")
    p.add_argument(
        "--name",
        help="make a variant recipe recipes/NAME.yaml (runs/NAME, results/NAME) beside the "
        "original, sharing its unchanged stages, instead of rerunning in place",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="FIELD=VALUE[,...]",
        help="add a data.exclude rule; FIELD: source, license, lang, path_glob, ids (repeatable)",
    )
    p.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="src:NAME=F|lang:CODE=F",
        help="multiply a source's or a language's blend weight by F (phases renormalised)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="dotted.key=VALUE",
        help="set one recipe field, e.g. sft.lr=1e-4 (VALUE read as YAML, 1e-4 as a number; "
        "its type must match the schema)",
    )
    p.add_argument("--dry-run", action="store_true", help="only show the plan; writes nothing")
    p.add_argument("--json", action="store_true", help="print the plan and result as JSON")
    p.set_defaults(func=_rerun)
    p = sub.add_parser(
        "lock", help="write the signed results/<recipe>/release.lock.json of a finished run"
    )
    p.add_argument("recipe", help="recipe name")
    p.add_argument(
        "--allow-uncommitted",
        action="store_true",
        help="lock results the report marked as made from uncommitted code (not a release)",
    )
    _add_key_option(p)
    p.set_defaults(func=_lock)
    p = sub.add_parser(
        "check-results",
        help="remake a committed results/<recipe>/ from scratch in a scratch copy and require "
        "every hash of its signed lock (signers: keys/allowed_signers)",
    )
    p.add_argument("recipe", help="recipe name (recipes/<name>.yaml) or path")
    p.set_defaults(func=_check_results)
    p = sub.add_parser("reproduce", help="compare the current run with a signed release lock")
    p.add_argument(
        "--check", required=True, metavar="LOCK", help="results/<recipe>/release.lock.json"
    )
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    _add_trust_options(p)
    p.set_defaults(func=_reproduce)
