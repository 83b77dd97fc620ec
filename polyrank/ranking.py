"""Ranked lists and how good a ranking is: reading {"query", "documents", "labels"?} lists,
and the metrics evaluation, distillation and the quality gate share (NDCG@k, MRR@k and MAP
as sentence-transformers' reranking evaluator computes them, Spearman, Kendall)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from polyrank.jsonl import read_jsonl


class ListsError(ValueError):
    """A lists file cannot be read as {"query", "documents", "labels"?} lines."""


@dataclass(frozen=True)
class EvalQuery:
    query: str
    documents: tuple[str, ...]
    labels: Optional[tuple[float, ...]] = None


def read_lists(path: Path) -> list[EvalQuery]:
    """JSONL lines {"query": str, "documents": [str, ...], "labels": [float, ...]?}."""
    queries = []

    def fields(record):
        return record["query"], record["documents"], record.get("labels")

    for number, (query, documents, labels) in read_jsonl(path, fields, "{'query', 'documents', 'labels'?}"):
        if not isinstance(query, str) or not documents or not all(isinstance(d, str) for d in documents):
            raise ListsError(f"{path}:{number}: query must be a string and documents a non-empty list of strings")
        if labels is not None and len(labels) != len(documents):
            raise ListsError(f"{path}:{number}: {len(labels)} labels for {len(documents)} documents")
        queries.append(EvalQuery(query, tuple(documents), None if labels is None else tuple(map(float, labels))))
    if not queries:
        raise ListsError(f"{path} holds no evaluation queries")
    return queries


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); 1.0 when both are constant."""
    ranks_a, ranks_b = _average_ranks(a), _average_ranks(b)
    if np.ptp(ranks_a) == 0 or np.ptp(ranks_b) == 0:
        return 1.0 if np.ptp(ranks_a) == np.ptp(ranks_b) else 0.0
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def ndcg_at_k(gains: np.ndarray, scores: np.ndarray, k: int = 10) -> float:
    """NDCG@k of ranking by `scores`, with `gains` as graded relevance (linear gain)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ranked = gains[np.argsort(-scores, kind="stable")][:k]
    ideal = np.sort(gains)[::-1][:k]
    ideal_dcg = float((ideal * discounts[: len(ideal)]).sum())
    return float((ranked * discounts[: len(ranked)]).sum() / ideal_dcg) if ideal_dcg > 0 else 1.0


def mrr_at_k(labels: np.ndarray, scores: np.ndarray, k: int = 10) -> float:
    ranked = labels[np.argsort(-scores, kind="stable")][:k] > 0
    hits = np.flatnonzero(ranked)
    return float(1.0 / (hits[0] + 1)) if hits.size else 0.0


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    relevant = labels[np.argsort(-scores, kind="stable")] > 0
    if not relevant.any():
        return 0.0
    precision_at_hits = np.cumsum(relevant)[relevant] / (np.flatnonzero(relevant) + 1)
    return float(precision_at_hits.mean())


def label_metrics(labels: np.ndarray, scores: np.ndarray, k: int = 10) -> tuple[float, float, float]:
    """(NDCG@k, MRR@k, AP) against labels; all 0 for a query with no relevant document, as
    sentence-transformers' reranking evaluator counts it."""
    labels = np.asarray(labels, dtype=np.float64)
    if not (labels > 0).any():
        return 0.0, 0.0, 0.0
    return ndcg_at_k(labels, scores, k), mrr_at_k(labels, scores, k), average_precision(labels, scores)


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b (ties counted as neither concordant nor discordant)."""
    da, db = np.sign(a[:, None] - a[None, :]), np.sign(b[:, None] - b[None, :])
    upper = np.triu_indices(len(a), k=1)
    da, db = da[upper], db[upper]
    denominator = np.sqrt(float((da != 0).sum()) * float((db != 0).sum()))
    return float((da * db).sum() / denominator) if denominator else 1.0


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):  # ties share their average rank
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks
