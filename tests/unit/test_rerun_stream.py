"""A long ``rerun`` shows Snakemake's output as it comes, not all at once when the run ends.

The job below prints a line and then waits until the test, having *received* that line, lets it
finish: with buffered output the line would only arrive after the job ended, so the job would
time out and the run fail."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from openrecipe.lineage.rerun import stream_snakemake

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = """
rule all:
    input: "done.txt"

rule wait:
    output: "done.txt"
    shell: "echo job-started-$((6*7)); for i in $(seq 300); do [ -f release ] && break; sleep 0.1; done; [ -f release ] && echo ok > {output}"
"""


class _Releasing(io.StringIO):
    """A console that lets the job finish once it has seen the job's first line."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.seen_while_running = False

    def write(self, text: str) -> int:
        if text.strip() == "job-started-42":
            self.seen_while_running = not (self.root / "done.txt").exists()
            (self.root / "release").touch()
        return super().write(text)


def test_output_is_streamed_line_by_line(tmp_path: Path) -> None:
    (tmp_path / "workflow" / "profiles").mkdir(parents=True)
    shutil.copytree(REPO / "workflow/profiles/local", tmp_path / "workflow/profiles/local")
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "config.yaml").write_text("{}\n")
    console = _Releasing(tmp_path)
    code, output = stream_snakemake(tmp_path, ["config.yaml"], console)
    assert code == 0, output
    assert console.seen_while_running and (tmp_path / "done.txt").read_text() == "ok\n"
    assert console.getvalue() == output and "Finished job" in output
