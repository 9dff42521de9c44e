"""Wall time of every release proxy run end to end, against the tiny recipe run the same way.

    .venv/bin/python bench/proxies.py [--only NAME ...] [--cores 2]

Each recipe's run directory (runs/<recipe>/, results/<recipe>/) is removed first, then the real
workflow runs with the local profile. Raw sources (data/raw/, shared by all recipes and pinned by
hash) are kept, so the times are curation through evaluation, not downloads. Writes
results/bench/proxies.json: per recipe {wall_s, ratio_to_tiny, jobs, precision, final_loss,
params, tiny_wall_s} plus the tiny baseline, and prints one line per recipe. The issue's budget is
20 minutes per proxy on 2 cores.

With ``--only``, rows of the proxies not rerun are kept from the existing JSON (a derived proxy
runs after its parent has been re-pinned, in a second call); every row keeps the tiny wall time
of its own session (``tiny_wall_s``), so each ratio stays one measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 20 * 60


def _run(recipe: str, cores: int) -> dict:
    name = recipe.removesuffix(".yaml")
    for path in (ROOT / "runs" / name, ROOT / "results" / name):
        shutil.rmtree(path, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [
        sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/local",
        "--cores", str(cores), "--configfile", f"recipes/{name}.yaml",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    row: dict = {"wall_s": round(wall, 1), "ok": done.returncode == 0}
    if done.returncode != 0:
        row["error_tail"] = (done.stdout + done.stderr)[-2000:]
        return row
    row["jobs"] = (done.stdout + done.stderr).count("Finished jobid")
    # a derived proxy (recipe derive:) has no pretrain: its distill stage stands in for it
    base = next(
        stage for stage in ("pretrain", "distill") if (ROOT / "runs" / name / stage).is_dir()
    )
    manifest = ROOT / "runs" / name / base / "manifest.json"
    summary = json.loads(manifest.read_text(encoding="utf-8"))["summary"]
    row.update(
        precision=summary["precision"],
        final_loss=summary["final_loss"],
        params=(summary.get("params") or {}).get("total"),  # distill reports none
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="proxy recipe names (default: all *_proxy)")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    proxies = args.only or sorted(p.stem for p in (ROOT / "recipes").glob("*_proxy.yaml"))
    tiny = _run("tiny", args.cores)
    print(f"tiny (baseline): {tiny['wall_s']:.0f}s ok={tiny['ok']}", flush=True)
    out = ROOT / "results" / "bench" / "proxies.json"
    kept = _kept_rows(out, proxies) if args.only else {}
    results = {"baseline": {"tiny": tiny}, "budget_s": BUDGET_S, "cores": args.cores}
    results["proxies"] = dict(kept)
    for name in proxies:
        row = _run(name, args.cores)
        row["tiny_wall_s"] = tiny["wall_s"]
        row["ratio_to_tiny"] = round(row["wall_s"] / tiny["wall_s"], 2)
        row["within_budget"] = row["ok"] and row["wall_s"] <= BUDGET_S
        results["proxies"][name] = row
        print(
            f"{name}: {row['wall_s']:.0f}s ({row['ratio_to_tiny']}x tiny) ok={row['ok']} "
            f"within 20 min={row['within_budget']}",
            flush=True,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0 if all(results["proxies"][name]["ok"] for name in proxies) else 1


def _kept_rows(out: Path, rerun: list[str]) -> dict[str, dict]:
    """The existing JSON's rows for proxies not in ``rerun``, each with its session's tiny time."""
    if not out.is_file():
        return {}
    previous = json.loads(out.read_text(encoding="utf-8"))
    tiny_then = previous.get("baseline", {}).get("tiny", {}).get("wall_s")
    kept = {}
    for name, row in previous.get("proxies", {}).items():
        if name not in rerun:
            kept[name] = {"tiny_wall_s": tiny_then, **row}
    return kept


if __name__ == "__main__":
    raise SystemExit(main())
