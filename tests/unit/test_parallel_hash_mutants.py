"""What a FileHasher promises beyond the hashes themselves (written against the mutants that
test_parallel_hash left alive): it hashes on at most the workers it was given, on threads a
stack dump names, it drops the hashes nobody will ask for when it is closed early, and its
default is the cores this process may use, one at least.

A named pipe stands in for a slow file: its reader blocks until a writer comes, so a worker is
held busy exactly as long as the test wants, with no timing to guess."""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from openrecipe.lineage import parallel_hash
from openrecipe.lineage.parallel_hash import FileHasher, default_workers


def _new_threads(before: set[int]) -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.ident not in before)


def test_a_hasher_uses_only_its_workers_on_threads_named_sha256(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    files = [tmp_path / f"{i}.bin" for i in range(3)]
    for index, path in enumerate(files):
        path.write_bytes(bytes([index]) * 1000)
    before = {t.ident for t in threading.enumerate()}
    with FileHasher(workers=1) as hasher:
        assert hasher.workers == 1
        # the one worker blocks on the pipe; a second would start on the files meanwhile
        hasher.prefetch([pipe, *files])
        threads = _new_threads(before)
        with open(pipe, "wb") as writer:  # first, so that a failed check cannot hang close()
            writer.write(b"slow file")
        assert threads == ["sha256_0"]
        assert hasher.sha256(pipe) == hashlib.sha256(b"slow file").hexdigest()
        got = [hasher.sha256(path) for path in files]
    assert got == [hashlib.sha256(bytes([i]) * 1000).hexdigest() for i in range(3)]
    with FileHasher(workers=3) as hasher:
        assert hasher.workers == 3
    with FileHasher() as hasher:
        assert hasher.workers == default_workers()


def test_closing_drops_the_queued_hashes_and_waits_for_the_running_one(tmp_path: Path) -> None:
    """verify stops at the first unreadable file: the rest of a terabyte run queued behind it
    must not be read before the error is reported; and once the hasher is closed no thread of
    it still reads a file (the caller may move or delete them)."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    queued = tmp_path / "queued.bin"
    queued.write_bytes(b"never read")
    before = {t.ident for t in threading.enumerate()}
    hasher = FileHasher(workers=1)
    hasher.prefetch([pipe, queued])  # the worker blocks on the pipe, queued.bin waits
    closing = threading.Event()

    def release() -> None:
        # the pipe is let go only once close() has begun: its cancellation of the queue is
        # immediate, waiting for the running hash is what takes the time
        closing.wait()
        threading.Event().wait(1.0)
        with open(pipe, "wb") as writer:
            writer.write(b"x")

    releaser = threading.Thread(target=release)
    releaser.start()
    closing.set()
    hasher.close()
    hashing = [name for name in _new_threads(before) if name.startswith("sha256")]
    assert hashing == []  # close() returned once its worker had finished and exited
    releaser.join()
    assert hasher.sha256(pipe) == hashlib.sha256(b"x").hexdigest()  # it was running: finished
    with pytest.raises(CancelledError):
        hasher.sha256(queued)


def test_default_workers_is_the_affinity_mask_and_at_least_one(monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5}, raising=False)
    assert default_workers() == 1  # a job pinned to one core hashes on one thread
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(), raising=False)
    assert default_workers() == 1


def test_default_workers_off_linux_is_the_cpu_count(monkeypatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(parallel_hash.os, "cpu_count", lambda: 3)
    assert default_workers() == 3
    monkeypatch.setattr(parallel_hash.os, "cpu_count", lambda: 1)
    assert default_workers() == 1
    monkeypatch.setattr(parallel_hash.os, "cpu_count", lambda: None)  # undeterminable
    assert default_workers() == 1
