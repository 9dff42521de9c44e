"""``openrecipe`` / ``python -m openrecipe``: stage verbs and audit tools.

Stage verbs all share one signature (the stage contract, docs/stage-contract.md)::

    python -m openrecipe <stage> --recipe R --out DIR [--input NAME=DIR ...] [--part P]
                                 [--expect-config-hash H]

Heavy imports happen inside each verb, so ``--help`` and ``trace`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from openrecipe.errors import OpenRecipeError
from openrecipe.registry import STAGE_MODULES
from openrecipe.seeds import ALIGN_STAGES, check_part

# stage -> module with ``run(ctx) -> dict``; the stage name is the rule, subcommand and directory.
STAGES = STAGE_MODULES


def _parse_inputs(items: list[str]) -> dict[str, Path]:
    inputs: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise OpenRecipeError(f"--input {item!r}: expected NAME=DIR")
        inputs[name] = Path(path)
    return inputs


def _run_stage_verb(stage: str, args: argparse.Namespace) -> int:
    from openrecipe.paths import find_project_root, resolve_inside, stage_out_dir
    from openrecipe.recipe import load_recipe
    from openrecipe.stage import run_stage

    project = find_project_root()
    recipe = load_recipe(args.recipe, args.override, project=project)
    inputs = {
        name: resolve_inside(p, [project], f"--input {name}")
        for name, p in _parse_inputs(args.input).items()
    }
    if stage == "acquire_hf":  # per-file jobs and their gather, each with its narrowed view
        from openrecipe.data import acquire_hf

        recipe, out, inputs = acquire_hf.prepare(recipe, args.part, args.out, project, inputs)
    else:
        sources = tuple(s["name"] for s in recipe.data["data"]["sources"])
        out = stage_out_dir(
            args.out, project, stage=stage, recipe_name=recipe.name, part=args.part, sources=sources
        )
    if stage in ALIGN_STAGES:  # --part seed<k>: alignment seed k (openrecipe.seeds)
        check_part(stage, args.part, recipe.data, str(args.out))
    module = importlib.import_module(STAGES[stage])
    manifest = run_stage(
        stage,
        recipe,
        out,
        inputs,
        module.run,
        project=project,
        expect_config_hash=args.expect_config_hash,
        part=args.part,
    )
    print(
        f"{stage}: wrote {out} ({len(manifest['outputs'])} files, manifest {manifest['manifest_sha256'][:12]}…)"
    )
    return 0


def _trace(args: argparse.Namespace) -> int:
    from openrecipe.lineage.trace import format_tree, trace

    if args.metric:
        return _trace_metric(args)
    chain = trace(Path(args.file))
    if args.prov:
        from openrecipe.lineage.prov import prov_json

        Path(args.prov).write_text(prov_json(chain) + "\n", encoding="utf-8")
    if args.json:
        import json

        print(json.dumps(chain, indent=2, sort_keys=True))
    else:
        print(format_tree(chain))
    return 0


def _trace_metric(args: argparse.Namespace) -> int:
    from openrecipe.errors import LineageError
    from openrecipe.lineage.trace_metric import format_metric, trace_metric

    if args.prov:
        raise LineageError("--prov traces a file; give the score file, not --metric")
    records = trace_metric(Path(args.file), args.metric)
    if args.json:
        import json

        print(json.dumps(records, indent=2, sort_keys=True))
    else:
        print(format_metric(records))
    return 0


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (a bad value is refused by name, not a traceback)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def _verify(args: argparse.Namespace) -> int:
    from openrecipe.lineage.code_drift import made_by_other_code
    from openrecipe.lineage.verify import verify_roots
    from openrecipe.paths import find_project_root

    root = Path(args.run_dir)
    result = verify_roots([root], workers=args.workers)
    for line in result.problems:
        print(line)
    # Code drift is reported, not failed: the bytes above are what they claim to be, but the
    # checkout would not compute them (code edited or pulled since, or packages upgraded).
    drifted = (
        made_by_other_code(find_project_root(root.resolve()), [root.resolve()])
        if root.exists()
        else []
    )
    for line in drifted:
        print(f"note: {line}")
    print(
        f"verify: {result.checked} stage directories checked"
        f" (+{len(result.upstream)} upstream outside {args.run_dir}),"
        f" {len(result.problems)} problem(s), {len(drifted)} made by other code"
    )
    return 1 if result.problems else 0


def _resolve(args: argparse.Namespace) -> int:
    from openrecipe.recipe import dump_resolved, load_recipe

    recipe = load_recipe(args.recipe, args.override)
    text = dump_resolved(recipe)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _push(args: argparse.Namespace) -> int:
    from openrecipe.lineage.dvcstore import push_run

    push_run(Path(args.run_dir), remote=args.remote)
    return 0


def _pull(args: argparse.Namespace) -> int:
    from openrecipe.lineage.restore import restore_run
    from openrecipe.paths import find_project_root

    restored = restore_run(find_project_root(), args.recipe, args.override, remote=args.remote)
    print(
        f"pull: {restored.run_dir.name}: {restored.stages} stage directories verified and marked"
        f" up to date for snakemake ({' '.join(restored.targets)})"
    )
    return 0


def _releases(args: argparse.Namespace) -> int:
    from openrecipe.paths import find_project_root
    from openrecipe.releases import format_table, release_rows

    if args.fidelity:
        return _releases_fidelity(args.json)
    rows = release_rows(find_project_root())
    if args.json:
        import json

        print(json.dumps(rows, indent=2, sort_keys=True))
    else:
        print(format_table(rows))
    return 0


def _releases_fidelity(as_json: bool) -> int:
    from openrecipe.fidelity import fidelity, format_fidelity
    from openrecipe.paths import find_project_root

    table = fidelity(find_project_root())
    if as_json:
        import json

        print(json.dumps(table, indent=2, sort_keys=True))
    else:
        print(format_fidelity(table))
    return 0


def _import_hashes(args: argparse.Namespace) -> int:
    from openrecipe.train.import_checkpoint import pins_yaml, snapshot_pins

    pins = snapshot_pins(Path(args.snapshot), everything=args.all)
    print(f"# sha256 of {len(pins)} files in {args.snapshot}: paste under init: in the recipe")
    print(pins_yaml(pins), end="")
    return 0


def _dataset_hashes(args: argparse.Namespace) -> int:
    from openrecipe.data.acquire_hf import snapshot_pins
    from openrecipe.train.import_checkpoint import pins_yaml

    pins = snapshot_pins(Path(args.snapshot), args.subset)
    if not pins:
        raise OpenRecipeError(f"{args.snapshot}: no .parquet files (under {args.subset or '.'})")
    print(
        f"# sha256 of {len(pins)} Parquet files in {args.snapshot}: paste under the "
        "hf_dataset source in data.sources"
    )
    print(pins_yaml(pins), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openrecipe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    for stage in STAGES:
        p = sub.add_parser(stage, help=f"run the {stage} stage")
        p.add_argument("--recipe", required=True, help="recipe YAML (resolved or with extends:)")
        p.add_argument(
            "--override", action="append", default=[], help="override YAML, applied in order"
        )
        p.add_argument(
            "--out",
            required=True,
            help="output stage directory: runs/<recipe>/<stage>, data/raw/<source> (acquire) "
            "or results/<recipe> (report)",
        )
        p.add_argument("--input", action="append", default=[], help="upstream stage dir, NAME=DIR")
        p.add_argument(
            "--part", default=None, help="item of a per-item stage (acquire: the source)"
        )
        p.add_argument(
            "--expect-config-hash", default=None, help="refuse to run if the view hash differs"
        )
        p.set_defaults(func=lambda a, s=stage: _run_stage_verb(s, a))
    p = sub.add_parser(
        "trace", help="provenance chain of any artifact, or of one score, back to the raw sources"
    )
    p.add_argument(
        "file", help="a file or stage directory; with --metric, a run directory (runs/<name>)"
    )
    p.add_argument(
        "--metric",
        metavar="[CHECKPOINT/]TASK/METRIC",
        help="trace one score (e.g. sft/arc_easy/acc; every checkpoint if none is named): value "
        "and standard error, evaluate manifest, checkpoint, task data, then the stage chain",
    )
    p.add_argument("--json", action="store_true", help="print the chain as JSON")
    p.add_argument("--prov", metavar="OUT.json", help="also write the chain as W3C PROV-JSON")
    p.set_defaults(func=_trace)
    p = sub.add_parser("verify", help="rehash every artifact under a run directory")
    p.add_argument("run_dir", help="a run directory (runs/<name>) or any stage directory")
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="threads hashing files (default: every core this process may use)",
    )
    p.set_defaults(func=_verify)
    p = sub.add_parser("resolve", help="print (or write) a recipe with extends/overrides resolved")
    p.add_argument("recipe", help="recipe YAML (recipes/<name>.yaml)")
    p.add_argument(
        "--override", action="append", default=[], help="override YAML, applied in order"
    )
    p.add_argument("-o", "--output", help="write the resolved recipe here instead of stdout")
    p.set_defaults(func=_resolve)
    p = sub.add_parser(
        "push", help="dvc add + push a finished run and its raw sources (runs/<r>.dvc)"
    )
    p.add_argument("run_dir", help="runs/<recipe>, verified before it is pushed")
    p.add_argument("--remote", default=None, help="DVC remote name (default: the core remote)")
    p.set_defaults(func=_push)
    p = sub.add_parser(
        "pull",
        help="dvc pull a pushed run and its raw sources, verify them, mark them up to date",
    )
    p.add_argument("recipe", help="the recipe YAML whose run to restore (recipes/<r>.yaml)")
    p.add_argument(
        "--override", action="append", default=[], help="override YAML the run was made with"
    )
    p.add_argument("--remote", default=None, help="DVC remote name (default: the core remote)")
    p.set_defaults(func=_pull)
    p = sub.add_parser("releases", help="released-model recipes, their proxies and status")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument(
        "--fidelity",
        action="store_true",
        help="per release and field: our value, the published value, its source and a status",
    )
    p.set_defaults(func=_releases)
    p = sub.add_parser(
        "import-hashes",
        help="print the init.files block (name: sha256) of a downloaded checkpoint snapshot",
    )
    p.add_argument("snapshot", help="the directory `hf download --local-dir` wrote")
    p.add_argument(
        "--all",
        action="store_true",
        help="every file, not only config, weights, tokenizer and chat template files",
    )
    p.set_defaults(func=_import_hashes)
    p = sub.add_parser(
        "dataset-hashes",
        help="print the files block (path: sha256) of a downloaded dataset snapshot's Parquet files",
    )
    p.add_argument(
        "snapshot", help="the directory `hf download --repo-type dataset --local-dir` wrote"
    )
    p.add_argument(
        "--subset",
        action="append",
        default=[],
        help="only files under this directory of the repository (repeatable)",
    )
    p.set_defaults(func=_dataset_hashes)
    from openrecipe.lineage.commands import add_audit_verbs

    add_audit_verbs(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from openrecipe import kernel_hint

    # Every stage process starts here. Installed by the CLI, not the stages, so the filter (a
    # logging concern) is no part of any stage's code identity and reruns nothing.
    kernel_hint.install()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except OpenRecipeError as exc:
        print(f"openrecipe {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`openrecipe releases | head`): stop quietly, as a Unix filter
        # does, instead of a traceback; stdout goes to /dev/null so the flush at exit is silent
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by the pipe
