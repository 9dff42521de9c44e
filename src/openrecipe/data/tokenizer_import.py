"""``tokenizer_import``: a released tokenizer as a pinned input (recipe ``tokenizer.pretrained``).

The full-size releases train with NVIDIA's own tokenizer, not a BPE trained on the blend. In a
recipe that sets ``tokenizer.pretrained`` (repository, 40-hex revision, ``files: {name:
sha256}``, ``snapshot``), this stage stands in for ``tokenizer`` (registry ``stands_in_for``):
``pack``, ``pretrain`` and everything after them read its directory instead, and the blend and
curation still run (``pack`` reads the blend).

It copies each pinned file from the snapshot directory (what ``hf download --local-dir``
writes) into its output, hashing while it writes, and refuses a missing file or another sha256
by name (file, expected, found). The output has the tokenizer stage's layout (the files
``save_pretrained`` writes, at the top of the directory), so ``AutoTokenizer.from_pretrained``
loads it where pack and pretrain load the trained one. It then loads it and refuses, by name, a
tokenizer without the bos, eos or pad token (pack ends documents with eos, pretrain masks pad).
Whether the release has a chat template and ``<think>``/``</think>`` is recorded in the
summary; ``sft`` refuses a model without them when it needs them.

``snapshot`` is not in the view: where the bytes sit is not what they are. When it does not
exist the stage downloads exactly the pinned files with ``huggingface_hub`` into it, unless
``HF_HUB_OFFLINE`` is set (a named refusal, no connection) or it lies outside the project.
The small helpers repeat ``import_checkpoint``'s rather than import them, so that editing the
checkpoint import never reruns this stage (and pack and pretraining after it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.errors import RecipeError, StageInputError
from openrecipe.hashing import hash_obj
from openrecipe.pinned_files import check_download_allowed, copy_verified
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field

WHERE = "tokenizer.pretrained"
THINK = ("<think>", "</think>")
# The schema's patterns, checked again: these strings reach a URL and filesystem paths.
_REPO = re.compile(r"(?!.*(--|\.\.))[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_REVISION = re.compile(r"[0-9a-f]{40}")
_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class TokenizerImportConfig:
    """The stage's view, typed (``tokenizer.pretrained`` in the schema)."""

    repo: str = view_field("tokenizer.pretrained.repo")
    revision: str = view_field("tokenizer.pretrained.revision")
    files: dict[str, str] = view_field("tokenizer.pretrained.files")


def check_config(config: TokenizerImportConfig) -> None:
    """Refuse what the schema refuses, again: the stage may be run on a hand-made view."""
    if not _REPO.fullmatch(config.repo):
        raise RecipeError(f"{WHERE}.repo: {config.repo!r} is not a Hugging Face repository id")
    if not _REVISION.fullmatch(config.revision):
        raise RecipeError(f"{WHERE}.revision: {config.revision!r} is not a 40-hex commit")
    if not config.files:
        raise RecipeError(f"{WHERE}.files: no files pinned")
    for name, sha in config.files.items():
        if not _FILE.fullmatch(name):
            raise RecipeError(f"{WHERE}.files: {name!r} is not a file at the top of the repository")
        if not _SHA256.fullmatch(sha):
            raise RecipeError(f"{WHERE}.files.{name}: {sha!r} is not a sha256")
    if "tokenizer.json" not in config.files:
        raise StageInputError(
            f"{WHERE}.files: lists no tokenizer.json; pack and pretrain load the fast tokenizer"
        )


def _snapshot(ctx: StageContext) -> Path:
    path = Path(str(ctx.recipe.get(f"{WHERE}.snapshot")))
    return path if path.is_absolute() else ctx.project / path


def download(config: TokenizerImportConfig, snapshot: Path, project: Path) -> None:
    """Fetch exactly the pinned files of the pinned revision (online, inside the project only)."""
    check_download_allowed(
        snapshot,
        project,
        missing=f"{WHERE}.snapshot: {snapshot} does not exist",
        release=f"{config.repo}@{config.revision}",
        command=f"hf download {config.repo} --revision {config.revision} --local-dir {snapshot}",
        stage="tokenizer_import",
    )
    from huggingface_hub import snapshot_download

    snapshot_download(
        repo_id=config.repo,
        revision=config.revision,
        allow_patterns=sorted(config.files),
        local_dir=snapshot,
    )


def check_tokenizer(directory: Path) -> dict[str, Any]:
    """Load it as pack and pretrain do; refuse a missing bos, eos or pad token by name."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise StageInputError(f"{WHERE}.files: the tokenizer does not load ({exc})") from exc
    roles = {}
    for role in ("bos", "eos", "pad"):
        token = getattr(tokenizer, f"{role}_token")
        if token is None:
            raise StageInputError(
                f"{WHERE}.files: the tokenizer has no {role} token ({role}_token in "
                "tokenizer_config.json or special_tokens_map.json); pack and pretrain need it"
            )
        roles[role] = {"token": token, "id": tokenizer.convert_tokens_to_ids(token)}
    vocab = tokenizer.get_vocab()
    return {
        "vocab_size": len(tokenizer),
        "special_tokens": roles,
        "chat_template": tokenizer.chat_template is not None,
        "think_tokens": {token: token in vocab for token in THINK},
    }


def run(ctx: StageContext) -> dict[str, Any]:
    if ctx.recipe.get(WHERE) is None:
        raise RecipeError(
            f"recipe {ctx.recipe.name}: no {WHERE}: section; the tokenizer_import stage copies "
            "the released tokenizer it names"
        )
    config = decode_view(TokenizerImportConfig, ctx.config, ctx.stage)
    check_config(config)
    snapshot = _snapshot(ctx)
    if not snapshot.exists():
        download(config, snapshot, ctx.project)
    if not snapshot.is_dir():
        raise StageInputError(f"{WHERE}.snapshot: {snapshot} is not a directory")
    for name, expected in sorted(config.files.items()):
        copy_verified(snapshot / name, ctx.out / name, expected, f"{WHERE}.files: {name}")
    facts = check_tokenizer(ctx.out)
    return {
        "repo": config.repo,
        "revision": config.revision,
        "files": len(config.files),
        **facts,
        "external_inputs": [
            {
                "name": config.repo,
                "kind": "hf_tokenizer",
                "repo": config.repo,
                "revision": config.revision,
                "files": dict(sorted(config.files.items())),
                "sha256": hash_obj(config.files),
                "uri": f"https://huggingface.co/{config.repo}/tree/{config.revision}",
            }
        ],
    }
