"""sha256 of many files on every core, so auditing a large run is bounded by the disk.

``verify`` (and ``lock``, which verifies first) rehash every output of a run and of the stages
upstream of it. One file after another, that is one core: a terabyte run would take a day where
the disk reads it in hours. Files are hashed on a thread pool: ``hashlib`` releases the GIL while
it hashes (and so does the file read), so threads scale over cores without the pickling and
start-up cost of processes. The hashing itself is ``hashlib.file_digest`` (OpenSSL's sha256, the
same code path ``sha256sum`` competes with), not our own loop. A single file cannot be split: its
sha256 is one sequential chain, so the largest file bounds the wall time.

This module is lineage tooling, outside every stage's code closure: ``openrecipe.hashing`` (which
manifests use when a stage seals its outputs) stays the one definition of a file's hash, and
``test_parallel_hash`` checks the two agree.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType


def default_workers() -> int:
    """Every core this process may run on (the affinity mask, not the machine's count: a
    SLURM job or a container may hold fewer)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class FileHasher:
    """Hashes files in the background as soon as they are named (``prefetch``) and hands each
    hash back when asked (``sha256``), so a caller can name every file it will check first and
    read the results in its own order: the problems it reports keep their order whatever the
    number of workers.

    An unreadable file raises its ``OSError`` from ``sha256``, as a sequential read would."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sha256")
        self._futures: dict[Path, Future[str]] = {}

    def prefetch(self, paths: Iterable[Path]) -> None:
        for path in paths:
            if path not in self._futures:
                self._futures[path] = self._pool.submit(_sha256, path)

    def sha256(self, path: Path) -> str:
        self.prefetch([path])
        return self._futures[path].result()

    def close(self) -> None:
        # pending hashes of files nobody will ask for (the caller stopped early) are dropped
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> FileHasher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
