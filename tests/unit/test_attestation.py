"""DSSE envelopes, in-toto Statements and OpenSSH ed25519 keys (lineage/attestation.py): the
spec's encodings byte for byte, a sign/verify round trip, every refusal (unsigned, edited,
wrong key, wrong type), and keys made by ``ssh-keygen`` and by ``openrecipe keygen``."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from openrecipe.cli import main
from openrecipe.errors import AttestationError
from openrecipe.lineage.attestation import (
    PAYLOAD_TYPE,
    STATEMENT_TYPE,
    PublicKey,
    SigningKey,
    Trust,
    default_key_path,
    generate_key,
    load_signing_key,
    load_trust,
    open_attestation,
    pae,
    read_allowed_signers,
    read_envelope,
    sign,
    statement,
    verify_envelope,
    write_envelope,
)

SSH_KEYGEN = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(SSH_KEYGEN is None, reason="ssh-keygen not installed")
PREDICATE = "https://openrecipe.dev/attestation/test/v1"

# RFC 8032 section 7.1, TEST 1: a published ed25519 key, so the signature below is a known answer
# (ed25519 is deterministic). It is also the key of the DSSE test vector "single-signature".
RFC8032_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
MINIMAL_PAYLOAD = b'{"_type":"https://in-toto.io/Statement/v1"}'
MINIMAL_SIG = (
    "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA=="
)


def _rfc8032_key() -> SigningKey:
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_SEED))
    return SigningKey(private, PublicKey(private.public_key(), "rfc8032", "test"), Path("x"))


def _signed(tmp_path: Path, key: SigningKey, name: str = "a.json") -> Path:
    stmt = statement({"results/t/metrics.json": "ab" * 32}, PREDICATE, {"claim": 1})
    path = tmp_path / name
    write_envelope(path, sign(stmt, key))
    return path


def _edit_payload(path: Path, change) -> None:
    envelope = json.loads(path.read_text())
    stmt = json.loads(base64.b64decode(envelope["payload"]))
    change(stmt)
    envelope["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    path.write_text(json.dumps(envelope))


# --------------------------------------------------------------------------------------------
# Encodings


def test_pae_matches_the_dsse_spec_example() -> None:
    # protocol.md, "Test Vectors": PAYLOAD_TYPE http://example.com/HelloWorld, body "hello world"
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae(PAYLOAD_TYPE, b"") == b"DSSEv1 28 application/vnd.in-toto+json 0 "
    # LEN counts UTF-8 bytes, not characters
    assert pae("t\u00e4", b"x").startswith(b"DSSEv1 3 t\xc3\xa4 1 x")


def test_signature_is_the_known_answer_and_either_base64_alphabet_verifies() -> None:
    key = _rfc8032_key()
    envelope = sign({"_type": STATEMENT_TYPE}, key)
    assert base64.b64decode(envelope["payload"]) == MINIMAL_PAYLOAD
    assert envelope["signatures"][0]["sig"] == MINIMAL_SIG
    assert envelope["payloadType"] == PAYLOAD_TYPE
    trust = Trust((key.public,))
    assert verify_envelope(envelope, trust, "vector")[0] == MINIMAL_PAYLOAD
    urlsafe = {
        **envelope,
        "payload": base64.urlsafe_b64encode(MINIMAL_PAYLOAD).decode().rstrip("="),
        "signatures": [{"sig": MINIMAL_SIG.replace("+", "-").replace("/", "_")}],
    }
    assert verify_envelope(urlsafe, trust, "vector")[0] == MINIMAL_PAYLOAD
    # the signature binds the type: the same bytes under another payloadType are refused
    with pytest.raises(AttestationError, match="payloadType"):
        verify_envelope({**envelope, "payloadType": "application/json"}, trust, "vector")


# --------------------------------------------------------------------------------------------
# Round trip and refusals


def test_sign_verify_round_trip_names_the_signer(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "k" / "signing_key", "alice@lab")
    path = _signed(tmp_path, key)
    envelope = json.loads(path.read_text())
    assert set(envelope) == {"payloadType", "payload", "signatures"}
    assert envelope["signatures"][0]["keyid"] == key.public.keyid
    verified = open_attestation(path, Trust((key.public,)), PREDICATE)
    assert verified.statement["_type"] == STATEMENT_TYPE
    assert verified.statement["subject"] == [
        {"name": "results/t/metrics.json", "digest": {"sha256": "ab" * 32}}
    ]
    assert verified.predicate == {"claim": 1}
    assert verified.signer.describe() == f"{key.public.keyid} (alice@lab)"
    # deterministic: the same statement and key give the same file
    again = _signed(tmp_path, key, "b.json")
    assert again.read_bytes() == path.read_bytes()


def test_edited_unsigned_untrusted_and_mistyped_attestations_are_refused(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "signing_key", "alice")
    other = generate_key(tmp_path / "other_key", "mallory")
    trust = Trust((key.public,))
    path = _signed(tmp_path, key)

    _edit_payload(path, lambda stmt: stmt["predicate"].update(claim=2))
    with pytest.raises(AttestationError, match=r"a\.json: the signature by SHA256:.* does not"):
        open_attestation(path, trust, PREDICATE)

    path = _signed(tmp_path, key)
    envelope = json.loads(path.read_text())
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    path.write_text(json.dumps(envelope))
    with pytest.raises(AttestationError, match="does not verify"):
        open_attestation(path, trust, PREDICATE)

    path = _signed(tmp_path, other)  # a consistent attestation, by a key nobody trusts
    with pytest.raises(AttestationError, match="not a trusted key") as refused:
        open_attestation(path, trust, PREDICATE)
    assert other.public.keyid in str(refused.value) and str(path) in str(refused.value)

    path = _signed(tmp_path, key)
    with pytest.raises(AttestationError, match="predicateType"):
        open_attestation(path, trust, "https://slsa.dev/provenance/v1")

    path.write_text(json.dumps({"recipe": "t", "lock_sha256": "00"}))  # the old, unsigned format
    with pytest.raises(AttestationError, match=r"a\.json: not a signed attestation"):
        open_attestation(path, trust, PREDICATE)
    envelope = sign(statement({}, PREDICATE, {}), key)
    write_envelope(path, {**envelope, "signatures": []})
    with pytest.raises(AttestationError, match="no signature; it is unsigned"):
        read_envelope(path)
    write_envelope(path, {**envelope, "payload": "not base64!"})
    with pytest.raises(AttestationError, match="payload is not valid base64"):
        open_attestation(path, trust, PREDICATE)
    path.write_text("{truncated")
    with pytest.raises(AttestationError, match="cannot read"):
        open_attestation(path, trust, PREDICATE)


# --------------------------------------------------------------------------------------------
# Keys


def _ssh_keygen(*args: str) -> str:
    return subprocess.run(
        [SSH_KEYGEN, *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout


@needs_ssh_keygen
def test_a_key_made_by_ssh_keygen_signs_and_its_keyid_is_ssh_keygens_fingerprint(
    tmp_path: Path,
) -> None:
    path = tmp_path / "id_ed25519"
    _ssh_keygen("-q", "-t", "ed25519", "-N", "", "-C", "bob@host", "-f", str(path))
    key = load_signing_key(path)
    listed = _ssh_keygen("-l", "-f", str(path) + ".pub").split()
    assert key.public.keyid == listed[1] and key.public.comment == "bob@host"
    signed = _signed(tmp_path, key)
    trust = load_trust([Path(str(path) + ".pub")], None, tmp_path / "unused")
    assert open_attestation(signed, trust, PREDICATE).signer.comment == "bob@host"


@needs_ssh_keygen
def test_openrecipe_keygen_writes_an_openssh_key_pair_ssh_keygen_reads(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "openrecipe" / "signing_key"
    key = generate_key(path, "carol@lab")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    pub = (tmp_path / "cfg" / "openrecipe" / "signing_key.pub").read_text()
    assert pub == key.public.openssh() + "\n" and pub.endswith(" carol@lab\n")
    # ssh-keygen derives the same public key from our private key file
    assert _ssh_keygen("-y", "-f", str(path)).split()[:2] == pub.split()[:2]
    assert _ssh_keygen("-l", "-f", str(path) + ".pub").split()[1] == key.public.keyid
    assert load_signing_key(path).public.describe() == key.public.describe()
    with pytest.raises(AttestationError, match="already exists; refusing to overwrite"):
        generate_key(path, "again")


@needs_ssh_keygen
def test_unusable_private_keys_are_refused_by_name(tmp_path: Path) -> None:
    encrypted, rsa = tmp_path / "enc", tmp_path / "rsa"
    _ssh_keygen("-q", "-t", "ed25519", "-N", "secret", "-f", str(encrypted))
    _ssh_keygen("-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa))
    with pytest.raises(AttestationError, match=r"enc: the key is protected by a passphrase"):
        load_signing_key(encrypted)
    with pytest.raises(AttestationError, match=r"rsa: a RSA key; openrecipe signs with ed25519"):
        load_signing_key(rsa)
    with pytest.raises(AttestationError, match=r"rsa\.pub:1: a ssh-rsa key"):
        load_trust([Path(str(rsa) + ".pub")], None, tmp_path / "unused")


def test_missing_open_mismatched_and_garbage_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AttestationError, match="no signing key there; create one with"):
        load_signing_key(tmp_path / "absent")
    key = generate_key(tmp_path / "k", "x")
    key.path.chmod(0o644)
    with pytest.raises(AttestationError, match="permissions 0644 are too open"):
        load_signing_key(key.path)
    key.path.chmod(0o600)
    other = generate_key(tmp_path / "o", "y")
    (tmp_path / "k.pub").write_text(other.public.openssh() + "\n")
    with pytest.raises(AttestationError, match=r"k\.pub: holds SHA256:.*not a pair"):
        load_signing_key(key.path)
    garbage = tmp_path / "garbage"
    garbage.write_text("hello")
    garbage.chmod(0o600)
    with pytest.raises(AttestationError, match="garbage: not an OpenSSH private key"):
        load_signing_key(garbage)


def test_trust_from_keys_allowed_signers_or_the_users_own_key(tmp_path: Path) -> None:
    alice = generate_key(tmp_path / "alice", "alice@lab")
    bob = generate_key(tmp_path / "bob", "bob@lab")
    signers = tmp_path / "allowed_signers"
    signers.write_text(
        "# release signers\n\n"
        f"alice@example.org {alice.public.openssh().rsplit(' ', 1)[0]}\n"
        f"bob@example.org {bob.public.openssh()}\n"
    )
    keys = read_allowed_signers(signers)
    assert [(k.comment, k.keyid) for k in keys] == [
        ("alice@example.org", alice.public.keyid),
        ("bob@example.org", bob.public.keyid),
    ]
    signed = _signed(tmp_path, bob)
    trust = load_trust([], signers, tmp_path / "nobody")
    assert open_attestation(signed, trust, PREDICATE).signer.comment == "bob@example.org"
    # default: your own key's .pub
    own = load_trust([], None, alice.path)
    assert [k.keyid for k in own.keys] == [alice.public.keyid]
    with pytest.raises(AttestationError, match="no trusted key: pass"):
        load_trust([], None, tmp_path / "nobody")
    signers.write_text(f'alice namespaces="file" {alice.public.openssh()}\n')
    with pytest.raises(AttestationError, match=r"allowed_signers:1: options .* not supported"):
        read_allowed_signers(signers)


def test_default_key_path_env_then_xdg_then_home() -> None:
    assert default_key_path({"OPENRECIPE_SIGNING_KEY": "/k/key"}) == Path("/k/key")
    assert default_key_path({"XDG_CONFIG_HOME": "/cfg"}) == Path("/cfg/openrecipe/signing_key")
    assert default_key_path({}) == Path.home() / ".config" / "openrecipe" / "signing_key"


def test_keygen_cli_writes_once_then_refuses_without_traceback(tmp_path: Path, capsys) -> None:
    path = tmp_path / "signing_key"
    assert main(["keygen", "--out", str(path), "--comment", "dana@lab"]) == 0
    out = capsys.readouterr().out
    assert "SHA256:" in out and "dana@lab" in out and path.is_file()
    assert main(["keygen", "--out", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openrecipe keygen: error: ") and str(path) in err
