"""Our .bin/.idx open with Megatron-core's own ``IndexedDataset`` and give back the same tokens.

megatron-core is not a CPU requirement (pyproject extra ``megatron``), so this test runs only
where it can be imported: in this interpreter, or in the one named by ``OPENRECIPE_MCORE_PYTHON``
(a separate venv: ``python3.11 -m venv /tmp/mcore && /tmp/mcore/bin/pip install -c
constraints.txt megatron-core==0.16.1 numpy torch==2.13.0``). Otherwise it is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from openrecipe.data.indexed import IndexedDataset, write_indexed

READER = """
import json, sys
import numpy as np
from megatron.core.datasets.indexed_dataset import IndexedDataset
ds = IndexedDataset(sys.argv[1], mmap=True)
print(json.dumps({"dtype": np.dtype(ds.index.dtype).name,
                  "seqs": [ds[i].astype(np.int64).tolist() for i in range(len(ds))],
                  "docs": ds.document_indices.tolist()}))
"""


def _megatron_python() -> str | None:
    if importlib.util.find_spec("megatron") and importlib.util.find_spec("megatron.core"):
        return sys.executable
    candidate = os.environ.get("OPENRECIPE_MCORE_PYTHON")
    return candidate if candidate and os.path.exists(candidate) else None


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_megatron_reads_our_indexed_dataset(tmp_path, dtype):
    python = _megatron_python()
    if python is None:
        pytest.skip("megatron-core not importable (set OPENRECIPE_MCORE_PYTHON to a venv with it)")
    rng = np.random.default_rng(1)
    sequences = [rng.integers(0, 60000, size=n) for n in (129, 1, 129, 7)]
    write_indexed(tmp_path / "train", sequences, dtype)
    done = subprocess.run(
        [python, "-c", READER, str(tmp_path / "train")],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    got = json.loads(done.stdout.strip().splitlines()[-1])
    ours = IndexedDataset(tmp_path / "train")
    assert got["dtype"] == np.dtype(dtype).name
    assert got["seqs"] == [ours[i].astype(np.int64).tolist() for i in range(len(ours))]
    assert got["seqs"] == [s.tolist() for s in sequences]
    assert got["docs"] == ours.document_indices.tolist()
