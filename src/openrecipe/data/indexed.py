"""Megatron-LM's indexed dataset (``.bin`` + ``.idx``), written and read without Megatron.

Writing the packed tokens in this format lets the same files feed our reference loader and
Megatron-core's ``IndexedDataset`` on a cluster. Layout of ``.idx`` (little-endian), as written
by ``_IndexWriter`` in megatron/core/datasets/indexed_dataset.py (non-multimodal case):

    9 bytes   header b"MMIDIDX\\x00\\x00"
    u64       version = 1
    u8        dtype code (DType enum: uint8=1 int8=2 int16=3 int32=4 int64=5 float64=6
              float32=7 uint16=8)
    u64       sequence count S
    u64       document count D (the length of the document-index array, i.e. documents + 1)
    int32[S]  sequence lengths, in tokens
    int64[S]  sequence pointers, byte offsets into ``.bin``
    int64[D]  document indices: 0, then the sequence index at which each document ends

``.bin`` holds the tokens of all sequences back to back in that dtype. Megatron picks uint16
when the vocabulary has fewer than 65500 entries, int32 otherwise (``DType.optimal_dtype``).
Assumption: written from the format as documented above, not checked against Megatron's own
reader on this machine (megatron-core is not installed here).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from openrecipe.errors import StageInputError

HEADER = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES: dict[type, int] = {
    np.uint8: 1,
    np.int8: 2,
    np.int16: 3,
    np.int32: 4,
    np.int64: 5,
    np.float64: 6,
    np.float32: 7,
    np.uint16: 8,
}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}


def optimal_dtype(vocab_size: int) -> type:
    """Megatron's ``DType.optimal_dtype``: uint16 below 65500 token ids, else int32."""
    return np.uint16 if vocab_size < 65500 else np.int32


def write_indexed(
    path_prefix: Path,
    sequences: Iterable[np.ndarray],
    dtype: type,
    document_ends: Iterable[int] | None = None,
) -> int:
    """Write ``<prefix>.bin`` and ``<prefix>.idx``; returns the number of sequences.

    ``document_ends`` are the sequence counts at which documents end; by default each sequence
    is its own document (how Megatron's preprocessing writes one sequence per document)."""
    path_prefix = Path(path_prefix)
    itemsize = np.dtype(dtype).itemsize
    lengths: list[int] = []
    with open(path_prefix.with_suffix(".bin"), "wb") as bin_file:
        for sequence in sequences:
            array = np.asarray(sequence)
            if array.size and (
                array.min() < np.iinfo(dtype).min or array.max() > np.iinfo(dtype).max
            ):
                raise ValueError(
                    f"sequence {len(lengths)}: token ids out of range for {np.dtype(dtype)}"
                )
            bin_file.write(array.astype(dtype, copy=False).tobytes(order="C"))
            lengths.append(int(array.size))
    length_array = np.asarray(lengths, dtype=np.int32)
    pointers = np.zeros(len(lengths), dtype=np.int64)
    if lengths:
        pointers[1:] = np.cumsum(length_array[:-1], dtype=np.int64) * itemsize
    ends = range(1, len(lengths) + 1) if document_ends is None else document_ends
    documents = np.asarray([0, *ends], dtype=np.int64)
    with open(path_prefix.with_suffix(".idx"), "wb") as idx_file:
        idx_file.write(HEADER)
        idx_file.write(struct.pack("<Q", VERSION))
        idx_file.write(struct.pack("<B", DTYPE_CODES[dtype]))
        idx_file.write(struct.pack("<Q", len(lengths)))
        idx_file.write(struct.pack("<Q", len(documents)))
        idx_file.write(length_array.tobytes(order="C"))
        idx_file.write(pointers.tobytes(order="C"))
        idx_file.write(documents.tobytes(order="C"))
    return len(lengths)


class IndexedDataset:
    """Read-only view of ``<prefix>.bin``/``.idx``; sequences are memory-mapped, not loaded."""

    def __init__(self, path_prefix: str | Path) -> None:
        prefix = Path(path_prefix)
        idx_path, bin_path = prefix.with_suffix(".idx"), prefix.with_suffix(".bin")
        for path in (idx_path, bin_path):
            if not path.is_file():
                raise StageInputError(f"{path}: missing (indexed dataset {prefix})")
        with open(idx_path, "rb") as handle:
            header = handle.read(len(HEADER))
            if header != HEADER:
                raise StageInputError(f"{idx_path}: header {header!r}, expected {HEADER!r}")
            (version,) = struct.unpack("<Q", handle.read(8))
            if version != VERSION:
                raise StageInputError(f"{idx_path}: version {version}, expected {VERSION}")
            (code,) = struct.unpack("<B", handle.read(1))
            if code not in CODE_DTYPES:
                raise StageInputError(f"{idx_path}: unknown dtype code {code}")
            self.dtype = CODE_DTYPES[code]
            (n_sequences,) = struct.unpack("<Q", handle.read(8))
            (n_documents,) = struct.unpack("<Q", handle.read(8))
            offset = handle.tell()
        expected = offset + 4 * n_sequences + 8 * n_sequences + 8 * n_documents
        if idx_path.stat().st_size != expected:
            raise StageInputError(
                f"{idx_path}: {idx_path.stat().st_size} bytes, expected {expected}"
            )
        index = np.memmap(idx_path, mode="r", dtype=np.uint8)
        self.sequence_lengths = np.frombuffer(index, np.int32, n_sequences, offset)
        offset += self.sequence_lengths.nbytes
        self.sequence_pointers = np.frombuffer(index, np.int64, n_sequences, offset)
        offset += self.sequence_pointers.nbytes
        self.document_indices = np.frombuffer(index, np.int64, n_documents, offset)
        itemsize = np.dtype(self.dtype).itemsize
        total = int(self.sequence_lengths.sum(dtype=np.int64)) * itemsize
        if bin_path.stat().st_size != total:
            raise StageInputError(
                f"{bin_path}: {bin_path.stat().st_size} bytes, index says {total}"
            )
        # An empty file cannot be memory-mapped; an empty dataset has no tokens to map.
        self._bin = np.memmap(bin_path, mode="r", dtype=self.dtype) if total else None

    def __len__(self) -> int:
        return len(self.sequence_lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sequence {i} out of range (0..{len(self) - 1})")
        i %= len(self)
        if self._bin is None:
            return np.empty(0, dtype=self.dtype)
        itemsize = np.dtype(self.dtype).itemsize
        start = int(self.sequence_pointers[i]) // itemsize
        return self._bin[start : start + int(self.sequence_lengths[i])]
