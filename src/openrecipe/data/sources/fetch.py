"""Package clients (npm, apt, pip), sha256 pinning and safe unpacking of what they fetch.

A client is only ever handed an exact name and version (``specs``), and never builds or installs:
``npm pack --ignore-scripts``, ``apt-get download``, ``pip download --only-binary=:all:``. Every
fetched archive is checked against the recipe's pinned sha256 *before* it is opened, so a
registry that serves different bytes under the same version stops the run instead of silently
changing the corpus."""

from __future__ import annotations

import io
import lzma
import subprocess
import sys
import tarfile
from pathlib import Path

from openrecipe.data.sources import specs
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


def npm_pack(package: str, version: str, workdir: Path, where: str = "npm source") -> Path:
    """``npm pack`` writes the registry tarball of an exact ``name@X.Y.Z`` into ``workdir``.

    The spec is checked first (``specs.npm_spec``: a ``file:``/git/URL spec would make npm build
    the package, running its lifecycle scripts), and ``--ignore-scripts`` is passed as well."""
    spec = specs.npm_spec(package, version, where)
    what = f"npm package {spec}"
    _run(
        ["npm", "pack", "--ignore-scripts", "--silent", spec],
        workdir,
        what,
        f"check the network/registry {_SNAPSHOT_HINT}",
    )
    return _single_file(workdir, "*.tgz", what)


def apt_download(package: str, version: str, workdir: Path, where: str = "debian source") -> Path:
    """``apt-get download name=version`` fetches the .deb without installing it (no maintainer
    script runs); the spec is checked first (``specs.debian_spec``)."""
    spec = specs.debian_spec(package, version, where)
    what = f"debian package {spec}"
    _run(
        ["apt-get", "download", spec],
        workdir,
        what,
        f"run `apt-get update` (the package index may not list this version) {_SNAPSHOT_HINT}",
    )
    return _single_file(workdir, "*.deb", what)


# pip's arguments after the interpreter: wheels only (an sdist build runs setup.py), no deps.
PIP_DOWNLOAD = [
    "-m",
    "pip",
    "download",
    "--no-deps",
    "--only-binary=:all:",
    "--disable-pip-version-check",
]


def pip_download(package: str, version: str, workdir: Path, where: str = "pypi source") -> Path:
    """The wheel of an exact ``name==version`` (``specs.pip_requirement``), and nothing else:
    wheels only (building an sdist runs its ``setup.py``), no dependencies."""
    requirement = specs.pip_requirement(package, version, where)
    what = f"pypi package {requirement}"
    _run(
        [sys.executable, *PIP_DOWNLOAD, "-d", ".", requirement],
        workdir,
        what,
        f"check the network/index {_SNAPSHOT_HINT}",
    )
    return _single_file(workdir, "*.whl", what)


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
