"""The audit verbs of the CLI: certify, verify-certificate, diff, rerun, lock, reproduce.

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


def _certify(args: argparse.Namespace) -> int:
    from openrecipe.lineage.certify import certify, render_markdown, write_certificate

    cert = certify(args.absent, Path(args.checkpoint))
    if args.out:
        json_path, md_path = write_certificate(cert, Path(args.out))
        print(f"certify: wrote {json_path} and {md_path}")
    print(render_markdown(cert))
    return 0 if cert["absent"] else 1


def _verify_certificate(args: argparse.Namespace) -> int:
    from openrecipe.lineage.certify import verify_certificate

    problems = verify_certificate(Path(args.certificate))
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
    )
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else format_rerun(result))
    return 0


def _lock(args: argparse.Namespace) -> int:
    from openrecipe.lineage.lock import write_lock
    from openrecipe.paths import find_project_root

    path = write_lock(find_project_root(), args.recipe)
    print(f"lock: wrote {path}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from openrecipe.lineage.lock import check_lock, format_check

    result = check_lock(Path(args.check))
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else format_check(result))
    return 0 if result["verdict"] in ("exact", "envelope") else 1


def add_audit_verbs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "certify", help="exact training-token count from documents (exclusion proof)"
    )
    p.add_argument(
        "--absent", required=True, metavar="SELECTOR", help="source=X, license=Y, lang=Z, ids=FILE"
    )
    p.add_argument("checkpoint", help="a pretrain, sft or rl stage directory")
    p.add_argument("--out", help="write OUT.json and OUT.md (the certificate)")
    p.set_defaults(func=_certify)
    p = sub.add_parser("verify-certificate", help="recheck a certificate: hashes and counts")
    p.add_argument("certificate")
    p.set_defaults(func=_verify_certificate)
    p = sub.add_parser(
        "diff", help="which stages of two runs differ, why, and each score's paired difference"
    )
    p.add_argument("run_a", help="runs/<name> (or a run name)")
    p.add_argument("run_b", help="runs/<name> (or a run name), any recipe")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_diff)
    p = sub.add_parser("rerun", help="write an override, show what reruns and why, run it")
    p.add_argument("recipe", help="recipe name (recipes/<name>.yaml) or path")
    p.add_argument(
        "--name",
        help="make a variant recipe recipes/NAME.yaml (runs/NAME, results/NAME) beside the "
        "original, sharing its unchanged stages, instead of rerunning in place",
    )
    p.add_argument("--exclude", action="append", default=[], metavar="FIELD=VALUE[,...]")
    p.add_argument("--weight", action="append", default=[], metavar="src:NAME=F|lang:CODE=F")
    p.add_argument("--set", action="append", default=[], metavar="dotted.key=VALUE")
    p.add_argument("--dry-run", action="store_true", help="only show the plan; writes nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_rerun)
    p = sub.add_parser("lock", help="write results/<recipe>/release.lock.json of a finished run")
    p.add_argument("recipe", help="recipe name")
    p.set_defaults(func=_lock)
    p = sub.add_parser("reproduce", help="compare the current run with a release lock")
    p.add_argument("--check", required=True, metavar="LOCK")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_reproduce)
