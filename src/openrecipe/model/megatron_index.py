"""megatron-core's ``GPTDataset`` sample order, computed without megatron-core.

Megatron-LM does not train on a pack's sequences in the pack's order: ``GPTDataset`` flattens
the documents of its ``--data-path`` in a shuffled document order (``document_index``), cuts
that stream into samples of ``seq_length + 1`` tokens that start every ``seq_length`` tokens
(``sample_index``: consecutive samples share one token, the label of the last position), and
yields them in a shuffled order (``shuffle_index``); all three come from one
``numpy.random.RandomState(--seed)``, and a dataset asked for more samples than one pass holds
is repeated by whole epochs, the last one shuffled apart when it is used for less than 80%.

For the reference backend to train on exactly what Megatron-LM trains on (issue 16), it must
read a phase's dataset through the same three indices. This module computes them with numpy
from the indexed dataset's document lengths, as megatron-core 0.16.1 does
(``megatron/core/datasets/gpt_dataset.py``: ``_build_document_sample_shuffle_indices``,
``_build_document_index``, ``_build_shuffle_index``; ``helpers.cpp``: ``build_sample_idx``),
for the training split (all documents, last partial sample dropped, one extra token per sample).
``tests/unit/test_megatron_index.py`` checks every index and every sample against megatron-core
itself, run from the side environment. Written here rather than imported because megatron-core
is a GPU-cluster extra, never a CPU requirement; its own code stays the authority.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# GPTDatasetConfig.add_extra_token_to_sequence (default True): a sample is seq_length + 1 tokens.
EXTRA_TOKEN = 1
# The share of an epoch below which megatron-core shuffles the final epoch apart.
SEPARATE_FINAL_EPOCH_BELOW = 0.80


@dataclass(frozen=True)
class GPTIndices:
    """The three indices of one GPTDataset (see the module docstring)."""

    document_index: np.ndarray
    """Document ids in stream order, epoch after epoch (int32)."""
    sample_index: np.ndarray
    """(samples + 1, 2): for sample k, the position in ``document_index`` and the token offset
    in that document where it starts."""
    shuffle_index: np.ndarray
    """Iteration i reads sample ``shuffle_index[i]``."""
    seq_length: int

    def __len__(self) -> int:
        return self.sample_index.shape[0] - 1

    def spans(self, i: int) -> list[tuple[int, int, int]]:
        """Iteration ``i``'s sample as ``(document id, offset, length)`` runs, in token order;
        their lengths sum to ``seq_length + 1``."""
        k = int(self.shuffle_index[i])
        (first, start), (last, end) = self.sample_index[k], self.sample_index[k + 1]
        first, start, last, end = int(first), int(start), int(last), int(end) + EXTRA_TOKEN
        if first == last:
            return [(int(self.document_index[first]), start, end - start)]
        runs = [(int(self.document_index[first]), start, -1)]
        runs += [(int(self.document_index[j]), 0, -1) for j in range(first + 1, last)]
        runs.append((int(self.document_index[last]), 0, end))
        return runs


def num_epochs(tokens_per_epoch: int, num_samples: int, seq_length: int) -> int:
    """Epochs megatron-core builds so that ``num_samples`` samples fit (``_get_num_epochs``)."""
    requested = num_samples * seq_length + EXTRA_TOKEN
    return max(1, -(-requested // tokens_per_epoch))


def gpt_indices(
    sequence_lengths: np.ndarray, num_samples: int, seq_length: int, seed: int
) -> GPTIndices:
    """The indices megatron-core's GPTDataset builds for a training split holding every
    document of a dataset with these document lengths, asked for ``num_samples`` samples."""
    lengths = np.asarray(sequence_lengths, dtype=np.int64)
    if seq_length < 2 or num_samples < 1 or len(lengths) == 0 or lengths.sum() < 2:
        raise ValueError(
            f"gpt_indices: need seq_length >= 2, num_samples >= 1 and >= 2 tokens "
            f"(got {seq_length}, {num_samples}, {int(lengths.sum())} tokens)"
        )
    per_epoch = int(lengths.sum())
    epochs = num_epochs(per_epoch, num_samples, seq_length)
    separate, sans_final = False, 0
    if epochs > 1:
        sans_final = ((epochs - 1) * per_epoch - EXTRA_TOKEN) // seq_length
        per_epoch_samples = (per_epoch - EXTRA_TOKEN) // seq_length
        from_final = num_samples - sans_final
        separate = from_final < int(SEPARATE_FINAL_EPOCH_BELOW * per_epoch_samples)
    rng = np.random.RandomState(seed)
    documents = np.arange(len(lengths), dtype=np.int32)
    if separate:
        document_index = np.concatenate(
            (_document_index(documents, epochs - 1, rng), _document_index(documents, 1, rng))
        )
    else:
        document_index = _document_index(documents, epochs, rng)
    sample_index = _sample_index(lengths, document_index, seq_length, epochs * per_epoch)
    total = sample_index.shape[0] - 1
    shuffle_index = _shuffle_index(sans_final if separate else total, total, rng)
    return GPTIndices(document_index, sample_index, shuffle_index, seq_length)


def _document_index(documents: np.ndarray, epochs: int, rng: np.random.RandomState) -> np.ndarray:
    index = np.tile(documents, epochs).astype(np.int32)
    rng.shuffle(index)
    return index


def _sample_index(
    lengths: np.ndarray, document_index: np.ndarray, seq_length: int, total_tokens: int
) -> np.ndarray:
    """Sample k starts at token k * seq_length of the flattened stream: (position in the
    document index, offset in that document) of each start, one more row for where the last
    sample ends. ``build_sample_idx`` walks the documents to the same places: a start on a
    document's last token stays in that document, a start past it goes to the next non-empty
    one at offset 0. Every start lies inside the stream, since the last partial sample is
    dropped: (samples) * seq_length + 1 <= total tokens."""
    samples = (total_tokens - EXTRA_TOKEN) // seq_length
    sizes = lengths[document_index]
    ends = np.cumsum(sizes)  # stream position one past each document
    starts = np.arange(samples + 1, dtype=np.int64) * seq_length
    where = np.searchsorted(ends, starts, side="right")
    offsets = starts - (ends[where] - sizes[where])
    return np.stack([where, offsets], axis=1)


def _shuffle_index(first: int, total: int, rng: np.random.RandomState) -> np.ndarray:
    dtype = np.uint32 if total < np.iinfo(np.uint32).max - 1 else np.int64
    head = np.arange(first, dtype=dtype)
    rng.shuffle(head)
    if first == total:
        return head
    tail = np.arange(first, total, dtype=dtype)
    rng.shuffle(tail)
    return np.concatenate((head, tail))


def sample_tokens(tokens_of: list[np.ndarray], indices: GPTIndices, i: int) -> np.ndarray:
    """Iteration ``i``'s ``seq_length + 1`` tokens, given each document's tokens."""
    parts = [
        tokens_of[doc][offset : None if length < 0 else offset + length]
        for doc, offset, length in indices.spans(i)
    ]
    return np.concatenate(parts)
