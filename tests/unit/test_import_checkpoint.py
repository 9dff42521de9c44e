"""The import stage: a released checkpoint (recipe ``init:``) copied from a snapshot directory
and checked file by file against its pinned sha256, or refused by name.

The "release" is built here as a team would find one on the Hub: a real tiny NemotronH saved
with ``save_pretrained`` plus a BPE tokenizer carrying the chat template, in the flat layout
``hf download --local-dir`` writes."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from align_fixtures import PROJECT, tiny_recipe, train_tokenizer

from openrecipe.data import chat
from openrecipe.errors import RecipeError, StageInputError
from openrecipe.hashing import sha256_file
from openrecipe.model.build import build_model, nemotronh_config
from openrecipe.recipe import Recipe, validate
from openrecipe.stage import run_stage
from openrecipe.train import import_checkpoint
from openrecipe.train.hf_checkpoint import load_checkpoint

REPO_ID = "example-org/tiny-hybrid"
REVISION = "0123456789abcdef0123456789abcdef01234567"
TEXTS = [
    f"{a} plus {b} is {a + b}. <think> add </think> {a + b}" for a in range(30) for b in (1, 2)
]


def build_release(
    directory: Path, *, template: bool = True, think: bool = True, texts: list[str] = TEXTS
) -> Path:
    """A tiny released checkpoint: config, safetensors, tokenizer files, chat template (the
    tokenizer trained on ``texts``: a model to fine-tune needs one that fits its data)."""
    tokenizer = train_tokenizer(texts)
    if not think:  # a tokenizer without </think>: trained with the specials less that one
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        raw = Tokenizer(models.BPE())
        raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        raw.train_from_iterator(
            TEXTS,
            trainers.BpeTrainer(
                vocab_size=300,
                special_tokens=["<s>", "</s>", "<pad>", chat.IM_START, chat.IM_END],
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            ),
        )
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=raw, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
        )
        tokenizer.chat_template = chat.CHAT_TEMPLATE
    if not template:
        tokenizer.chat_template = None
    ids = tokenizer.convert_tokens_to_ids
    config = nemotronh_config(
        tiny_recipe().get("model"),
        len(tokenizer),
        bos_id=ids("<s>"),
        eos_id=ids("</s>"),
        pad_id=ids("<pad>"),
    )
    build_model(config, seed=7).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def pins(directory: Path) -> dict[str, str]:
    """{relative name: sha256} of every file in a snapshot (what ``import-hashes`` prints)."""
    return {
        p.relative_to(directory).as_posix(): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_release(tmp_path_factory.mktemp("release") / "snapshot")


def recipe_with(init: dict) -> Recipe:
    """recipes/tiny.yaml plus an ``init`` section, validated as a loaded recipe is."""
    base = tiny_recipe()
    recipe = Recipe(data={**copy.deepcopy(base.data), "init": init}, files=base.files)
    validate(recipe, PROJECT)
    return recipe


def init_section(snapshot: Path, files: dict[str, str]) -> dict:
    return {"repo": REPO_ID, "revision": REVISION, "files": files, "snapshot": str(snapshot)}


def do_import(recipe: Recipe, out: Path, project: Path = PROJECT) -> dict:
    return run_stage("import", recipe, out, {}, import_checkpoint.run, project=project)


def test_the_import_copies_every_pinned_file_and_sft_can_load_it(
    release: Path, tmp_path: Path
) -> None:
    files = pins(release)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    out = tmp_path / "run" / "import"
    manifest = do_import(recipe_with(init_section(release, files)), out)

    assert {
        name.removeprefix("model/"): meta["sha256"] for name, meta in manifest["outputs"].items()
    } == files
    [external] = manifest["inputs"]
    assert external["kind"] == "hf_model"
    assert (external["repo"], external["revision"], external["files"]) == (
        REPO_ID,
        REVISION,
        files,
    )
    assert manifest["summary"]["repo"] == REPO_ID and manifest["summary"]["files"] == len(files)
    assert manifest["config_view"] == {
        "init.repo": REPO_ID,
        "init.revision": REVISION,
        "init.files": files,
    }
    model, tokenizer = load_checkpoint(out)  # what sft and evaluate do with it
    assert tokenizer.chat_template and chat.THINK_CLOSE in tokenizer.get_vocab()
    assert model.config.model_type == "nemotron_h"


def test_two_imports_give_identical_manifests(release: Path, tmp_path: Path) -> None:
    recipe = recipe_with(init_section(release, pins(release)))
    first = do_import(recipe, tmp_path / "a" / "import")
    second = do_import(recipe, tmp_path / "b" / "import")
    assert first["outputs"] == second["outputs"]
    assert first["manifest_sha256"] == second["manifest_sha256"]


def test_moving_the_snapshot_does_not_change_the_view(release: Path, tmp_path: Path) -> None:
    """Where the bytes sit is not what they are: the view (and so the rerun trigger) is the pin."""
    files = pins(release)
    here = recipe_with(init_section(release, files))
    there = recipe_with(init_section(tmp_path / "elsewhere", files))
    assert here.view_hash("import") == there.view_hash("import")


def _refused_in(project: Path, recipe: Recipe, out: Path) -> str:
    with pytest.raises(StageInputError) as caught:
        do_import(recipe, out, project)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))
    return str(caught.value)


def _refused(recipe: Recipe, out: Path, match: str) -> str:
    with pytest.raises(StageInputError, match=match) as caught:
        do_import(recipe, out)
    # nothing half-written: no output directory, no temporary directory left beside it
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))
    return str(caught.value)


def test_a_hash_mismatch_names_the_file_and_both_hashes(release: Path, tmp_path: Path) -> None:
    files = pins(release)
    found = files["tokenizer.json"]
    files["tokenizer.json"] = "f" * 64
    message = _refused(
        recipe_with(init_section(release, files)), tmp_path / "run" / "import", "tokenizer.json"
    )
    assert "f" * 64 in message and found in message


def test_a_tampered_snapshot_file_is_refused(release: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    files = pins(release)
    for name in files:
        (snapshot / name).write_bytes((release / name).read_bytes())
    with open(snapshot / "model.safetensors", "r+b") as handle:  # one flipped byte at the end
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 1]))
    message = _refused(
        recipe_with(init_section(snapshot, files)), tmp_path / "run" / "import", "model.safetensors"
    )
    assert files["model.safetensors"] in message


def test_a_missing_file_is_refused(release: Path, tmp_path: Path) -> None:
    files = {**pins(release), "model-00002-of-00002.safetensors": "a" * 64}
    message = _refused(
        recipe_with(init_section(release, files)),
        tmp_path / "run" / "import",
        "model-00002-of-00002.safetensors: missing",
    )
    assert "a" * 64 in message


def test_offline_with_no_snapshot_refuses_without_the_network(
    release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("snapshot_download called with HF_HUB_OFFLINE=1")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    absent = tmp_path / "not-downloaded"
    _refused(
        recipe_with(init_section(absent, pins(release))),
        tmp_path / "run" / "import",
        "HF_HUB_OFFLINE",
    )
    assert not absent.exists()


def test_online_with_no_snapshot_asks_the_hub_for_exactly_the_pinned_files(
    release: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hub cannot be reached here: a stand-in for ``snapshot_download`` records what it was
    asked and serves the local release, and the same hash checks then run on what it wrote.
    The download goes into the project (data/releases/...), and only there."""
    import huggingface_hub

    asked: list[dict] = []

    def hub(**kwargs: object) -> str:
        asked.append(kwargs)
        target = Path(str(kwargs["local_dir"]))
        target.mkdir(parents=True)
        for name in kwargs["allow_patterns"]:  # type: ignore[union-attr]
            (target / name).write_bytes((release / name).read_bytes())
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    files = pins(release)
    outside = project.parent / "downloaded"
    out = project / "runs" / "tiny" / "import"
    message = str(_refused_in(project, recipe_with(init_section(outside, files)), out))
    assert "downloads only into the project" in message and str(outside) in message
    assert asked == [] and not outside.exists()
    target = project / "data" / "releases" / "tiny-release"
    do_import(recipe_with(init_section(target, files)), out, project)
    assert asked == [
        {
            "repo_id": REPO_ID,
            "revision": REVISION,
            "allow_patterns": sorted(files),
            "local_dir": target,
        }
    ]


@pytest.mark.parametrize(
    ("drop", "match"),
    [("config.json", "lists no config.json"), ("model.safetensors", "no .safetensors")],
)
def test_a_file_set_without_config_or_weights_is_refused(
    release: Path, tmp_path: Path, drop: str, match: str
) -> None:
    files = {k: v for k, v in pins(release).items() if k != drop}
    _refused(recipe_with(init_section(release, files)), tmp_path / "run" / "import", match)


def test_a_file_set_without_tokenizer_is_refused(release: Path, tmp_path: Path) -> None:
    files = {k: v for k, v in pins(release).items() if not k.startswith(("tokenizer", "chat"))}
    _refused(recipe_with(init_section(release, files)), tmp_path / "run" / "import", "tokenizer")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"template": False}, "no chat template"), ({"think": False}, "no </think> token")],
)
def test_a_tokenizer_sft_cannot_use_is_refused(tmp_path: Path, kwargs: dict, match: str) -> None:
    snapshot = build_release(tmp_path / "snapshot", **kwargs)
    # without a template, tokenizer_config.json carries none and no chat_template.jinja is written
    _refused(
        recipe_with(init_section(snapshot, pins(snapshot))), tmp_path / "run" / "import", match
    )


def test_an_index_naming_an_unpinned_shard_is_refused(release: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for name in pins(release):
        (snapshot / name).write_bytes((release / name).read_bytes())
    index = {"metadata": {}, "weight_map": {"a": "model.safetensors", "b": "model-2.safetensors"}}
    (snapshot / import_checkpoint.WEIGHTS_INDEX).write_text(json.dumps(index), encoding="utf-8")
    _refused(
        recipe_with(init_section(snapshot, pins(snapshot))),
        tmp_path / "run" / "import",
        r"names shards the recipe does not pin: \['model-2.safetensors'\]",
    )


GOOD = {"config.json": "a" * 64}


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("repo", "../evil", "init.repo: '../evil' is not a Hugging Face model repository id"),
        ("repo", "https://x.org/a/b", "init.repo"),
        ("repo", "org/name/extra", "init.repo"),
        ("repo", "org--x/name", "init.repo"),
        ("revision", "main", "init.revision: 'main' is not a git commit"),
        ("revision", "0123456789ABCDEF0123456789abcdef01234567", "init.revision"),
        ("files", {"config.json": "a" * 63}, r"init.files.config.json: 'a{63}' is not a sha256"),
        ("files", {"config.json": "A" * 64}, "init.files.config.json"),
        ("files", {"../config.json": "a" * 64}, "is not a relative file path"),
        ("files", {"/etc/passwd": "a" * 64}, "is not a relative file path"),
        ("files", {"sub/../../x": "a" * 64}, "is not a relative file path"),
        ("files", {".cache/x": "a" * 64}, "is not a relative file path"),
        ("files", {}, "init.files"),
        ("snapshot", "", "init.snapshot"),
        ("extra", 1, "init.extra: unknown key"),
    ],
)
def test_the_schema_refuses_a_bad_init_section_by_name(
    tmp_path: Path, field: str, value: object, match: str
) -> None:
    init = {**init_section(tmp_path, GOOD), field: value}
    with pytest.raises(RecipeError, match=match):
        recipe_with(init)


def test_the_stage_refuses_a_bad_pin_even_without_the_schema() -> None:
    """The repository id and file names reach a URL and a path: checked again in the stage."""
    bad = import_checkpoint.ImportConfig(repo="a/b", revision=REVISION, files={"../x": "a" * 64})
    with pytest.raises(RecipeError, match="not a relative path"):
        import_checkpoint.check_config(bad)


def test_the_stage_refuses_a_recipe_without_init(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="recipe tiny: no init: section"):
        do_import(tiny_recipe(), tmp_path / "run" / "import")
    assert not (tmp_path / "run" / "import").exists()


def test_recipes_without_init_have_no_init_section() -> None:
    """No default: a recipe that does not name a release pretrains its own base, unchanged."""
    for name in ("tiny", "default"):
        from openrecipe.recipe import load_recipe

        assert "init" not in load_recipe(PROJECT / "recipes" / f"{name}.yaml", project=PROJECT).data


def test_import_hashes_prints_the_files_block_the_import_accepts(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``openrecipe import-hashes DIR``: the checkpoint files, not the download cache that
    ``hf download --local-dir`` leaves or the model card, as YAML to paste under ``init:``."""
    import yaml

    from openrecipe.cli import main

    snapshot = tmp_path / "snapshot"
    shutil.copytree(release, snapshot)
    (snapshot / ".cache" / "huggingface").mkdir(parents=True)
    (snapshot / ".cache" / "huggingface" / "config.json.lock").write_text("")
    (snapshot / "README.md").write_text("# a model card\n")
    assert main(["import-hashes", str(snapshot)]) == 0
    block = yaml.safe_load(capsys.readouterr().out)
    assert block["files"] == pins(release)
    do_import(recipe_with(init_section(snapshot, block["files"])), tmp_path / "run" / "import")
    assert main(["import-hashes", "--all", str(snapshot)]) == 0
    assert "README.md" in yaml.safe_load(capsys.readouterr().out)["files"]
    assert main(["import-hashes", str(tmp_path / "absent")]) == 2
    assert "not a directory" in capsys.readouterr().err
