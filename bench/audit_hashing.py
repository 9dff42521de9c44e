"""Audit throughput: ``verify`` (and ``lock``, which runs the same verify first and otherwise
only reads manifests) against ``sha256sum`` over the same files, in one session.

Builds a run directory of at least 2 GB through the real stage harness (three sealed stages in
a chain, files from 4 KiB to 512 MiB, as a pack, its blend and a checkpoint look), then times,
each from a warm page cache (the disk is not what is measured) and best of ``--repeat``:

- ``sha256sum`` over every file, one process: the baseline the goal names;
- ``xargs -P <cores> sha256sum``: coreutils on every core, the best the machine does;
- ``verify_roots(workers=1)``: one file after another, as verify hashed before;
- ``verify_roots()``: the thread pool on every core (``lineage/parallel_hash.py``).

Usage: python bench/audit_hashing.py [--gb 2.2] [--repeat 3] [--out results/bench/audit_hashing.json]
Exits 1 when verify reports a problem on the untouched run (the timing would be of a failure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openrecipe.lineage.parallel_hash import default_workers
from openrecipe.lineage.verify import verify_roots
from openrecipe.recipe import load_recipe
from openrecipe.stage import StageContext, run_stage

PROJECT = Path(__file__).resolve().parents[1]
MIB = 1 << 20


def _write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        left = size
        while left:
            n = min(left, 64 * MIB)
            handle.write(os.urandom(n))
            left -= n


def _files_body(sizes: dict[str, int]):
    def body(ctx: StageContext) -> dict:
        for rel, size in sizes.items():
            _write_random(ctx.out / rel, size)
        return {}

    return body


def build_run(root: Path, total_gb: float) -> Path:
    """A project with runs/bench/{blend,pack,pretrain}: pack reads blend, pretrain reads pack."""
    (root / "workflow").mkdir(parents=True)
    shutil.copytree(PROJECT / "workflow" / "schemas", root / "workflow" / "schemas")
    shutil.copytree(PROJECT / "recipes", root / "recipes")
    (root / "Snakefile").write_text("# bench project\n")
    recipe = load_recipe(root / "recipes" / "tiny.yaml", project=root)
    unit = int(total_gb * 1e9 / 22)  # shares below sum to 22 units
    run = root / "runs" / "bench"
    stages = {
        "blend": ({f"streams/source_{i:02d}.jsonl": unit for i in range(8)}, {}),
        "pack": (
            {"train.bin": 8 * unit, "train.idx": 4096, "sidecar.jsonl": unit},
            {"blend": run / "blend"},
        ),
        "pretrain": (
            {"checkpoint/model.safetensors": 4 * unit, "checkpoint/optim.pt": unit // 2}
            | {f"metrics/{i:03d}.json": 4096 for i in range(64)},
            {"pack": run / "pack"},
        ),
    }
    for stage, (sizes, inputs) in stages.items():
        run_stage(stage, recipe, run / stage, inputs, _files_body(sizes), project=root)
    return run


def _best(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.2, help="size of the run directory")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="results/bench/audit_hashing.json")
    args = parser.parse_args()
    cores = default_workers()
    with tempfile.TemporaryDirectory(prefix="openrecipe-audit-bench-") as scratch:
        run = build_run(Path(scratch) / "project", args.gb)
        files = sorted(str(p) for p in run.rglob("*") if p.is_file())
        sizes = [os.path.getsize(f) for f in files]
        size = sum(sizes)
        listing = "\0".join(files).encode()

        def sha256sum() -> None:
            subprocess.run(["sha256sum", *files], check=True, stdout=subprocess.DEVNULL)

        def sha256sum_all_cores() -> None:
            subprocess.run(
                ["xargs", "-0", "-P", str(cores), "-n", "1", "sha256sum"],
                input=listing,
                check=True,
                stdout=subprocess.DEVNULL,
            )

        def verify(workers: int | None):
            def call() -> None:
                result = verify_roots([run], workers=workers)
                if result.problems or result.checked != 3:
                    sys.exit(f"verify reported {result.problems} on an untouched run")

            return call

        sha256sum()  # warm the page cache: each timing below reads from memory
        timings = {
            "sha256sum_1_process": _best(args.repeat, sha256sum),
            f"sha256sum_xargs_{cores}_processes": _best(args.repeat, sha256sum_all_cores),
            "verify_1_worker": _best(args.repeat, verify(1)),
            f"verify_{cores}_workers": _best(args.repeat, verify(None)),
        }
    throughput = {name: round(size / secs / 1e6, 1) for name, secs in timings.items()}
    base = timings["sha256sum_1_process"]
    report = {
        "command": " ".join(["python", "bench/audit_hashing.py", *sys.argv[1:]]),
        "machine": {
            "cores_used": cores,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "run_directory": {
            "bytes": size,
            "files": len(files),
            "stages": 3,
            "largest_file_bytes": max(sizes),
        },
        "page_cache": "warm (one sha256sum pass before timing)",
        "best_of": args.repeat,
        "wall_s": {name: round(secs, 3) for name, secs in timings.items()},
        "throughput_MB_per_s": throughput,
        "ratio_over_sha256sum_throughput": {
            name: round(base / secs, 3) for name, secs in timings.items()
        },
        "goal": "verify >= 0.8 x sha256sum's throughput, using every core (issue 18)",
    }
    out = PROJECT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for name in timings:
        print(
            f"{name:32s} {timings[name]:7.2f} s {throughput[name]:8.1f} MB/s "
            f"x{base / timings[name]:.2f} of sha256sum"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
