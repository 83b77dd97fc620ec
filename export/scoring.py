"""Scoring (query, products) lists in length-sorted batches, as the scorer does: with PyTorch
(the quality gate's reference) or with a serving runtime (its candidates, the in-process
benchmark). Sorting keeps padding low, so a 100-product list costs what its tokens cost."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from polyrank.checkpoint import torch_inputs
from polyrank.checkpoint import Checkpoint
from polyrank.model_repository.pair_encoding import PaddedBatch, PairEncoder

BATCH = 16


class TokenCount:
    """Real and computed (real + padding) tokens of the batches scored."""

    def __init__(self):
        self.real = self.computed = 0


def score_sorted(
    run_batch: Callable[[PaddedBatch], np.ndarray],
    encoder: PairEncoder,
    query: str,
    documents: Sequence[str],
    batch: int = BATCH,
    tokens: TokenCount | None = None,
) -> np.ndarray:
    """One score per document, computed in batches of similar token length."""
    encodings = encoder.encode([query] * len(documents), list(documents))
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
    scores = np.empty(len(documents), dtype=np.float32)
    for start in range(0, len(order), batch):
        rows = order[start : start + batch]
        padded = encoder.pad([encodings[i] for i in rows])
        if tokens is not None:
            tokens.real += padded.real_tokens
            tokens.computed += padded.input_ids.size
        scores[rows] = np.asarray(run_batch(padded)).reshape(-1)
    return scores


def torch_batch_scorer(checkpoint: Checkpoint) -> Callable[[PaddedBatch], np.ndarray]:
    def run(batch: PaddedBatch) -> np.ndarray:
        with torch.no_grad():
            return checkpoint.model(**torch_inputs(batch, checkpoint.uses_token_type_ids)).logits.float().numpy()

    return run


def runtime_batch_scorer(runtime) -> Callable[[PaddedBatch], np.ndarray]:
    """A runtime of model_repository/runtimes.py as a batch scorer."""
    return lambda batch: runtime.run(batch.feed(runtime.input_names))
