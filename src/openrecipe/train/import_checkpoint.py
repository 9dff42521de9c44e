"""The ``import`` stage: a released Hugging Face checkpoint as a pinned input (recipe ``init:``).

Reads the files ``init.files`` names (config, safetensors shards and index, tokenizer files,
chat template) from the snapshot directory ``init.snapshot`` (what ``hf download --local-dir``
writes), copies them into ``model/`` and checks each copy's sha256 against the recipe while it
is written. Writes nothing else: the manifest (``run_stage``) lists every file with its hash
and records the repository, revision and pinned hashes as an external input, which ``trace``
shows as a raw input and ``certify`` names as outside what it can certify.

Guarantees: a file that is missing, is not a regular file or hashes differently is refused
with its name, the expected and the found hash; so is a file set ``sft`` could not train from
(no ``config.json``, no safetensors weights, an index naming an unlisted shard, a tokenizer
without the chat template or ``</think>``). Everything is written into the stage's temporary
directory, so a refused or killed import leaves no ``model/`` that looks complete.

Where the snapshot is: ``init.snapshot`` is deliberately not in the stage's view (the
registry's ``view`` lists repository, revision and files). Where the bytes sit is not what
they are: moving the snapshot must not rerun the import or anything trained from it, and the
pinned hashes already decide whether the bytes are the same.

When the directory does not exist the stage downloads exactly the pinned files with
``huggingface_hub.snapshot_download`` into it, unless ``HF_HUB_OFFLINE`` is set, in which case
it refuses and never opens a connection, or the directory lies outside the project, which it
refuses too (a stage writes nothing outside the project; an existing copy may be anywhere). That online path is not exercised by the tests (the
machines that run them have no network); it only fills the directory, and the same hash
checks as offline then run on what it wrote.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.errors import RecipeError, StageInputError
from openrecipe.hashing import hash_obj
from openrecipe.pinned_files import check_download_allowed, copy_verified
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field

MODEL_DIR = "model"
CONFIG = "config.json"
WEIGHTS_INDEX = "model.safetensors.index.json"
# The files from which transformers' AutoTokenizer can read a chat template.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# The schema's patterns, checked again here: these strings reach a URL and a filesystem path.
_REPO = re.compile(r"(?!.*(--|\.\.))[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_REVISION = re.compile(r"[0-9a-f]{40}")
_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ImportConfig:
    """The import stage's view, typed (``init`` in the schema says what each field means)."""

    repo: str = view_field("init.repo")
    revision: str = view_field("init.revision")
    files: dict[str, str] = view_field("init.files")


def check_config(config: ImportConfig) -> None:
    """Refuse what the schema refuses, again: the stage may be run on a hand-made view."""
    if not _REPO.fullmatch(config.repo):
        raise RecipeError(f"init.repo: {config.repo!r} is not a Hugging Face repository id")
    if not _REVISION.fullmatch(config.revision):
        raise RecipeError(f"init.revision: {config.revision!r} is not a 40-hex commit")
    for name, sha in config.files.items():
        if not _FILE.fullmatch(name):
            raise RecipeError(f"init.files: {name!r} is not a relative path inside the repository")
        if not _SHA256.fullmatch(sha):
            raise RecipeError(f"init.files.{name}: {sha!r} is not a sha256")


def check_file_set(files: dict[str, str]) -> None:
    """Refuse a file set ``sft`` could not start from, before a byte is copied."""
    where = "init.files"
    if CONFIG not in files:
        raise StageInputError(f"{where}: lists no {CONFIG}; a checkpoint needs its model config")
    if not any(name.endswith(".safetensors") for name in files):
        raise StageInputError(f"{where}: lists no .safetensors weights")
    if not any(name in files for name in TOKENIZER_FILES):
        raise StageInputError(
            f"{where}: lists none of {', '.join(TOKENIZER_FILES)}; sft needs the tokenizer"
        )


def resolve_snapshot(snapshot: str, project: Path) -> Path:
    """``init.snapshot`` as a directory: absolute as written, else relative to the project."""
    path = Path(snapshot)
    return path if path.is_absolute() else project / path


def check_index(model_dir: Path, files: dict[str, str]) -> None:
    """Every shard the safetensors index names must be a pinned file."""
    if WEIGHTS_INDEX not in files:
        return
    try:
        index = json.loads((model_dir / WEIGHTS_INDEX).read_text(encoding="utf-8"))
        shards = set(index["weight_map"].values())
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
        raise StageInputError(
            f"init.files: {WEIGHTS_INDEX}: not a safetensors index ({exc})"
        ) from exc
    missing = sorted(shards - set(files))
    if missing:
        raise StageInputError(
            f"init.files: {WEIGHTS_INDEX} names shards the recipe does not pin: {missing}"
        )


def check_tokenizer(model_dir: Path) -> None:
    """The tokenizer must load and carry what sft's chat format needs (as ``load_checkpoint``)."""
    from transformers import AutoTokenizer

    from openrecipe.data import chat

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise StageInputError(f"init.files: the tokenizer does not load ({exc})") from exc
    if tokenizer.chat_template is None:
        raise StageInputError(
            "init.files: the tokenizer has no chat template (pin tokenizer_config.json with a "
            "chat_template, or chat_template.jinja); sft formats every sample with it"
        )
    if chat.THINK_CLOSE not in tokenizer.get_vocab():
        raise StageInputError(
            f"init.files: the tokenizer has no {chat.THINK_CLOSE} token; sft's reasoning "
            "format needs it"
        )


def download(config: ImportConfig, snapshot: Path, project: Path) -> None:
    """Fetch exactly the pinned files of the pinned revision into ``snapshot`` (online only,
    and only inside the project: a stage writes nothing elsewhere on disk)."""
    check_download_allowed(
        snapshot,
        project,
        missing=f"init.snapshot: {snapshot} does not exist",
        release=f"{config.repo}@{config.revision}",
        command=f"hf download {config.repo} --revision {config.revision} --local-dir {snapshot}",
        stage="import",
    )
    from huggingface_hub import snapshot_download

    snapshot_download(
        repo_id=config.repo,
        revision=config.revision,
        allow_patterns=sorted(config.files),
        local_dir=snapshot,
    )


# What a checkpoint is loaded from (config, weights and index, tokenizer, vocabulary and merges,
# chat template); a snapshot's model card, pictures and remote code are not.
CHECKPOINT_SUFFIXES = (".json", ".safetensors", ".jinja", ".model", ".txt", ".tiktoken")


def snapshot_pins(directory: Path, everything: bool = False) -> dict[str, str]:
    """{relative name: sha256} of the checkpoint files in a snapshot directory, sorted: what
    ``openrecipe import-hashes`` prints for ``init.files``. Hidden entries (the ``.cache/``
    that ``hf download --local-dir`` writes, ``.gitattributes``) are never listed; other files
    only with ``everything`` unless their suffix is a checkpoint file's."""
    from openrecipe.hashing import sha256_file

    if not directory.is_dir():
        raise StageInputError(f"{directory}: not a directory")
    pins = {}
    for path in sorted(directory.rglob("*")):
        name = path.relative_to(directory).as_posix()
        if not path.is_file() or not _FILE.fullmatch(name):
            continue
        if everything or path.name.endswith(CHECKPOINT_SUFFIXES):
            pins[name] = sha256_file(path)
    return pins


def pins_yaml(pins: dict[str, str]) -> str:
    """The ``files:`` block of ``init:``, each hash quoted (YAML would read an all-digit one as
    a number)."""
    return "files:\n" + "".join(f'  {name}: "{sha}"\n' for name, sha in pins.items())


def run(ctx: StageContext) -> dict[str, Any]:
    if ctx.recipe.get("init") is None:
        raise RecipeError(
            f"recipe {ctx.recipe.name}: no init: section; the import stage copies the released "
            "checkpoint it names (docs/import.md)"
        )
    config = decode_view(ImportConfig, ctx.config, ctx.stage)
    check_config(config)
    check_file_set(config.files)
    snapshot = resolve_snapshot(str(ctx.recipe.get("init.snapshot")), ctx.project)
    if not snapshot.exists():
        download(config, snapshot, ctx.project)
    if not snapshot.is_dir():
        raise StageInputError(f"init.snapshot: {snapshot} is not a directory")
    model_dir = ctx.out / MODEL_DIR
    for name, expected in sorted(config.files.items()):
        copy_verified(snapshot / name, model_dir / name, expected, f"init.files: {name}")
    check_index(model_dir, config.files)
    check_tokenizer(model_dir)
    return {
        "repo": config.repo,
        "revision": config.revision,
        "files": len(config.files),
        "bytes": sum((model_dir / name).stat().st_size for name in config.files),
        "external_inputs": [
            {
                "name": config.repo,
                "kind": "hf_model",
                "repo": config.repo,
                "revision": config.revision,
                "files": dict(sorted(config.files.items())),
                # one digest for the pin as a whole (trace lists raw inputs by it)
                "sha256": hash_obj(config.files),
                "uri": f"https://huggingface.co/{config.repo}/tree/{config.revision}",
            }
        ],
    }
