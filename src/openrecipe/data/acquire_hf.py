"""``acquire_hf``: an ``hf_dataset`` source (a pinned Hugging Face dataset revision) as documents.

The full-size recipes read NVIDIA's released pretraining datasets: Parquet files of a dataset
repository at one commit. Each source entry pins the repository (``dataset``), the commit
(``revision``, 40 hex digits) and every file it takes with its sha256 (``files: {path in the
repository: sha256}``; the Hub's LFS object id of a file is its sha256), and names the column
that holds the text (``text_field``).

Jobs. One job per pinned file (``--part <source>/<file id>``, output ``data/hf/<source>/<file
id>/``), then one gather job per source (``--part <source>``, output ``data/raw/<source>/``, the
directory ``curate`` reads, exactly as the ``acquire`` stage writes it). A file is the unit of
work because it is the unit a snapshot is downloaded and pinned in, and the unit a killed run
loses: a rerun after a kill redoes only the files whose job had not finished (Snakemake sees
their manifests missing). The file id is the first 16 hex digits of the sha256 of the file's
path in the repository, so adding or removing a file never renames another file's job.

A file job's view is its source entry with ``files`` narrowed to that one file, so pinning a new
file reruns no other file job; the gather's view is the whole entry. ``snapshot`` (where the
bytes sit) is in neither view: moving a snapshot reruns nothing, and the pinned hashes decide
whether the bytes are the same. This narrowing is why the stage is its own stage and not a kind
of ``acquire`` (whose code identity every committed result depends on): the CLI runs it with
``part_recipe`` (see ``prepare``).

A file job: finds the file in the snapshot directory (``snapshot``, absolute or
project-relative; the layout ``hf download --repo-type dataset --revision R --local-dir D``
writes), or, when the file is absent and the network is allowed, downloads exactly that file
with ``huggingface_hub`` into the snapshot (only inside the project; never when
``HF_HUB_OFFLINE`` is set: then it refuses by name and opens no connection). It copies the file
into its temporary directory while hashing it, refuses a sha256 other than the pinned one (file,
expected, found), and reads the copy, never the snapshot, so the bytes read are the bytes
checked. Rows are read one row group at a time and written in batches of ``BATCH_ROWS``: memory
is bounded by one row group's text column, whatever the file's size.

Output record (sorted keys, UTF-8), the ``acquire`` fields plus where it came from::

    {"id": "<source>/<path>#<row>", "source", "lang", "license",
     "url_or_path": "hf://datasets/<dataset>@<revision>/<path>#<row>",
     "dataset", "revision", "file": "<path>", "row": <row index in the file>, "text"}

A null text is written as null (``curate`` quarantines it as ``field_not_string`` and counts it),
not dropped here: every row of a pinned file is accounted for downstream.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe import pinned_files
from openrecipe.errors import RecipeError, SourceError, StageInputError
from openrecipe.hashing import hash_obj
from openrecipe.manifest import read_manifest
from openrecipe.pinned_files import check_download_allowed
from openrecipe.recipe import Recipe
from openrecipe.stage import StageContext

# A few helpers repeat ``openrecipe.train.import_checkpoint``'s rather than import them: a stage
# that imported that module would rerun (terabytes of reading) whenever import's code changed.

STAGE = "acquire_hf"
DOCS_NAME = "docs.jsonl"  # what curate reads from a raw source directory
RAW_DIR = "data/raw"
FILES_DIR = "data/hf"  # one directory per (source, file) job
SNAPSHOTS_DIR = "data/hf-snapshots"  # where a source without `snapshot:` is downloaded
BATCH_ROWS = 1024
_CHUNK = 1 << 20
# The schema's patterns, checked again: these strings reach a URL and filesystem paths.
_DATASET = re.compile(r"(?!.*(--|\.\.))[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_REVISION = re.compile(r"[0-9a-f]{40}")
_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*\.parquet")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_ID = re.compile(r"[0-9a-f]{16}")
_SOURCE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def resolve_snapshot(snapshot: str, project: Path) -> Path:
    """A snapshot directory: absolute as written, else relative to the project."""
    path = Path(snapshot)
    return path if path.is_absolute() else project / path


@dataclass(frozen=True)
class HfSource:
    """One ``hf_dataset`` source entry, checked (the schema says what each field means)."""

    name: str
    dataset: str
    revision: str
    files: dict[str, str]
    text_field: str
    lang: str
    license: str
    subsets: tuple[str, ...]

    def where(self, field: str = "") -> str:
        return f"data.sources[{self.name}]" + (f".{field}" if field else "")

    def uri(self, path: str) -> str:
        return f"hf://datasets/{self.dataset}@{self.revision}/{path}"

    def download_command(self, snapshot: Path | str) -> str:
        return (
            f"hf download {self.dataset} --repo-type dataset --revision {self.revision} "
            f"--local-dir {snapshot}"
        )


def file_id(path: str) -> str:
    """A file's job id: the first 16 hex digits of the sha256 of its path in the repository."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:16]


def check_source(entry: dict[str, Any]) -> HfSource:
    """The entry as an ``HfSource``, or a refusal naming the field. Refuses an entry with no
    ``files:`` pin: an unpinned dataset is never read (``openrecipe dataset-hashes`` prints the
    block for a snapshot)."""
    name = entry.get("name", "?")
    where = f"data.sources[{name}]"
    if entry.get("kind") != "hf_dataset":
        raise RecipeError(f"{where}: kind {entry.get('kind')!r}; {STAGE} reads hf_dataset sources")
    dataset, revision = entry.get("dataset", ""), entry.get("revision", "")
    if not _DATASET.fullmatch(dataset):
        raise RecipeError(f"{where}.dataset: {dataset!r} is not a Hugging Face dataset id")
    if not _REVISION.fullmatch(revision):
        raise RecipeError(
            f"{where}.revision: {revision!r} is not a 40-hex commit; a branch or tag can move, "
            "so the released data is read only at a pinned commit"
        )
    files = entry.get("files") or {}
    if not files:
        raise RecipeError(
            f"{where}.files: no files pinned; list each Parquet file of {dataset}@{revision} "
            "with its sha256 (`openrecipe dataset-hashes <snapshot>` prints the block)"
        )
    subsets = tuple(entry.get("subsets") or ())
    for path, sha in files.items():
        if not _FILE.fullmatch(path):
            raise RecipeError(
                f"{where}.files: {path!r} is not a relative path of a .parquet file inside the "
                "repository"
            )
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise RecipeError(f"{where}.files.{path}: {sha!r} is not a sha256")
        if subsets and not any(path.startswith(subset.rstrip("/") + "/") for subset in subsets):
            raise RecipeError(
                f"{where}.files: {path} lies in none of the source's subsets {list(subsets)}"
            )
    text_field = entry.get("text_field")
    if not text_field:
        raise RecipeError(f"{where}.text_field: required; the Parquet column holding the text")
    return HfSource(
        name=name,
        dataset=dataset,
        revision=revision,
        files=dict(sorted(files.items())),
        text_field=text_field,
        lang=entry["lang"],
        license=entry["license"],
        subsets=subsets,
    )


# --------------------------------------------------------------------------------------------
# Parts, views and output directories (shared by the CLI and data.smk)


def split_part(part: str | None) -> tuple[str, str | None]:
    """``<source>`` (the gather) or ``<source>/<file id>`` (a file job)."""
    name, _, fid = (part or "").partition("/")
    if not _SOURCE.fullmatch(name) or (fid and not _FILE_ID.fullmatch(fid)):
        raise RecipeError(
            f"--part {part!r}: {STAGE} takes <source> (the gather) or <source>/<16-hex file id>"
        )
    return name, fid or None


def _entry(data: dict[str, Any], name: str) -> dict[str, Any]:
    chosen = [s for s in data["data"]["sources"] if s["name"] == name]
    if not chosen:
        raise RecipeError(f"data.sources: no source named {name!r}")
    if chosen[0]["kind"] != "hf_dataset":
        raise RecipeError(
            f"data.sources[{name}]: kind {chosen[0]['kind']!r} is acquired by the acquire stage, "
            f"not {STAGE}"
        )
    return chosen[0]


def file_ids(data: dict[str, Any], name: str) -> dict[str, str]:
    """{file id: path in the repository} of a source's pinned files (none when unpinned)."""
    return {file_id(path): path for path in sorted(_entry(data, name).get("files") or {})}


def part_view(data: dict[str, Any], part: str) -> dict[str, Any]:
    """The view of one job: the source's entry without ``snapshot``, narrowed to one file for a
    file job (see the module docstring)."""
    name, fid = split_part(part)
    entry = copy.deepcopy(_entry(data, name))
    entry.pop("snapshot", None)
    if fid is not None:
        paths = file_ids(data, name)
        if fid not in paths:
            raise RecipeError(f"data.sources[{name}].files: no pinned file has id {fid}")
        entry["files"] = {paths[fid]: entry["files"][paths[fid]]}
    return {"data.sources": [entry]}


def part_view_hash(data: dict[str, Any], part: str) -> str:
    return hash_obj(part_view(data, part))


@dataclass(frozen=True)
class PartRecipe(Recipe):
    """A recipe whose ``acquire_hf`` view is narrowed to one job (``part_view``); every other
    stage's view is the recipe's own. ``run_stage`` takes the view from the recipe."""

    def view(self, stage: str, part: str | None = None) -> dict[str, Any]:
        if stage == STAGE:
            return part_view(self.data, part or "")
        return super().view(stage, part)


def out_dir(part: str) -> str:
    """The project-relative output directory of a job."""
    name, fid = split_part(part)
    return f"{RAW_DIR}/{name}" if fid is None else f"{FILES_DIR}/{name}/{fid}"


def gather_inputs(data: dict[str, Any], name: str, project: Path) -> dict[str, Path]:
    """{input name: file job directory} the gather of ``name`` reads, one per pinned file."""
    return {f"file_{fid}": project / FILES_DIR / name / fid for fid in file_ids(data, name)}


def prepare(
    recipe: Recipe, part: str | None, out: str | Path, project: Path, inputs: dict[str, Path]
) -> tuple[Recipe, Path, dict[str, Path]]:
    """What the CLI runs a job with: the narrowed recipe, the checked ``--out`` (exactly the
    job's directory, reached through no symlink) and the inputs (a file job takes none; the
    gather takes its file jobs' directories, computed here rather than passed on a command
    line that thousands of files would overflow)."""
    name, fid = split_part(part)
    part = str(part)
    part_view(recipe.data, part)  # refuses an unknown source or file id by name
    check_source(_entry(recipe.data, name))  # an unpinned source, before any input is read
    expected = Path(os.path.normpath(project / out_dir(part)))
    given = Path(out)
    lexical = Path(os.path.normpath(given if given.is_absolute() else project / given))
    if lexical != expected or lexical.resolve() != project.resolve() / out_dir(part):
        raise RecipeError(
            f"--out {str(out)!r}: {STAGE} --part {part} writes only {out_dir(part)} "
            "(reached through no symlink)"
        )
    if inputs:
        raise RecipeError(f"{STAGE}: takes no --input; the gather finds its file jobs itself")
    wanted = {} if fid is not None else gather_inputs(recipe.data, name, project)
    narrowed = PartRecipe(data=recipe.data, files=recipe.files, origins=recipe.origins)
    return narrowed, lexical, wanted


# --------------------------------------------------------------------------------------------
# A file job


def snapshot_dir(ctx: StageContext, source: HfSource) -> Path:
    """``snapshot`` of the source entry (not in the view), or the default download place."""
    entry = _entry(ctx.recipe.data, source.name)
    default = f"{SNAPSHOTS_DIR}/{source.dataset}/{source.revision}"
    return resolve_snapshot(str(entry.get("snapshot") or default), ctx.project)


def fetch_file(source: HfSource, path: str, snapshot: Path, project: Path) -> None:
    """Download exactly one pinned file into the snapshot: online only, inside the project only."""
    check_download_allowed(
        snapshot,
        project,
        missing=f"{source.where('files')}: {path}: missing from the snapshot {snapshot}",
        release=f"{source.dataset}@{source.revision}",
        command=source.download_command(snapshot),
        stage=STAGE,
        error=SourceError,
    )
    from huggingface_hub import hf_hub_download

    hf_hub_download(
        repo_id=source.dataset,
        repo_type="dataset",
        filename=path,
        revision=source.revision,
        local_dir=snapshot,
    )


def copy_verified(source: HfSource, path: str, snapshot: Path, target: Path) -> None:
    """Copy the snapshot's file to ``target``, hashing what is written; refuse another sha256."""
    pinned_files.copy_verified(
        snapshot / path, target, source.files[path], f"{source.where('files')}: {path}", SourceError
    )


def write_documents(source: HfSource, path: str, parquet: Path, out: Path) -> dict[str, int]:
    """Each row of ``parquet`` as a document, one row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = f"{source.where('files')}: {path}"
    try:
        reader = pq.ParquetFile(parquet)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"{where}: not a readable Parquet file ({exc})") from exc
    schema = reader.schema_arrow
    if source.text_field not in schema.names:
        raise SourceError(
            f"{where}: no column {source.text_field!r} ({source.where('text_field')}); "
            f"columns: {schema.names}"
        )
    kind = schema.field(source.text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise SourceError(f"{where}: column {source.text_field!r} holds {kind}, not text (string)")
    labels = {
        "source": source.name,
        "lang": source.lang,
        "license": source.license,
        "dataset": source.dataset,
        "revision": source.revision,
        "file": path,
    }
    row = chars = nulls = 0
    with open(out, "w", encoding="utf-8", newline="\n") as handle:
        for group in range(reader.num_row_groups):
            table = reader.read_row_group(group, columns=[source.text_field])
            for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                lines = []
                for text in batch.column(0).to_pylist():
                    record = {
                        **labels,
                        "id": f"{source.name}/{path}#{row}",
                        "url_or_path": f"{source.uri(path)}#{row}",
                        "row": row,
                        "text": text,
                    }
                    lines.append(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
                    row += 1
                    chars += len(text) if text is not None else 0
                    nulls += text is None
                handle.writelines(lines)
            del table
    return {"docs": row, "chars": chars, "null_texts": nulls, "row_groups": reader.num_row_groups}


def _external(source: HfSource, files: dict[str, str]) -> dict[str, Any]:
    return {
        "name": source.name,
        "kind": "hf_dataset",
        "dataset": source.dataset,
        "revision": source.revision,
        "files": dict(sorted(files.items())),
        # one digest for the pin as a whole (trace lists raw inputs by it)
        "sha256": next(iter(files.values())) if len(files) == 1 else hash_obj(files),
        "uri": f"https://huggingface.co/datasets/{source.dataset}/tree/{source.revision}",
    }


def acquire_file(ctx: StageContext, source: HfSource) -> dict[str, Any]:
    (path,) = source.files
    snapshot = snapshot_dir(ctx, source)
    if not (snapshot / path).is_file():
        fetch_file(source, path, snapshot, ctx.project)
    # Scratch inside the stage's temporary directory, removed before the outputs are hashed (a
    # killed job's copy goes with that directory when the next run clears its leftovers).
    scratch = ctx.out / ".scratch"
    scratch.mkdir()
    try:
        local = scratch / "file.parquet"
        copy_verified(source, path, snapshot, local)
        counts = write_documents(source, path, local, ctx.out / DOCS_NAME)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "source": source.name,
        "file": path,
        **counts,
        "external_inputs": [_external(source, source.files)],
    }


# --------------------------------------------------------------------------------------------
# The gather


def gather(ctx: StageContext, source: HfSource) -> dict[str, Any]:
    """Concatenate the file jobs' documents in path order into the raw source directory,
    refusing a file job made for another pin (its view must be the one this recipe gives it)."""
    docs = chars = nulls = 0
    with open(ctx.out / DOCS_NAME, "wb") as out:
        for path in source.files:
            fid = file_id(path)
            directory = ctx.input(f"file_{fid}")
            manifest = read_manifest(directory)
            expected = part_view(ctx.recipe.data, f"{source.name}/{fid}")
            if manifest.get("stage") != STAGE or manifest.get("config_view") != expected:
                raise StageInputError(
                    f"{source.where('files')}: {path}: {directory} was made for another pin "
                    f"(stage {manifest.get('stage')!r}, part {manifest.get('part')!r}); rerun "
                    f"its job ({STAGE} --part {source.name}/{fid})"
                )
            summary = manifest.get("summary", {})
            docs += int(summary.get("docs", 0))
            chars += int(summary.get("chars", 0))
            nulls += int(summary.get("null_texts", 0))
            with open(directory / DOCS_NAME, "rb") as part:
                shutil.copyfileobj(part, out, _CHUNK)
    return {
        "source": source.name,
        "kind": "hf_dataset",
        "files": len(source.files),
        "docs": docs,
        "chars": chars,
        "null_texts": nulls,
        "external_inputs": [_external(source, source.files)],
    }


def run(ctx: StageContext) -> dict[str, Any]:
    _, fid = split_part(ctx.part)
    (entry,) = ctx.config["data.sources"]
    source = check_source(entry)
    return gather(ctx, source) if fid is None else acquire_file(ctx, source)


# --------------------------------------------------------------------------------------------
# `openrecipe dataset-hashes`


def snapshot_pins(directory: Path, subsets: list[str] | None = None) -> dict[str, str]:
    """{path: sha256} of the Parquet files of a dataset snapshot (hidden entries such as the
    ``.cache/`` that ``hf download`` writes never listed), only those under ``subsets`` if
    given: what ``openrecipe dataset-hashes`` prints for a source's ``files:``."""
    from openrecipe.hashing import sha256_file

    if not directory.is_dir():
        raise SourceError(f"{directory}: not a directory")
    prefixes = tuple(s.rstrip("/") + "/" for s in subsets or ())
    pins = {}
    for path in sorted(directory.rglob("*.parquet")):
        name = path.relative_to(directory).as_posix()
        if path.is_file() and _FILE.fullmatch(name) and (not prefixes or name.startswith(prefixes)):
            pins[name] = sha256_file(path)
    return pins
