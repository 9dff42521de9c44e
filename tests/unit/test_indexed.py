"""Megatron MMIDIDX indexed dataset: exact byte layout and round trip through the reader."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from openrecipe.data.indexed import IndexedDataset, optimal_dtype, write_indexed
from openrecipe.errors import StageInputError


def test_optimal_dtype_matches_megatron_threshold():
    assert optimal_dtype(1024) is np.uint16
    assert optimal_dtype(65499) is np.uint16
    assert optimal_dtype(65500) is np.int32


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(0)
    high = 65535 if dtype is np.uint16 else 200_000
    sequences = [rng.integers(0, high, size=n) for n in (5, 0, 129, 1, 129)]
    assert write_indexed(tmp_path / "train", sequences, dtype) == 5
    data = IndexedDataset(tmp_path / "train")
    assert len(data) == 5
    assert data.dtype is dtype
    for got, want in zip([data[i] for i in range(5)], sequences, strict=True):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(data[-1], sequences[-1])
    np.testing.assert_array_equal(data.document_indices, np.arange(6))
    with pytest.raises(IndexError):
        data[5]


def test_idx_byte_layout(tmp_path):
    write_indexed(
        tmp_path / "d", [np.array([1, 2, 3]), np.array([4, 5])], np.uint16, document_ends=[2]
    )
    raw = (tmp_path / "d.idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    version, code, n_seq, n_doc = struct.unpack("<QBQQ", raw[9:34])
    assert (version, code, n_seq, n_doc) == (1, 8, 2, 2)  # uint16 is DType code 8
    lengths = np.frombuffer(raw, np.int32, 2, 34)
    pointers = np.frombuffer(raw, np.int64, 2, 42)
    documents = np.frombuffer(raw, np.int64, 2, 58)
    assert lengths.tolist() == [3, 2]
    assert pointers.tolist() == [0, 6]  # byte offsets: 3 tokens x 2 bytes
    assert documents.tolist() == [0, 2]
    assert len(raw) == 74
    assert (tmp_path / "d.bin").read_bytes() == np.array([1, 2, 3, 4, 5], np.uint16).tobytes()


def test_out_of_range_token_is_refused(tmp_path):
    with pytest.raises(ValueError, match="out of range for uint16"):
        write_indexed(tmp_path / "d", [np.array([70000])], np.uint16)


def test_corrupt_files_are_refused(tmp_path):
    write_indexed(tmp_path / "d", [np.arange(10)], np.uint16)
    (tmp_path / "d.bin").write_bytes((tmp_path / "d.bin").read_bytes()[:-2])
    with pytest.raises(StageInputError, match="index says 20"):
        IndexedDataset(tmp_path / "d")
    (tmp_path / "d.idx").write_bytes(b"NOTIDX\x00\x00\x00" + (tmp_path / "d.idx").read_bytes()[9:])
    with pytest.raises(StageInputError, match="header"):
        IndexedDataset(tmp_path / "d")
    with pytest.raises(StageInputError, match="missing"):
        IndexedDataset(tmp_path / "nothing")
