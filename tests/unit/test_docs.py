"""docs/ stays true: every stage, CLI verb and option, recipe field, module and file path it
names exists (the checker: tests/unit/docs_truth.py), and the checker catches a missing one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docs_truth import REPO, Truth

from openrecipe.registry import STAGE_MODULES

DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))


@pytest.fixture(scope="module")
def truth() -> Truth:
    return Truth()


def test_the_pages_exist() -> None:
    names = {p.name for p in PAGES}
    for page in (
        "README.md",
        "architecture.md",
        "stage-contract.md",
        "lineage.md",
        "recipes.md",
        "adding-a-stage.md",
        "adding-a-release.md",
        "adding-a-benchmark.md",
    ):
        assert page in names, page


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_everything_a_page_names_exists(page: Path, truth: Truth) -> None:
    problems = truth.page_problems(page.name, page.read_text(encoding="utf-8"))
    assert problems == [], "\n".join(problems)


# One synthetic line per kind of name, each naming something that does not exist.
MISSING = [
    ("Run `openrecipe frobnicate` first.", "`openrecipe frobnicate`: no such verb"),
    ("Run `openrecipe rerun tiny --frob 3`.", "`openrecipe rerun --frob`: no such option"),
    ("`.venv/bin/openrecipe lock tiny --no-key`", "`openrecipe lock --no-key`: no such option"),
    ("```\npython -m openrecipe <stage> --recipe R --outdir D\n```", "no such option"),
    ("Pass `--frobnicate` to it.", "option '--frobnicate' belongs to no openrecipe verb"),
    ("Set `sft.learning_rate`.", "recipe field 'sft.learning_rate' is not in"),
    ("Set `data.sources[*].sha512`.", "recipe field 'data.sources[*].sha512' is not in"),
    ("`openrecipe rerun tiny --set eval.batchsize=4`", "--set: recipe field 'eval.batchsize'"),
    ("See `openrecipe.train.nonexistent`.", "openrecipe.train defines no 'nonexistent'"),
    ("See `openrecipe.nope.stage`.", "module 'openrecipe.nope.stage' does not exist"),
    ("Call `openrecipe.stage.run_stages`.", "openrecipe.stage defines no 'run_stages'"),
    ("Edit `src/openrecipe/nope.py`.", "path 'src/openrecipe/nope.py' does not exist"),
    ("Edit `train/nope.py`.", "path 'train/nope.py' does not exist"),
    ("Under `results/<recipe>/nope.json`.", "path 'results/<recipe>/nope.json'"),
    ("In `runs/<recipe>/sharding/`.", "'sharding' is not a stage"),
    ("The `dedupe` stage runs first.", "stage 'dedupe' is not in registry.STAGE_MODULES"),
    ("`curate` -> `dedupe` -> `blend`", "stage 'dedupe' is not in registry.STAGE_MODULES"),
    ("Add it to `STAGE_LIST`.", "'STAGE_LIST' does not appear in the code"),
]


@pytest.mark.parametrize(("text", "complaint"), MISSING)
def test_a_page_naming_a_missing_thing_fails(text: str, complaint: str, truth: Truth) -> None:
    problems = truth.page_problems("synthetic.md", text)
    assert len(problems) == 1 and complaint in problems[0], problems


@pytest.mark.parametrize(("text", "_"), MISSING)
def test_an_example_name_is_not_checked(text: str, _: str, truth: Truth) -> None:
    """A worked example declares its invented names; the same line then passes."""
    token = re.findall(
        r"(frobnicate|frob|no-key|outdir|learning_rate|sha512|batchsize|"
        r"nonexistent|nope|run_stages|sharding|dedupe|STAGE_LIST)",
        text,
    )[0]
    page = f"<!-- docs-truth: example {token} -->\n{text}"
    assert truth.page_problems("synthetic.md", page) == []


def test_the_stage_table_is_the_registry() -> None:
    """architecture.md lists every stage with its module, exactly as the registry has them."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Stages", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| `([a-z_.]+)` \|", section, re.MULTILINE)
    assert dict(rows) == STAGE_MODULES
    assert [stage for stage, _ in rows] == list(STAGE_MODULES)


def test_every_path_in_the_layout_exists() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    layout = text.split("```", 2)[1]
    for line in layout.splitlines():
        name = line.split(" ", 1)[0].strip()
        if name and "<" not in name:
            assert (REPO / name).exists(), name


def test_every_relative_link_resolves() -> None:
    for page in [REPO / "README.md", *PAGES]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name}: link {target}"


def test_readme_sends_readers_to_the_docs() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.startswith("# openrecipe\n\n```bash\nmake run ")
    assert "](docs/README.md)" in text and "docs/design.md" not in text
