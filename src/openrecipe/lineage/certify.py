"""``openrecipe certify --absent <selector> <checkpoint>``: exact token accounting of a model's
training data by document, as a certificate an auditor can recheck.

Which tokens trained the checkpoint is reconstructed from recorded facts, never estimated:

- pretraining: the loader reads sequences in pack order, ``steps * micro_batch * grad_accum`` of
  them (``SequentialBatches``); the count comes from the pretrain manifest's config and is
  checked against the loader position saved in ``checkpoint/state.json``. The pack's
  ``sidecar.jsonl`` names, per sequence, the document segments its ``seq_length + 1`` tokens
  came from (``[doc_id, source, start, n_tokens]``), checked against the lengths in
  ``train.idx``. Document licence and language come from the blend streams the pack read.
- SFT: the sample stream (order, reasoning mode, truncation) is a pure function of the stage
  seed, so it is replayed with ``openrecipe.train.sft_samples.sample_stream``/``encode``; each sample
  counts its tokens as trained (cut at ``seq_length``). The replay is checked against the
  counts the SFT manifest recorded (samples per mode, loss tokens), so a replay that diverged
  from the run is refused rather than believed.
- An imported base (recipe ``init:``, the ``import`` stage): its weights were trained on data
  outside this lineage, so nothing about them can be certified. The certificate then counts the
  training after the import (SFT, RL), says so in an ``imported`` entry (repository, revision,
  pinned files), and an imported checkpoint itself is refused.
- A derived base (recipe ``derive:``, the ``distill`` stage): the walk continues through the
  distill manifest into the parent recipe's runs, so the parent's pretraining is counted (the
  child inherits its weights), then the distillation itself: the first ``steps * micro_batch *
  grad_accum`` sequences of the parent's pack plus the calibration sequences the pruning scored
  (``pruning.json``), each occurrence counted. Where two recipes' stages share a name (each
  has a ``reasoning``), the one nearest the certified checkpoint is the chain's.
- RL: prompts are read in file order (``grpo.run``); each prompt's tokens count once per
  generation (every rollout's forward pass holds the prompt). Completions are the model's own
  samples, not data, and are reported apart.
- DPO: the pairs it trained on are in its ``pairs.jsonl`` (relied on by hash), read per step as
  ``dpo.run`` reads them (:func:`dpo_tokens`).

A record that lacks a field the selector names (a reasoning set written before it carried
``lang``) cannot be shown absent: its tokens are reported as ``unknown`` and the verdict is then not "absent".

The certificate's body (everything but ``certificate_sha256``) is hashed, and it lists the
sha256 of every file it relied on, so ``verify-certificate`` rechecks the files, the hash and
the counts (by recomputing them). ``OUT.json`` is a signed attestation: a DSSE envelope holding
an in-toto Statement about the checkpoint's files whose predicate is the certificate
(``lineage/predicates.py``); ``verify-certificate`` refuses it unless a trusted key signed it,
and says who did.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrecipe.data.exclusion import SELECTOR_FIELDS
from openrecipe.errors import LineageError, StageInputError
from openrecipe.hashing import hash_obj, sha256_file
from openrecipe.lineage.attestation import (
    SigningKey,
    Trust,
    Verified,
    open_attestation,
    sign,
    subject_digests,
    write_envelope,
)
from openrecipe.lineage.predicates import (
    ABSENCE_PREDICATE,
    certificate_from_statement,
    certificate_statement,
)
from openrecipe.lineage.walk import open_upstream, stage_inputs
from openrecipe.manifest import MANIFEST_NAME, read_manifest, verify_stage_dir
from openrecipe.paths import find_project_root
from openrecipe.registry import STAGES, checkpoint_stages

CERTIFICATE_KIND = "openrecipe.absence-certificate"
CERTIFICATE_VERSION = 1
_CHECKPOINTED = tuple(checkpoint_stages().values())  # pretrain, sft, rl, then dpo
# The stage an imported release stands in for (pretrain), and the one standing in (import).
BASE_STAGE = _CHECKPOINTED[0]
# A derived base trains after its parent's pretraining and before sft.
DISTILL_STAGE = "distill"
TRAINING_ORDER = (BASE_STAGE, DISTILL_STAGE, *_CHECKPOINTED[1:])
IMPORT_STAGE = next(
    s.name for s in STAGES.values() if s.stands_in_for == BASE_STAGE and s.active_when == "init"
)
IMPORTED_SCOPE = (
    "the imported weights were trained outside this lineage, on data this certificate cannot "
    "see; it counts only the training after the import"
)


@dataclass(frozen=True)
class Selector:
    """Documents matching every named field (``ids``: membership in a set of document ids)."""

    fields: tuple[tuple[str, str], ...]
    ids: frozenset[str] | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.fields)
        if self.ids is not None:
            out["ids_sha256"] = hash_obj(sorted(self.ids))
            out["ids_count"] = len(self.ids)
        return out

    def match(self, record: dict[str, Any]) -> bool | None:
        """True/False, or None when the record lacks a field the selector names."""
        for name, value in self.fields:
            if record.get(name) is None:
                return None
            if record[name] != value:
                return False
        if self.ids is not None:
            if record.get("id") is None:
                return None
            return record["id"] in self.ids
        return True


def parse_selector(text: str, base: Path | None = None) -> Selector:
    """``source=X``, ``license=Y``, ``lang=Z``, ``ids=FILE`` (one id a line), comma-joined = all."""
    fields: dict[str, str] = {}
    ids: frozenset[str] | None = None
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or key not in SELECTOR_FIELDS or not value:
            raise LineageError(
                f"selector {text!r}: expected KEY=VALUE[,KEY=VALUE] with KEY in {SELECTOR_FIELDS}"
            )
        if key == "ids":
            path = Path(value) if base is None or Path(value).is_absolute() else base / value
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise LineageError(f"selector ids={value}: cannot read {path} ({exc})") from exc
            ids = frozenset(line.strip() for line in lines if line.strip())
        else:
            fields[key] = value
    return Selector(tuple(sorted(fields.items())), ids)


# --------------------------------------------------------------------------------------------
# The manifest chain


@dataclass
class Tally:
    """Tokens counted for one training stage: all, matching the selector, and of documents
    whose metadata cannot decide the selector (which then cannot prove absence)."""

    total: int = 0
    matched: int = 0
    unknown: int = 0
    documents: set[str] = field(default_factory=set)

    def add(self, verdict: bool | None, doc_id: str, n_tokens: int) -> None:
        self.total += n_tokens
        if verdict is None:
            self.unknown += n_tokens
        elif verdict:
            self.matched += n_tokens
            self.documents.add(doc_id)

    def counts(self) -> dict[str, int]:
        return {
            "tokens": self.total,
            "matched_tokens": self.matched,
            "unknown_tokens": self.unknown,
            "matched_documents": len(self.documents),
        }


class Chain:
    """The stage directories behind a checkpoint, found by following manifest inputs, each
    verified against its manifest before anything in it is believed."""

    def __init__(self, checkpoint: Path) -> None:
        self.project = find_project_root(checkpoint)
        self.stages: dict[str, Path] = {}
        self.relied: dict[str, str] = {}  # project-relative path -> sha256
        self.sources: set[str] = set()  # raw sources the lineage acquired
        try:
            head = read_manifest(checkpoint.resolve())
        except StageInputError as exc:
            raise LineageError(str(exc)) from exc
        self._walk(checkpoint.resolve(), head)

    def _walk(self, head_dir: Path, head: dict[str, Any]) -> None:
        """Record every stage upstream of ``head_dir``, breadth first, so that where a derived
        lineage holds two stages of one name (the child's reasoning and the parent's), the one
        nearest the checkpoint is recorded. Each stage's files are verified, and an upstream
        is opened only by the hash its consumer recorded."""
        queue = [(head_dir, head)]
        while queue:
            stage_dir, manifest = queue.pop(0)
            problems = verify_stage_dir(stage_dir)
            if problems:
                raise LineageError(
                    "refusing to certify from altered files:\n  " + "\n  ".join(problems)
                )
            stage = manifest["stage"]
            if stage in self.stages:
                continue
            self.stages[stage] = stage_dir
            self.relied[self.rel(stage_dir / "manifest.json")] = sha256_file(
                stage_dir / "manifest.json"
            )
            for item in stage_inputs(manifest):
                if item["stage"] == "acquire":
                    self.sources.add(str(item["name"]).removeprefix("raw_"))
                else:
                    upstream = open_upstream(self.project, item, stage_dir / MANIFEST_NAME)
                    queue.append((upstream.dir, upstream.manifest))

    def rel(self, path: Path) -> str:
        path = path.resolve()
        if self.project in path.parents:
            return path.relative_to(self.project).as_posix()
        return path.as_posix()

    def rely(self, path: Path) -> Path:
        """Record (and return) a file the certificate depends on."""
        self.relied[self.rel(path)] = sha256_file(path)
        return path

    def manifest(self, stage: str) -> dict[str, Any]:
        return read_manifest(self.stages[stage])


# --------------------------------------------------------------------------------------------
# Pretraining


def _doc_meta(blend: Path, chain: Chain) -> dict[str, dict[str, Any]]:
    """id -> {id, source, license, lang} for every document of the blend streams."""
    meta = {}
    for path in sorted((blend / "streams").glob("*.jsonl")):
        with open(chain.rely(path), encoding="utf-8") as handle:
            for line in handle:
                doc = json.loads(line)
                meta[str(doc["id"])] = {k: doc.get(k) for k in ("id", "source", "license", "lang")}
    return meta


def pretrain_tokens(chain: Chain, selector: Selector) -> dict[str, Any]:
    from openrecipe.data.indexed import IndexedDataset

    manifest = chain.manifest("pretrain")
    view = manifest["config_view"]["pretrain"]
    consumed = view["steps"] * view["micro_batch_size"] * view["grad_accum"]
    state_path = chain.stages["pretrain"] / "checkpoint" / "state.json"
    if state_path.is_file():
        position = json.loads(chain.rely(state_path).read_text(encoding="utf-8"))["loader"][
            "position"
        ]
        if position != consumed:
            raise LineageError(
                f"{state_path}: loader position {position} != steps x micro_batch x grad_accum "
                f"= {consumed}; the checkpoint is not the end of the configured run"
            )
    pack = chain.stages["pack"]
    chain.rely(pack / "train.bin")
    lengths = IndexedDataset(chain.rely(pack / "train.idx").with_suffix("")).sequence_lengths
    if len(lengths) < consumed:
        raise LineageError(f"{pack}/train.idx: {len(lengths)} sequences, {consumed} consumed")
    # the pack sidecar names each document's source; the other fields need the blend streams
    needs_meta = any(name != "source" for name, _ in selector.fields)
    meta = _doc_meta(chain.stages["blend"], chain) if needs_meta else {}
    tally = Tally()
    by_source: Counter[str] = Counter()
    sidecar = chain.rely(pack / "sidecar.jsonl")
    read = 0
    with open(sidecar, encoding="utf-8") as handle:
        for index, line in zip(range(consumed), handle, strict=False):
            read += 1
            record = json.loads(line)
            if record["seq"] != index:
                raise LineageError(f"{sidecar}:{index + 1}: seq {record['seq']}, expected {index}")
            seq_tokens = sum(segment[3] for segment in record["segments"])
            if seq_tokens != int(lengths[index]):
                raise LineageError(
                    f"{sidecar}:{index + 1}: segments hold {seq_tokens} tokens, train.idx "
                    f"says sequence {index} has {int(lengths[index])}"
                )
            for doc_id, source, _start, n_tokens in record["segments"]:
                doc = meta.get(doc_id, {"id": doc_id, "source": source})
                tally.add(selector.match(doc), doc_id, n_tokens)
                by_source[source] += n_tokens
    if read != consumed:
        raise LineageError(f"{sidecar}: {read} sequences, {consumed} consumed")
    return {
        "sequences": consumed,
        **tally.counts(),
        "tokens_by_source": dict(sorted(by_source.items())),
    }


def distill_tokens(chain: Chain, selector: Selector) -> dict[str, Any]:
    """The distillation pass of a derived base: its pack prefix and its calibration sequences,
    read from the parent's pack the distill manifest pinned (see the module docstring)."""
    manifest = chain.manifest(DISTILL_STAGE)
    view = manifest["config_view"]["pretrain"]
    consumed = view["steps"] * view["micro_batch_size"] * view["grad_accum"]
    pruning = chain.stages[DISTILL_STAGE] / "pruning.json"
    calibration = json.loads(chain.rely(pruning).read_text(encoding="utf-8"))["calibration"]
    data = next(i for i in stage_inputs(manifest) if i["name"] == "data")
    pack = chain.stages["pack"]
    if read_manifest(pack)["manifest_sha256"] != data["manifest_sha256"]:
        raise LineageError(
            f"{chain.rel(pack)}: not the pack the distill stage read ({data['path']}, manifest "
            f"{data['manifest_sha256']})"
        )
    uses = Counter({i: 1 for i in range(consumed)})
    uses.update(int(i) for i in calibration["sequences"])
    needs_meta = any(name != "source" for name, _ in selector.fields)
    meta = _doc_meta(chain.stages["blend"], chain) if needs_meta else {}
    tally = Tally()
    by_source: Counter[str] = Counter()
    sidecar = chain.rely(pack / "sidecar.jsonl")
    seen = 0
    with open(sidecar, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if index not in uses:
                continue
            seen += 1
            for doc_id, source, _start, n_tokens in json.loads(line)["segments"]:
                doc = meta.get(doc_id, {"id": doc_id, "source": source})
                for _ in range(uses[index]):
                    tally.add(selector.match(doc), doc_id, n_tokens)
                by_source[source] += n_tokens * uses[index]
    if seen != len(uses):
        raise LineageError(f"{sidecar}: {seen} of the {len(uses)} sequences distill read")
    return {
        "sequences": consumed,
        "calibration_sequences": len(calibration["sequences"]),
        **tally.counts(),
        "tokens_by_source": dict(sorted(by_source.items())),
    }


# --------------------------------------------------------------------------------------------
# SFT and RL


def _tokenizer(model_dir: Path, chain: Chain) -> Any:
    from transformers import AutoTokenizer

    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (model_dir / name).is_file():
            chain.rely(model_dir / name)
    return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)


def _records(chain: Chain) -> list[dict[str, Any]]:
    from openrecipe.data.reasoning import read_split

    chain.rely(chain.stages["reasoning"] / "train.jsonl")
    return read_split(chain.stages["reasoning"], "train")


def sft_tokens(chain: Chain, selector: Selector) -> dict[str, Any]:
    from openrecipe.train.sft_samples import encode, sample_stream

    manifest = chain.manifest("sft")
    view, summary = manifest["config_view"], manifest["summary"]
    steps, batch, seq_length = view["sft.steps"], view["sft.batch_size"], view["sft.seq_length"]
    records = _records(chain)
    base = (
        chain.stages.get(DISTILL_STAGE)
        or chain.stages.get(BASE_STAGE)
        or chain.stages[str(IMPORT_STAGE)]
    )
    tokenizer = _tokenizer(base / "model", chain)
    stream = sample_stream(
        records, manifest["seed"], view["sft.reasoning_off_fraction"], view["sft.truncate_fraction"]
    )
    modes: Counter[str] = Counter()
    tally, loss_tokens = Tally(), 0
    for _ in range(steps):
        samples = []
        for record, mode in (next(stream) for _ in range(batch)):
            modes[mode.split(":")[0]] += 1
            samples.append((record, *encode(tokenizer, record, mode)))
        width = min(seq_length, max(len(ids) for _, ids, _ in samples))
        for record, ids, labels in samples:
            n = min(width, len(ids))  # collate's cut: right-padded to width, no more
            loss_tokens += sum(1 for label in labels[1:n] if label != -100)
            tally.add(selector.match(record), record["id"], n)
    replay = {
        "samples_full": modes["full"],
        "samples_reasoning_off": modes["off"],
        "samples_truncated": modes["cut"],
        "loss_tokens": loss_tokens,
    }
    recorded = {key: summary.get(key) for key in replay}
    if replay != recorded:
        raise LineageError(
            f"{chain.stages['sft']}/manifest.json: replaying the SFT sample stream gives "
            f"{replay}, the run recorded {recorded}; the training code changed since, so the "
            "tokens cannot be attributed exactly"
        )
    return {
        "samples": steps * batch,
        **tally.counts(),
        "replay_checked": sorted(replay),
    }


def rl_tokens(chain: Chain, selector: Selector) -> dict[str, Any]:
    from openrecipe.data.chat import encode_prompt

    manifest = chain.manifest("rl")
    rl = manifest["config_view"]["rl"]
    records = _records(chain)
    tokenizer = _tokenizer(chain.stages["sft"] / "model", chain)
    n_prompts, n_gen = rl["prompts_per_step"], rl["generations_per_prompt"]
    if manifest["summary"].get("rollouts") != rl["steps"] * n_prompts * n_gen:
        raise LineageError(f"{chain.stages['rl']}/manifest.json: rollouts do not match the config")
    tally = Tally()
    for step in range(rl["steps"]):
        for i in range(n_prompts):
            record = records[(step * n_prompts + i) % len(records)]
            n = len(encode_prompt(tokenizer, record["question"], reasoning=True)) * n_gen
            tally.add(selector.match(record), record["id"], n)
    return {
        "prompts": rl["steps"] * n_prompts,
        "generations_per_prompt": n_gen,
        **tally.counts(),
        "note": "prompt tokens x generations; completions are model samples, not data",
    }


def dpo_tokens(chain: Chain, selector: Selector) -> dict[str, Any]:
    """The DPO stage's training data: each step's pairs (``pairs.jsonl``, in order, wrapping
    around as ``dpo.run`` reads them), each pair counted once per step it is in. With pairs
    from rollouts the data is the prompt (run with the chosen and with the rejected completion:
    its tokens count twice), attributed to its reasoning record by id; the completions are the
    policy's samples, not data. With a preference dataset the whole pair is data (prompt twice,
    both completions), attributed by the metadata its line carries (none: unknown)."""
    manifest = chain.manifest("dpo")
    view, summary = manifest["config_view"], manifest["summary"]
    dpo = view["dpo"]
    pairs_path = chain.stages["dpo"] / "pairs.jsonl"
    chain.rely(pairs_path)
    pairs = [json.loads(line) for line in pairs_path.read_text(encoding="utf-8").splitlines()]
    if not pairs or len(pairs) != summary.get("pairs"):
        raise LineageError(
            f"{pairs_path}: {len(pairs)} pairs, the run recorded {summary.get('pairs')}"
        )
    rollouts = dpo["pairs"]["source"] == "rollouts"
    by_id = {record["id"]: record for record in _records(chain)} if rollouts else {}
    tally = Tally()
    for step in range(dpo["steps"]):
        for i in range(dpo["batch_size"]):
            pair = pairs[(step * dpo["batch_size"] + i) % len(pairs)]
            prompt = 2 * len(pair["prompt_tokens"])
            if rollouts:
                tally.add(selector.match(by_id[pair["id"]]), pair["id"], prompt)
            else:
                n = prompt + len(pair["chosen_tokens"]) + len(pair["rejected_tokens"])
                doc = pair.get("id") or f"{pair['file']}:{pair['line']}"
                tally.add(selector.match(pair), doc, n)
    return {
        "pairs": len(pairs),
        "pairs_trained": dpo["steps"] * dpo["batch_size"],
        "pairs_source": dpo["pairs"]["source"],
        **tally.counts(),
        "note": (
            "prompt tokens x 2 (chosen, rejected); completions are model samples, not data"
            if rollouts
            else "prompt tokens x 2 + chosen + rejected tokens of the pinned preference dataset"
        ),
    }


# --------------------------------------------------------------------------------------------
# The certificate


def _refuse_unknown_sources(selector: Selector, chain: Chain, checkpoint: Path) -> None:
    """A source the lineage never acquired is trivially absent: certifying it would hand an
    auditor a proof of a typo (``source=austin``). Refuse it, naming the sources there are."""
    if not chain.sources:
        return  # nothing acquired in this lineage to compare with (an imported checkpoint)
    for name, value in selector.fields:
        if name == "source" and value not in chain.sources:
            raise LineageError(
                f"selector source={value}: no such source in the lineage of {checkpoint} "
                f"(sources: {', '.join(sorted(chain.sources))})"
            )


def imported_base(chain: Chain) -> dict[str, Any] | None:
    """The released checkpoint the lineage starts from (None: it pretrained its own base)."""
    if IMPORT_STAGE not in chain.stages:
        return None
    manifest = chain.manifest(IMPORT_STAGE)
    pinned = next(i for i in manifest["inputs"] if i.get("kind") == "hf_model")
    return {
        "dir": chain.rel(chain.stages[IMPORT_STAGE]),
        "manifest_sha256": manifest["manifest_sha256"],
        "repo": pinned["repo"],
        "revision": pinned["revision"],
        "files": pinned["files"],
        "certified": False,
        "note": IMPORTED_SCOPE,
    }


def certify(selector_text: str, checkpoint: Path) -> dict[str, Any]:
    """The certificate body for ``checkpoint`` (a pretrain, sft or rl stage directory)."""
    checkpoint = checkpoint.resolve()
    selector = parse_selector(selector_text, Path.cwd())
    chain = Chain(checkpoint)
    head = chain.manifest(read_manifest(checkpoint)["stage"])
    imported = imported_base(chain)
    if head["stage"] == IMPORT_STAGE and imported is not None:
        raise LineageError(
            f"{checkpoint}: the imported release {imported['repo']}@{imported['revision']}; "
            "the data that trained it is outside what certify can certify (certify a "
            "checkpoint trained from it, which covers the training after the import)"
        )
    if head["stage"] not in TRAINING_ORDER:
        raise LineageError(f"{checkpoint}: a {head['stage']} stage, not a checkpoint")
    _refuse_unknown_sources(selector, chain, checkpoint)
    phases: dict[str, Any] = {}
    counters = {
        "pretrain": pretrain_tokens,
        DISTILL_STAGE: distill_tokens,
        "sft": sft_tokens,
        "rl": rl_tokens,
        "dpo": dpo_tokens,
    }
    for stage in TRAINING_ORDER:
        if stage in chain.stages:
            phases[stage] = counters[stage](chain, selector)
    matched = sum(p["matched_tokens"] for p in phases.values())
    unknown = sum(p["unknown_tokens"] for p in phases.values())
    body = {
        "kind": CERTIFICATE_KIND,
        "version": CERTIFICATE_VERSION,
        "selector": selector_text,
        "selector_fields": selector.describe(),
        "checkpoint": {
            "dir": chain.rel(checkpoint),
            "stage": head["stage"],
            "manifest_sha256": head["manifest_sha256"],
        },
        "training": phases,
        "matched_tokens": matched,
        "unknown_tokens": unknown,
        "total_tokens": sum(p["tokens"] for p in phases.values()),
        "absent": matched == 0 and unknown == 0,
        "relied_on": dict(sorted(chain.relied.items())),
    }
    if imported is not None:  # only then: certificates of pretrained lineages keep their body
        body["imported"] = imported
    return {**body, "certificate_sha256": hash_obj(body)}


def render_markdown(cert: dict[str, Any]) -> str:
    verdict = "ABSENT" if cert["absent"] else "PRESENT" if cert["matched_tokens"] else "UNPROVEN"
    if cert["absent"] and cert.get("imported"):
        verdict = "ABSENT after the imported base"
    lines = [
        f"# Data exclusion certificate: `{cert['selector']}`",
        "",
        f"- checkpoint: `{cert['checkpoint']['dir']}` ({cert['checkpoint']['stage']}, manifest "
        f"`{cert['checkpoint']['manifest_sha256']}`)",
        f"- verdict: **{verdict}**: {cert['matched_tokens']} of {cert['total_tokens']} training "
        f"tokens come from matching documents ({cert['unknown_tokens']} unattributable)",
    ]
    imported = cert.get("imported")
    if imported:
        lines.append(
            f"- imported base: `{imported['repo']}` at `{imported['revision']}` "
            f"({len(imported['files'])} pinned files, `{imported['dir']}`): NOT CERTIFIED; "
            f"{imported['note']}"
        )
    lines += [
        "",
        "| phase | tokens | matched | unknown | matching docs |",
        "|---|---:|---:|---:|---:|",
    ]
    for phase in sorted(cert["training"], key=TRAINING_ORDER.index):  # JSON keys come sorted
        counts = cert["training"][phase]
        lines.append(
            f"| {phase} | {counts['tokens']} | {counts['matched_tokens']} | "
            f"{counts['unknown_tokens']} | {counts['matched_documents']} |"
        )
    lines += ["", "## Files relied on (sha256)", ""]
    lines += [f"- `{path}` `{sha}`" for path, sha in cert["relied_on"].items()]
    lines += ["", f"certificate_sha256: `{cert['certificate_sha256']}`", ""]
    return "\n".join(lines)


def write_certificate(
    cert: dict[str, Any], out: Path, key: SigningKey, project: Path
) -> tuple[Path, Path]:
    """Sign ``cert`` with ``key``: ``OUT.json`` is the envelope, ``OUT.md`` the text for people."""
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    md_path = out.with_suffix(".md")
    write_envelope(json_path, sign(certificate_statement(project, cert), key))
    md_path.write_text(render_markdown(cert), encoding="utf-8")
    return json_path, md_path


def open_certificate(path: Path, trust: Trust) -> Verified:
    """The certificate attestation in ``path``, refused (``AttestationError``) unless it is
    signed by a trusted key; ``.signer`` says who signed."""
    verified = open_attestation(path, trust, ABSENCE_PREDICATE)
    certificate_from_statement(verified, path)
    return verified


def verify_certificate(path: Path, trust: Trust) -> list[str]:
    """Problems with a certificate (empty = it holds), once its signature is accepted
    (``open_certificate``): its hash, the checkpoint files it is about, every file it relied
    on, the markdown beside it, and the counts recomputed from the run."""
    verified = open_certificate(path, trust)
    cert = verified.predicate
    problems = []
    body = {k: v for k, v in cert.items() if k != "certificate_sha256"}
    if hash_obj(body) != cert.get("certificate_sha256"):
        problems.append(f"{path}: certificate_sha256 does not match its body; it was altered")
    project = find_project_root(path.parent)
    relied = subject_digests(verified.statement) | body.get("relied_on", {})
    for rel, sha in sorted(relied.items()):
        file = project / rel
        if not file.is_file():
            problems.append(f"{rel}: missing (relied on by {path.name})")
        elif sha256_file(file) != sha:
            problems.append(f"{rel}: sha256 differs from the certificate's {sha[:12]}…")
    md_path = path.with_suffix(".md")
    if md_path.is_file() and render_markdown(cert) != md_path.read_text(encoding="utf-8"):
        problems.append(f"{md_path}: does not match the certificate JSON")
    checkpoint = body.get("checkpoint")
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("dir"), str):
        return [*problems, f"{path}: names no checkpoint directory"]
    try:
        if problems:  # walk the chain by hash anyway: it names the upstream that moved
            Chain(project / checkpoint["dir"])
            return problems
        again = certify(cert["selector"], project / checkpoint["dir"])
    except LineageError as exc:
        return [*problems, f"{path}: the certified lineage does not hold: {exc}"]
    if again != cert:
        problems.append(
            f"{path}: recomputing the counts gives {again['matched_tokens']} "
            f"matched tokens, certificate says {cert['matched_tokens']}"
        )
    return problems
