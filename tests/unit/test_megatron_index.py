"""``openrecipe.model.megatron_index`` gives megatron-core's own GPTDataset indices and samples.

megatron-core 0.16.1 runs from the side environment (``tests/unit/megatron_side.py``; ``make
test`` builds it); without it the comparisons skip and only the self-consistency tests run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from openrecipe.data.indexed import IndexedDataset, write_indexed
from openrecipe.model.megatron_index import gpt_indices, num_epochs, sample_tokens
from tests.unit.megatron_side import mcore_python

# GPTDataset on one indexed dataset, the training split holding every document, as
# pretrain_hybrid.py builds it; prints its three indices and every sample in iteration order.
GPT_INDICES = r"""
import json, sys
import numpy as np
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.datasets.indexed_dataset import IndexedDataset
from megatron.core.datasets.utils import Split
from megatron.core.tokenizers.text.libraries.null_tokenizer import NullTokenizer

prefix, seq, samples, seed, cache = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
config = GPTDatasetConfig(
    random_seed=seed, sequence_length=seq, blend=([prefix], None), split="1,0,0",
    path_to_cache=cache, tokenizer=NullTokenizer(70000), reset_position_ids=False,
    reset_attention_mask=False, eod_mask_loss=False, create_attention_mask=False,
)
indexed = IndexedDataset(prefix, mmap=True)
documents = np.arange(len(indexed.sequence_lengths), dtype=np.int32)
dataset = GPTDataset(indexed, prefix, documents, samples, Split.train, config)
print(json.dumps({
    "document_index": dataset.document_index.tolist(),
    "sample_index": np.asarray(dataset.sample_index).tolist(),
    "shuffle_index": np.asarray(dataset.shuffle_index).tolist(),
    "samples": [np.concatenate([dataset[i]["tokens"].numpy()[:1], dataset[i]["labels"].numpy()]).tolist()
                for i in range(len(dataset))],
}))
"""


def _documents(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 60000, size=n) for n in lengths]


def _megatron(prefix: Path, seq: int, samples: int, seed: int, cache: Path) -> dict:
    python = mcore_python()
    if python is None:
        pytest.skip("megatron-core not importable (set OPENRECIPE_MCORE_PYTHON; make test does)")
    done = subprocess.run(
        [python, "-c", GPT_INDICES, str(prefix), str(seq), str(samples), str(seed), str(cache)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# (document lengths, seq_length, samples asked, seed): one epoch; several epochs with the last
# shuffled apart (used < 80%) and not (>= 80%); one-token and long documents; one stream.
CASES = {
    "one_epoch": ([37, 5, 129, 1, 64, 200, 17, 3, 90], 16, 30, 1234),
    # 166 tokens: 20 samples per epoch; 3 epochs, 41 samples before the last: 15 from the last
    # is under 80% of 20 (16), so megatron-core shuffles it apart; 17 is not.
    "final_epoch_apart": ([50, 70, 33, 1, 12], 8, 56, 7),
    "final_epoch_kept": ([50, 70, 33, 1, 12], 8, 58, 7),
    "one_stream": ([16 * 40 + 1], 16, 40, 99),
    "starts_on_document_edges": ([16, 16, 1, 15, 17, 16], 16, 5, 3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_indices_and_samples_equal_megatron_cores(case: str, tmp_path: Path) -> None:
    lengths, seq, samples, seed = CASES[case]
    documents = _documents(lengths)
    write_indexed(tmp_path / "phase", documents, np.int32)
    theirs = _megatron(tmp_path / "phase", seq, samples, seed, tmp_path / "cache")
    ours = gpt_indices(IndexedDataset(tmp_path / "phase").sequence_lengths, samples, seq, seed)
    assert ours.document_index.tolist() == theirs["document_index"]
    assert ours.sample_index.tolist() == theirs["sample_index"]
    assert ours.shuffle_index.tolist() == theirs["shuffle_index"]
    got = [sample_tokens(documents, ours, i).tolist() for i in range(len(ours))]
    assert got == theirs["samples"]


def test_samples_tile_the_stream_and_share_one_token() -> None:
    """Without megatron-core: each sample is seq_length + 1 tokens of the stream in document
    order, sample k starting at token k * seq_length, and every sample is read once."""
    lengths, seq, samples, seed = CASES["one_epoch"]
    documents = _documents(lengths)
    ours = gpt_indices(np.array(lengths), samples, seq, seed)
    stream = np.concatenate([documents[d] for d in ours.document_index])
    assert sorted(ours.shuffle_index.tolist()) == list(range(len(ours)))
    assert len(ours) == (len(stream) - 1) // seq >= samples
    for i in range(len(ours)):
        k = int(ours.shuffle_index[i])
        assert (
            sample_tokens(documents, ours, i).tolist()
            == stream[k * seq : k * seq + seq + 1].tolist()
        )


def test_epochs_and_refusals() -> None:
    assert num_epochs(tokens_per_epoch=101, num_samples=10, seq_length=10) == 1
    assert num_epochs(tokens_per_epoch=100, num_samples=10, seq_length=10) == 2  # 101 needed
    with pytest.raises(ValueError, match="seq_length >= 2"):
        gpt_indices(np.array([10]), 1, 1, 0)
    with pytest.raises(ValueError, match="num_samples >= 1"):
        gpt_indices(np.array([10]), 0, 4, 0)
