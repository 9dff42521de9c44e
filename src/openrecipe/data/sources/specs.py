"""Exact package coordinates, checked where a package client is called.

npm, apt-get and pip each accept far more than a name and a version: ``npm pack file:/x`` or a
git URL builds the package (running its lifecycle scripts), ``pip download 'x @ file:///y'``
runs ``setup.py``, and an argument starting with ``-`` is an option. Every one of those would
run before the sha256 pin is checked. The recipe schema already holds these fields to the forms
below (workflow/schemas/recipe.schema.yaml); this second check sits at the call site so that no
other path (a hand-edited resolved recipe, a library caller) can reach a client with anything but
an exact name and version. Each function returns the single argument the client receives.
"""

from __future__ import annotations

import re

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from openrecipe.errors import SourceError

# npm: validate-npm-package-name (lowercase, URL-safe, not starting with . or _), semver 2.0.0.
NPM_NAME = re.compile(r"(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*", re.ASCII)
_SEMVER_ID = r"(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
SEMVER = re.compile(
    rf"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    rf"(-{_SEMVER_ID}(\.{_SEMVER_ID})*)?(\+[0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*)?",
    re.ASCII,
)
# Debian policy 5.6.1 (Package) and 5.6.12 (Version: [epoch:]upstream[-revision]).
DEBIAN_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+", re.ASCII)
DEBIAN_VERSION = re.compile(r"([0-9]+:)?[0-9][A-Za-z0-9.+~]*(-[A-Za-z0-9.+~]+)*", re.ASCII)
# PEP 508 project name.
PYPI_NAME = re.compile(r"[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]", re.ASCII)
MAX_LENGTH = 214  # npm's limit on a name; far above any real version string


def _check(value: object, pattern: re.Pattern[str], where: str, expected: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_LENGTH or pattern.fullmatch(value) is None:
        raise SourceError(f"{where}: {value!r} is not {expected}; refused before running anything")
    return value


def npm_spec(package: str, version: str, where: str) -> str:
    """``name@X.Y.Z[-pre][+build]``: a registry tarball, never a path, URL, git spec or tag."""
    _check(package, NPM_NAME, f"{where}.package", "an npm package name")
    _check(version, SEMVER, f"{where}.version", "an exact npm version (semver X.Y.Z[-pre][+build])")
    return f"{package}@{version}"


def debian_spec(package: str, version: str, where: str) -> str:
    """``name=version`` for ``apt-get download``: no release (``/``), option or path."""
    _check(package, DEBIAN_NAME, f"{where}.package", "a Debian package name")
    _check(
        version,
        DEBIAN_VERSION,
        f"{where}.version",
        "a Debian version ([epoch:]upstream[-revision], upstream starting with a digit)",
    )
    return f"{package}={version}"


def pip_requirement(package: str, version: str, where: str) -> str:
    """``name==version`` with one exact, canonical PEP 440 public version, parsed by
    ``packaging``: no URL (``name @ url``), extras, markers, ranges, wildcards or local tags."""
    _check(package, PYPI_NAME, f"{where}.package", "a PyPI project name (PEP 508)")
    expected = "an exact PEP 440 version in canonical form (e.g. 0.9.0)"
    if not isinstance(version, str) or len(version) > MAX_LENGTH:
        raise SourceError(f"{where}.version: {version!r} is not {expected}")
    try:
        parsed = Version(version)
    except InvalidVersion:
        parsed = None
    if parsed is None or str(parsed) != version or parsed.local is not None:
        raise SourceError(
            f"{where}.version: {version!r} is not {expected}; refused before running anything"
        )
    text = f"{package}=={version}"
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:  # unreachable after the checks above; kept as the proof
        raise SourceError(f"{where}: {text!r} is not a requirement: {exc}") from exc
    specifiers = list(requirement.specifier)
    if (
        requirement.url
        or requirement.extras
        or requirement.marker
        or requirement.name != package
        or len(specifiers) != 1
        or specifiers[0].operator != "=="
        or specifiers[0].version != version
    ):
        raise SourceError(f"{where}: {text!r} is not an exact name==version requirement")
    return text
