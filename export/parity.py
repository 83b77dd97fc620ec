"""Parity gate: the exported graph must score pairs like the PyTorch checkpoint does."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from polyrank.checkpoint import Checkpoint, torch_scores
from polyrank.export.errors import ParityError
from polyrank.model_repository.pair_encoding import PairEncoder


@dataclass(frozen=True)
class ParityReport:
    pairs: int
    queries: int
    max_abs_diff: float
    mean_abs_diff: float
    tolerance: float
    same_order_per_query: bool

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.same_order_per_query

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def onnx_session(onnx_path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


def onnx_scores(session, encoder: PairEncoder, queries, documents) -> np.ndarray:
    """Scores from an ONNX Runtime session of an exported graph, one padded batch."""
    batch = encoder.encode_padded(queries, documents)
    feed = batch.feed([i.name for i in session.get_inputs()])
    return session.run(["SCORES"], feed)[0].reshape(-1)


def compare(
    reference: np.ndarray, candidate: np.ndarray, queries: Sequence[str], tolerance: float
) -> ParityReport:
    difference = np.abs(reference - candidate)
    queries = list(queries)
    same_order = all(
        _same_order(reference[rows], candidate[rows], tolerance)
        for rows in (
            [i for i, q in enumerate(queries) if q == query] for query in dict.fromkeys(queries)
        )
    )
    return ParityReport(
        pairs=len(reference),
        queries=len(set(queries)),
        max_abs_diff=float(difference.max()),
        mean_abs_diff=float(difference.mean()),
        tolerance=tolerance,
        same_order_per_query=same_order,
    )


def _same_order(reference: np.ndarray, candidate: np.ndarray, tolerance: float) -> bool:
    """True if no pair of products swaps places, except pairs whose reference scores
    lie within `tolerance` of each other (a near-tie may flip in either direction)."""
    reference_says_higher = reference[:, None] - reference[None, :] > tolerance
    candidate_says_lower = candidate[:, None] < candidate[None, :]
    return not bool((reference_says_higher & candidate_says_lower).any())


def check_onnx_parity(
    checkpoint: Checkpoint,
    encoder: PairEncoder,
    onnx_path: Path,
    queries: Sequence[str],
    documents: Sequence[str],
    tolerance: float,
) -> ParityReport:
    """Scores the pairs with both models; raises ParityError if they disagree."""
    report = compare(
        torch_scores(checkpoint, encoder, queries, documents),
        onnx_scores(onnx_session(onnx_path), encoder, queries, documents),
        queries,
        tolerance,
    )
    if not report.passed:
        raise ParityError(
            f"ONNX export differs from PyTorch: max |diff| {report.max_abs_diff:.2e} "
            f"(tolerance {tolerance:.0e}), same order per query: {report.same_order_per_query}"
        )
    return report
