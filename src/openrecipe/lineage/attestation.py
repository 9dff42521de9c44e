"""Signed attestations: in-toto Statements in DSSE envelopes, signed with ed25519 OpenSSH keys.

Hashes in a manifest detect accidents; anyone can recompute them after editing a file. A
release lock or an absence certificate is therefore a *signed* statement of what it attests:

- the Statement is in-toto v1 (``https://in-toto.io/Statement/v1``): ``subject`` names each
  attested file with its sha256, ``predicateType``/``predicate`` say what is claimed about them;
- it travels in a DSSE envelope (``payloadType: application/vnd.in-toto+json``, the payload in
  base64, ``signatures: [{keyid, sig}]``); the signature covers the DSSE pre-authentication
  encoding ``PAE = "DSSEv1 <len(type)> <type> <len(body)> <body>"``, so neither the payload
  nor its type can be swapped after signing;
- keys are ed25519 in OpenSSH format (``openrecipe keygen`` or an existing unencrypted
  ``ssh-keygen -t ed25519`` key); ``keyid`` is the key's SHA256 fingerprint as ``ssh-keygen -l``
  prints it. ``keyid`` is only a hint (DSSE says so): every trusted key is tried.

Reads: a private key (to sign), public keys given one per ``.pub`` file or as an OpenSSH
``allowed_signers`` file (who is trusted). Writes: a new key pair, envelope files (atomically).
Every failure is an ``AttestationError`` naming the file. All cryptography is the
``cryptography`` package's; this module only frames bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from openrecipe.errors import AttestationError
from openrecipe.hashing import canonical_json

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
KEY_TYPE = "ssh-ed25519"
KEY_ENV = "OPENRECIPE_SIGNING_KEY"
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


# --------------------------------------------------------------------------------------------
# Keys


def default_key_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the user's signing key lives: ``$OPENRECIPE_SIGNING_KEY``, else
    ``$XDG_CONFIG_HOME/openrecipe/signing_key`` (``~/.config`` when unset). Only the CLI calls
    this; library functions take the path as an argument."""
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV):
        return Path(env[KEY_ENV]).expanduser()
    config = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return config / "openrecipe" / "signing_key"


def pub_path(key_path: Path) -> Path:
    """``KEY.pub`` beside ``KEY``, as ssh-keygen names it."""
    return key_path.with_name(key_path.name + ".pub")


def fingerprint(key: Ed25519PublicKey) -> str:
    """``SHA256:<base64, unpadded>`` of the OpenSSH key blob: what ``ssh-keygen -l`` prints."""
    blob = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    digest = hashlib.sha256(base64.b64decode(blob.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class PublicKey:
    """A trusted (or signing) public key and who it is: the ``.pub`` comment or the
    allowed_signers principal; ``origin`` is where it was read, for messages."""

    key: Ed25519PublicKey
    comment: str
    origin: str

    @property
    def keyid(self) -> str:
        return fingerprint(self.key)

    def openssh(self) -> str:
        line = self.key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode("ascii")
        return f"{line} {self.comment}".rstrip()

    def describe(self) -> str:
        return f"{self.keyid} ({self.comment})" if self.comment else self.keyid

    def same_key(self, other: PublicKey) -> bool:
        return self.keyid == other.keyid


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    public: PublicKey
    path: Path


def parse_public_key(text: str, origin: str) -> PublicKey:
    """One OpenSSH public-key line, ``ssh-ed25519 BASE64 [comment]``."""
    fields = text.split(maxsplit=2)
    if len(fields) < 2:
        raise AttestationError(f"{origin}: expected 'ssh-ed25519 BASE64 [comment]', got {text!r}")
    if fields[0] != KEY_TYPE:
        raise AttestationError(
            f"{origin}: a {fields[0]} key; openrecipe signs and verifies with {KEY_TYPE} only"
        )
    try:
        key = serialization.load_ssh_public_key(f"{fields[0]} {fields[1]}".encode("ascii"))
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise AttestationError(f"{origin}: not a valid {KEY_TYPE} public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):  # pragma: no cover - the type field decides
        raise AttestationError(f"{origin}: not an ed25519 key")
    return PublicKey(key, fields[2].strip() if len(fields) > 2 else "", origin)


def _content_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AttestationError(f"{path}: cannot read ({exc})") from exc
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def read_public_key(path: Path) -> PublicKey:
    """A ``.pub`` file: its first key line."""
    lines = _content_lines(path)
    if not lines:
        raise AttestationError(f"{path}: no public key in the file")
    number, line = lines[0]
    return parse_public_key(line, f"{path}:{number}")


def read_allowed_signers(path: Path) -> list[PublicKey]:
    """An OpenSSH ``allowed_signers`` file, the subset ``principal ssh-ed25519 BASE64 [comment]``
    (``#`` comments and blank lines skipped). Options (``namespaces=``, ``valid-after=``, ...)
    are refused rather than ignored: a restriction silently dropped would widen trust."""
    keys = []
    for number, line in _content_lines(path):
        fields = line.split(maxsplit=1)
        where = f"{path}:{number}"
        if len(fields) < 2:
            raise AttestationError(f"{where}: expected 'principal {KEY_TYPE} BASE64', got {line!r}")
        principal, rest = fields
        key_type = rest.split()[0]
        if key_type != KEY_TYPE and not key_type.startswith(("ssh-", "ecdsa-", "sk-")):
            raise AttestationError(
                f"{where}: options ({key_type}) are not supported; "
                f"write 'principal {KEY_TYPE} BASE64'"
            )
        found = parse_public_key(rest, where)
        keys.append(PublicKey(found.key, principal, where))
    if not keys:
        raise AttestationError(f"{path}: no signer listed")
    return keys


def load_signing_key(path: Path) -> SigningKey:
    """An unencrypted OpenSSH ed25519 private key; its comment comes from ``KEY.pub`` when that
    file is there (and must then hold the same key)."""
    if not path.is_file():
        raise AttestationError(
            f"{path}: no signing key there; create one with `openrecipe keygen` (writes "
            f"{path} unless --out says otherwise), or pass --key with an unencrypted OpenSSH "
            f"ed25519 key such as ~/.ssh/id_ed25519"
        )
    mode = path.stat().st_mode & 0o777
    if os.name == "posix" and mode & 0o077:
        raise AttestationError(
            f"{path}: permissions {mode:04o} are too open for a private key; run `chmod 600 {path}`"
        )
    try:
        private = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except TypeError as exc:  # cryptography's signal for a passphrase-protected key
        raise AttestationError(
            f"{path}: the key is protected by a passphrase, which openrecipe cannot ask for; "
            "use a dedicated unencrypted key (`openrecipe keygen`)"
        ) from exc
    except (ValueError, UnsupportedAlgorithm, OSError) as exc:
        raise AttestationError(f"{path}: not an OpenSSH private key ({exc})") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise AttestationError(
            f"{path}: a {type(private).__name__.removesuffix('PrivateKey')} key; openrecipe "
            f"signs with ed25519 only (`ssh-keygen -t ed25519` or `openrecipe keygen`)"
        )
    public = PublicKey(private.public_key(), "", str(path))
    beside = pub_path(path)
    if beside.is_file():
        listed = read_public_key(beside)
        if not listed.same_key(public):
            raise AttestationError(
                f"{beside}: holds {listed.keyid}, but {path} is the private half of "
                f"{public.keyid}; the two files are not a pair"
            )
        public = PublicKey(public.key, listed.comment, str(beside))
    return SigningKey(private, public, path)


def generate_key(path: Path, comment: str) -> SigningKey:
    """Write a new ed25519 key pair: ``path`` (OpenSSH private key, mode 0600, in a 0700
    directory when it creates one) and ``path.pub``. Never overwrites an existing key: losing
    a signing key orphans every attestation it made."""
    public_path = pub_path(path)
    for existing in (path, public_path):
        if existing.exists():
            raise AttestationError(
                f"{existing}: already exists; refusing to overwrite a key (move it away, or "
                "write the new key elsewhere with --out)"
            )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    key = SigningKey(private, PublicKey(private.public_key(), comment, str(public_path)), path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, pem)
    finally:
        os.close(fd)
    try:
        _write_atomic(public_path, key.public.openssh() + "\n")
    except OSError:
        path.unlink()  # no private key without its public half
        raise
    return key


# --------------------------------------------------------------------------------------------
# Trust


@dataclass(frozen=True)
class Trust:
    """The public keys whose signatures are accepted."""

    keys: tuple[PublicKey, ...]

    def describe(self) -> str:
        return ", ".join(key.describe() for key in self.keys)


def load_trust(trusted_keys: Sequence[Path], allowed_signers: Path | None, own_key: Path) -> Trust:
    """Keys from ``--trusted-key`` files and an ``--allowed-signers`` file; when neither is
    given, the user's own key (``own_key``'s ``.pub``): you trust what you signed yourself."""
    keys = [read_public_key(path) for path in trusted_keys]
    if allowed_signers is not None:
        keys += read_allowed_signers(allowed_signers)
    if not keys:
        default = pub_path(own_key)
        if not default.is_file():
            raise AttestationError(
                f"no trusted key: pass the signer's public key with --trusted-key KEY.pub or "
                f"--allowed-signers FILE (the default, your own {default}, does not exist)"
            )
        keys = [read_public_key(default)]
    return Trust(tuple(keys))


# --------------------------------------------------------------------------------------------
# Statements and envelopes


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is signed, type and body both bound."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(body), body)


def statement(
    subjects: Mapping[str, str], predicate_type: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    """An in-toto v1 Statement about ``subjects`` ({name: sha256}), in name order."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": name, "digest": {"sha256": sha}} for name, sha in sorted(subjects.items())
        ],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


def subject_digests(stmt: Mapping[str, Any]) -> dict[str, str]:
    """{name: sha256} of a Statement's subjects."""
    return {item["name"]: item["digest"]["sha256"] for item in stmt["subject"]}


def sign(stmt: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """The DSSE envelope of ``stmt`` signed by ``key``. The payload is canonical JSON and
    ed25519 is deterministic, so one statement and one key give one envelope, byte for byte."""
    body = canonical_json(stmt).encode("utf-8")
    signature = key.private.sign(pae(PAYLOAD_TYPE, body))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode("ascii"),
        "signatures": [
            {"keyid": key.public.keyid, "sig": base64.b64encode(signature).decode("ascii")}
        ],
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_envelope(path: Path, envelope: Mapping[str, Any]) -> None:
    """Replace ``path`` with the envelope in one step: a reader sees the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, json.dumps(envelope, indent=2, sort_keys=True) + "\n")


def _b64decode(text: Any, what: str, where: str) -> bytes:
    """Standard or URL-safe base64, padded or not (DSSE: verifiers MUST accept either)."""
    if not isinstance(text, str):
        raise AttestationError(f"{where}: {what} is not a base64 string")
    try:
        padded = text.translate(_URLSAFE_TO_STANDARD) + "=" * (-len(text) % 4)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AttestationError(f"{where}: {what} is not valid base64 ({exc})") from exc


def read_envelope(path: Path) -> dict[str, Any]:
    """The DSSE envelope in ``path``, its shape checked (not yet its signature)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AttestationError(f"{path}: cannot read ({exc})") from exc
    return check_envelope(data, path)


def check_envelope(data: Any, path: Path) -> dict[str, Any]:
    """``data`` (parsed from ``path``) if it has the shape of a signed DSSE envelope."""
    if not isinstance(data, dict) or "payloadType" not in data or "payload" not in data:
        raise AttestationError(
            f"{path}: not a signed attestation (no DSSE envelope); an unsigned file of the old "
            "format, or not an attestation. Re-create it with the command that wrote it "
            "(`openrecipe lock`, `openrecipe certify --out`), which now signs it"
        )
    signatures = data.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise AttestationError(f"{path}: the envelope carries no signature; it is unsigned")
    for index, item in enumerate(signatures):
        if not isinstance(item, dict) or not isinstance(item.get("sig"), str):
            raise AttestationError(f"{path}: signatures[{index}] has no 'sig' string")
    return data


def verify_envelope(
    envelope: Mapping[str, Any], trust: Trust, where: str
) -> tuple[bytes, PublicKey]:
    """(payload bytes, the trusted key that signed them); refuses anything else. The payload
    type is checked before the payload is parsed, and the signature before either is used."""
    if envelope["payloadType"] != PAYLOAD_TYPE:
        raise AttestationError(
            f"{where}: payloadType {envelope['payloadType']!r}, expected {PAYLOAD_TYPE!r}"
        )
    body = _b64decode(envelope["payload"], "payload", where)
    message = pae(envelope["payloadType"], body)
    claimed = []
    for index, item in enumerate(envelope["signatures"]):
        signature = _b64decode(item["sig"], f"signatures[{index}].sig", where)
        claimed.append(str(item.get("keyid") or "<no keyid>"))
        for candidate in trust.keys:
            try:
                candidate.key.verify(signature, message)
            except InvalidSignature:
                continue
            return body, candidate
    trusted_ids = {key.keyid for key in trust.keys}
    if any(keyid in trusted_ids for keyid in claimed):
        raise AttestationError(
            f"{where}: the signature by {', '.join(claimed)} does not verify: the payload or "
            "the signature was changed after signing"
        )
    raise AttestationError(
        f"{where}: signed by {', '.join(claimed)}, which is not a trusted key (trusted: "
        f"{trust.describe()}); if you trust that signer, pass its public key with "
        "--trusted-key KEY.pub or list it in --allowed-signers"
    )


def _parse_statement(body: bytes, where: str) -> dict[str, Any]:
    try:
        stmt = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AttestationError(f"{where}: payload is not JSON ({exc})") from exc
    if not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE:
        raise AttestationError(f"{where}: payload is not an in-toto Statement ({STATEMENT_TYPE})")
    subjects = stmt.get("subject")
    if not isinstance(subjects, list) or not isinstance(stmt.get("predicate"), dict):
        raise AttestationError(f"{where}: the Statement lacks a subject list or a predicate")
    for index, item in enumerate(subjects):
        digest = item.get("digest") if isinstance(item, dict) else None
        sha = digest.get("sha256") if isinstance(digest, dict) else None
        if not isinstance(item.get("name"), str) or not isinstance(sha, str):
            raise AttestationError(f"{where}: subject[{index}] lacks a name or a sha256 digest")
    return stmt


@dataclass(frozen=True)
class Verified:
    """A Statement whose signature verified, and who signed it."""

    statement: dict[str, Any]
    signer: PublicKey

    @property
    def predicate(self) -> dict[str, Any]:
        return self.statement["predicate"]


def open_attestation(path: Path, trust: Trust, predicate_type: str) -> Verified:
    """Read, verify and parse the attestation in ``path``; refuse unless a trusted key signed
    it and it carries ``predicate_type``."""
    body, signer = verify_envelope(read_envelope(path), trust, str(path))
    stmt = _parse_statement(body, str(path))
    if stmt.get("predicateType") != predicate_type:
        raise AttestationError(
            f"{path}: predicateType {stmt.get('predicateType')!r}, expected {predicate_type!r}"
        )
    return Verified(stmt, signer)


def statement_unverified(envelope: Any, path: Path) -> dict[str, Any]:
    """The Statement in an envelope read from ``path`` WITHOUT checking the signature: for
    hash-only checks (``verify``) and display. Never base a trust decision on it."""
    envelope = check_envelope(envelope, path)
    return _parse_statement(_b64decode(envelope["payload"], "payload", str(path)), str(path))


def read_statement_unverified(path: Path) -> dict[str, Any]:
    """``statement_unverified`` of the envelope in ``path``."""
    return statement_unverified(read_envelope(path), path)
