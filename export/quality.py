"""Quality gate: does a candidate model (quantized, converted) rank like the fp32 reference?

It judges what a shopper sees, on realistic lists (100 candidates per query by default),
robust to near-ties: reference scores closer than a tie margin may swap either way. Per
query it compares the candidate's scores with the reference's:
- top-1 fidelity: the candidate's first product is one the reference scores within the
  margin of its best;
- top-10 fidelity: the share of the candidate's top 10 that the reference puts in its top 10
  (within the margin of its 10th best);
- clear-pair concordance: of all pairs the reference orders by more than the margin, the
  share the candidate orders alike;
- with labels, NDCG@10 / MRR@10 / MAP for both models (sentence-transformers'
  reranking-evaluator definitions: binary relevance is label > 0 for MRR and MAP; NDCG uses
  the graded label as gain), and the candidate's drop in NDCG@10 and MRR@10.
Reported, not gated: reference-NDCG@10 (the candidate's ranking with the reference scores,
shifted so the query's lowest is 0, as graded truth), Spearman and Kendall over whole lists,
plain top-10 overlap and the largest score change. They punish swaps between near-tied
products that no shopper would notice (a random-weight model, all of whose scores are
near-ties, fails them under any precision).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from polyrank.export.errors import ExportSettingsError
from polyrank.export.samples import gate_lists
from polyrank.ranking import EvalQuery, ListsError, kendall_tau, label_metrics, ndcg_at_k, read_lists, spearman


def load_eval_set(path: Optional[Path]) -> list[EvalQuery]:
    """The gate's lists: `path` (JSONL {"query", "documents", "labels"?}), or the built-in
    multilingual lists (8 languages, 100 candidates each) when path is None."""
    if path is None:
        return [EvalQuery(query, documents) for query, documents in gate_lists()]
    try:
        return read_lists(path)
    except ListsError as error:
        raise ExportSettingsError(str(error)) from None



def top_k_overlap(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> float:
    k = min(k, len(reference))
    best = lambda scores: set(np.argsort(-scores, kind="stable")[:k].tolist())  # noqa: E731
    return len(best(reference) & best(candidate)) / k


def top_k_fidelity(reference: np.ndarray, candidate: np.ndarray, k: int, margin: float) -> float:
    """Share of the candidate's top k that the reference also ranks in its top k, counting a
    product as in if the reference scores it within `margin` of its own k-th best (near-ties
    at the cut may fall either way)."""
    k = min(k, len(reference))
    cut = np.sort(reference)[::-1][k - 1] - margin
    shown = np.argsort(-candidate, kind="stable")[:k]
    return float((reference[shown] >= cut).mean())


def clear_pair_counts(reference: np.ndarray, candidate: np.ndarray, margin: float) -> tuple[int, int]:
    """(pairs the reference orders by more than `margin`, of those the candidate orders alike)."""
    clear = reference[:, None] - reference[None, :] > margin
    return int(clear.sum()), int((clear & (candidate[:, None] > candidate[None, :])).sum())


@dataclass(frozen=True, kw_only=True)
class GateThresholds:
    """What a candidate must keep of the reference's ranking. Scores closer than
    `tie_margin` (in the model's logits) count as a tie: a near-tie may flip either way.

    The defaults come from measurements on a trained product cross-encoder with 100
    candidates per query (README, "Precision"): fp32 and bf16 pass them with room to spare;
    int8-dynamic, which puts a clearly worse product first on 3 of 120 queries, and a
    damaged model fail.
    """

    tie_margin: float = 0.1
    min_top1_fidelity: float = 0.99
    min_top10_fidelity: float = 0.99
    min_clear_pair_concordance: float = 0.995
    max_label_drop: float = 0.01

    def __post_init__(self):
        if not self.tie_margin >= 0:
            raise ExportSettingsError(f"tie_margin must be 0 or more, got {self.tie_margin!r}")
        for name in ("min_top1_fidelity", "min_top10_fidelity", "min_clear_pair_concordance"):
            if not 0 <= getattr(self, name) <= 1:
                raise ExportSettingsError(f"{name} must lie in [0, 1], got {getattr(self, name)!r}")
        if not 0 <= self.max_label_drop <= 1:
            raise ExportSettingsError(f"max_label_drop must lie in [0, 1], got {self.max_label_drop!r}")


@dataclass(frozen=True)
class GateReport:
    """Gate figures, means over queries. Gated: top-1 and top-10 fidelity, clear-pair
    concordance and, with labels, the drop in NDCG@10 and MRR@10. Reported only:
    reference-NDCG@10, Spearman, Kendall, plain top-10 overlap, score changes."""

    queries: int
    mean_candidates: float
    top1_fidelity: float
    top1_changed: float
    top10_fidelity: float
    clear_pairs: int
    clear_pair_concordance: float
    mean_reference_ndcg_at_10: float
    mean_top10_overlap: float
    mean_spearman: float
    mean_kendall: float
    max_abs_score_change: float
    labelled_queries: int
    label_metrics: Optional[dict]  # {"reference": {...}, "candidate": {...}}
    thresholds: GateThresholds

    def failures(self) -> list[str]:
        """One line per missed threshold."""
        t, failed = self.thresholds, []
        margin = f"more than {t.tie_margin:g} below"
        if self.top1_fidelity < t.min_top1_fidelity:
            failed.append(
                f"top-1 fidelity {self.top1_fidelity:.4f} < {t.min_top1_fidelity} (the first product is one the "
                f"reference scores {margin} its best on {round((1 - self.top1_fidelity) * self.queries)} of {self.queries} queries)"
            )
        if self.top10_fidelity < t.min_top10_fidelity:
            failed.append(f"top-10 fidelity {self.top10_fidelity:.4f} < {t.min_top10_fidelity}")
        if self.clear_pair_concordance < t.min_clear_pair_concordance:
            failed.append(
                f"clear-pair concordance {self.clear_pair_concordance:.4f} < {t.min_clear_pair_concordance} "
                f"(of {self.clear_pairs} pairs the reference orders by more than {t.tie_margin:g})"
            )
        if self.label_metrics:
            for metric in ("ndcg@10", "mrr@10"):
                reference, candidate = self.label_metrics["reference"][metric], self.label_metrics["candidate"][metric]
                if reference - candidate > t.max_label_drop:
                    failed.append(
                        f"label {metric.upper()} {candidate:.4f} vs {reference:.4f} for the reference: "
                        f"drop {reference - candidate:.4f} > {t.max_label_drop}"
                    )
        return failed

    def as_dict(self) -> dict:
        failures = self.failures()
        return {**asdict(self), "passed": not failures, "failures": failures}


def compare_rankings(
    eval_set: Sequence[EvalQuery],
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    thresholds: GateThresholds,
) -> GateReport:
    """Gate figures for per-query score arrays of the reference and the candidate."""
    margin = thresholds.tie_margin
    per_query = {name: [] for name in ("top1", "changed", "top10", "ndcg", "overlap", "spearman", "kendall")}
    clear = agreeing = 0
    largest_change = 0.0
    labelled = {"reference": [], "candidate": []}
    for query, ref, cand in zip(eval_set, reference, candidate):
        ref, cand = np.asarray(ref, dtype=np.float64), np.asarray(cand, dtype=np.float64)
        per_query["top1"].append(top_k_fidelity(ref, cand, 1, margin))
        per_query["changed"].append(float(np.argmax(ref) != np.argmax(cand)))
        per_query["top10"].append(top_k_fidelity(ref, cand, 10, margin))
        per_query["ndcg"].append(ndcg_at_k(ref - ref.min(), cand))
        per_query["overlap"].append(top_k_overlap(ref, cand))
        per_query["spearman"].append(spearman(ref, cand))
        per_query["kendall"].append(kendall_tau(ref, cand))
        pairs, same = clear_pair_counts(ref, cand, margin)
        clear, agreeing = clear + pairs, agreeing + same
        largest_change = max(largest_change, float(np.abs(ref - cand).max()))
        if query.labels is not None:
            for name, scores in (("reference", ref), ("candidate", cand)):
                labelled[name].append(label_metrics(query.labels, scores))
    by_labels = None
    if labelled["reference"]:
        by_labels = {
            name: dict(zip(("ndcg@10", "mrr@10", "map"), np.mean(values, axis=0).round(6).tolist()))
            for name, values in labelled.items()
        }
    mean = lambda name: round(float(np.mean(per_query[name])), 6)  # noqa: E731
    return GateReport(
        queries=len(per_query["top1"]),
        mean_candidates=round(float(np.mean([len(q.documents) for q in eval_set])), 1),
        top1_fidelity=mean("top1"),
        top1_changed=mean("changed"),
        top10_fidelity=mean("top10"),
        clear_pairs=clear,
        clear_pair_concordance=round(agreeing / clear, 6) if clear else 1.0,
        mean_reference_ndcg_at_10=mean("ndcg"),
        mean_top10_overlap=mean("overlap"),
        mean_spearman=mean("spearman"),
        mean_kendall=mean("kendall"),
        max_abs_score_change=round(largest_change, 6),
        labelled_queries=len(labelled["reference"]),
        label_metrics=by_labels,
        thresholds=thresholds,
    )
