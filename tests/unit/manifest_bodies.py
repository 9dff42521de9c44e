"""Stage bodies the manifest tests run through ``run_stage`` (shared by test_manifest.py and
test_manifest_mutants.py)."""

from __future__ import annotations

from openrecipe.stage import StageContext


def two_files(ctx: StageContext) -> dict:
    (ctx.out / "a.txt").write_text("first\n")
    (ctx.out / "sub").mkdir()
    (ctx.out / "sub" / "b.txt").write_text("second\n")
    return {}


def read_a(ctx: StageContext) -> dict:
    (ctx.out / "copy.txt").write_text((ctx.input("upstream") / "a.txt").read_text())
    return {}
