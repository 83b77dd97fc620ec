"""Quality gate: does a candidate model (quantized, converted) rank like the fp32 reference?

Per query of an evaluation set it compares the candidate's scores with the reference's:
Spearman correlation, NDCG@10 of the candidate's ranking with the reference scores as graded
truth (gains are the reference scores shifted so the query's lowest is 0), and top-10
overlap. Where the evaluation set has labels, NDCG@10 / MRR@10 / MAP against the labels are
reported for both models (sentence-transformers' reranking-evaluator definitions: binary
relevance is label > 0 for MRR and MAP; NDCG uses the graded label as gain).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from polyrank.export.samples import SAMPLE_QUERIES
from polyrank.jsonl import read_jsonl


@dataclass(frozen=True)
class EvalQuery:
    query: str
    documents: tuple[str, ...]
    labels: Optional[tuple[float, ...]] = None


class QualityGateError(RuntimeError):
    """The candidate model missed a quality threshold."""


@dataclass(frozen=True, kw_only=True)
class GateThresholds:
    min_mean_spearman: float = 0.99
    min_reference_ndcg_at_10: float = 0.99


def load_eval_set(path: Optional[Path]) -> list[EvalQuery]:
    """JSONL lines {"query": str, "documents": [str, ...], "labels": [float, ...]?};
    the built-in multilingual sample when path is None."""
    if path is None:
        return [EvalQuery(s.query, s.products) for s in SAMPLE_QUERIES]
    queries = []

    def fields(record):
        return record["query"], record["documents"], record.get("labels")

    for number, (query, documents, labels) in read_jsonl(path, fields, "{'query', 'documents', 'labels'?}"):
        if not isinstance(query, str) or not documents or not all(isinstance(d, str) for d in documents):
            raise ValueError(f"{path}:{number}: query must be a string and documents a non-empty list of strings")
        if labels is not None and len(labels) != len(documents):
            raise ValueError(f"{path}:{number}: {len(labels)} labels for {len(documents)} documents")
        queries.append(EvalQuery(query, tuple(documents), None if labels is None else tuple(map(float, labels))))
    if not queries:
        raise ValueError(f"{path} holds no evaluation queries")
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


def top_k_overlap(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> float:
    k = min(k, len(reference))
    best = lambda scores: set(np.argsort(-scores, kind="stable")[:k].tolist())  # noqa: E731
    return len(best(reference) & best(candidate)) / k


@dataclass(frozen=True)
class GateReport:
    queries: int
    mean_spearman: float
    min_spearman: float
    mean_reference_ndcg_at_10: float
    mean_top10_overlap: float
    labelled_queries: int
    label_metrics: Optional[dict]  # {"reference": {...}, "candidate": {...}}
    thresholds: GateThresholds

    def failures(self) -> list[str]:
        failed = []
        if self.mean_spearman < self.thresholds.min_mean_spearman:
            failed.append(f"mean Spearman {self.mean_spearman:.4f} < {self.thresholds.min_mean_spearman}")
        if self.mean_reference_ndcg_at_10 < self.thresholds.min_reference_ndcg_at_10:
            failed.append(
                f"reference-NDCG@10 {self.mean_reference_ndcg_at_10:.4f} < {self.thresholds.min_reference_ndcg_at_10}"
            )
        return failed

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": not self.failures()}


def compare_rankings(
    eval_set: Sequence[EvalQuery],
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    thresholds: GateThresholds,
) -> GateReport:
    """Gate figures for per-query score arrays of the reference and the candidate."""
    spearmans, ndcgs, overlaps = [], [], []
    labelled = {"reference": [], "candidate": []}
    for query, ref, cand in zip(eval_set, reference, candidate):
        spearmans.append(spearman(ref, cand))
        ndcgs.append(ndcg_at_k(ref - ref.min(), cand))
        overlaps.append(top_k_overlap(ref, cand))
        if query.labels is not None:
            for name, scores in (("reference", ref), ("candidate", cand)):
                labelled[name].append(label_metrics(query.labels, scores))
    by_labels = None
    if labelled["reference"]:
        by_labels = {
            name: dict(zip(("ndcg@10", "mrr@10", "map"), np.mean(values, axis=0).round(6).tolist()))
            for name, values in labelled.items()
        }
    return GateReport(
        queries=len(spearmans),
        mean_spearman=round(float(np.mean(spearmans)), 6),
        min_spearman=round(float(np.min(spearmans)), 6),
        mean_reference_ndcg_at_10=round(float(np.mean(ndcgs)), 6),
        mean_top10_overlap=round(float(np.mean(overlaps)), 6),
        labelled_queries=len(labelled["reference"]),
        label_metrics=by_labels,
        thresholds=thresholds,
    )


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):  # ties share their average rank
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks
