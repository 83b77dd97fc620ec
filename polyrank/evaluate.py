"""`polyrank evaluate`: ranking quality of a cross-encoder or two-tower checkpoint on labelled lists.

NDCG@10, MRR@10 and MAP follow sentence-transformers' CrossEncoderRerankingEvaluator (binary
relevance = label > 0 for MRR and MAP, graded labels as NDCG gains, a query with no relevant
document scores 0); Pearson and Spearman compare scores with graded labels over all pairs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from polyrank.ranking import EvalQuery, label_metrics, read_lists, spearman


def model_scorer(model: str, max_length: int, dim: Optional[int] = None):
    """A function (query, documents) -> scores for a local cross-encoder or two-tower checkpoint."""
    from polyrank.model_repository.pair_encoding import PairEncoder
    from polyrank.training.students import is_two_tower, load_two_tower

    if is_two_tower(model):
        from tokenizers import Tokenizer

        tower, settings = load_two_tower(Path(model))
        tokenizer = Tokenizer.from_file(str(Path(model) / "query_encoder" / "tokenizer.json"))
        encoder = PairEncoder(tokenizer, max_length, tower.query_encoder.config.pad_token_id)
        return lambda query, documents: tower.score_texts(encoder, query, list(documents), dim)
    if dim is not None:
        raise ValueError("--dim applies to two-tower models only")
    from polyrank.checkpoint import torch_scores
    from polyrank.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(model)
    encoder = PairEncoder(checkpoint.tokenizer, max_length, checkpoint.pad_id)
    return lambda query, documents: torch_scores(checkpoint, encoder, [query] * len(documents), list(documents))


def require_labels(eval_set: list[EvalQuery]) -> None:
    if any(query.labels is None for query in eval_set):
        raise ValueError("every evaluation line needs \"labels\" (one per document)")


def evaluate_scores(eval_set: list[EvalQuery], scores: list[np.ndarray]) -> dict:
    """Mean NDCG@10 / MRR@10 / MAP over queries; Pearson / Spearman over all pairs."""
    require_labels(eval_set)
    per_query = np.array([label_metrics(np.asarray(q.labels), s) for q, s in zip(eval_set, scores)])
    labels = np.concatenate([np.asarray(q.labels, dtype=np.float64) for q in eval_set])
    flat = np.concatenate(scores).astype(np.float64)
    pearson = float(np.corrcoef(labels, flat)[0, 1]) if np.ptp(labels) and np.ptp(flat) else 0.0
    return {
        "queries": len(eval_set),
        "pairs": int(labels.size),
        "ndcg@10": round(float(per_query[:, 0].mean()), 6),
        "mrr@10": round(float(per_query[:, 1].mean()), 6),
        "map": round(float(per_query[:, 2].mean()), 6),
        "pearson": round(pearson, 6),
        "spearman": round(spearman(labels, flat), 6),
    }


def evaluate_model(model: str, data: Path, max_length: int = 256, dim: Optional[int] = None) -> dict:
    eval_set = read_lists(Path(data))
    require_labels(eval_set)  # before minutes of model loading
    score = model_scorer(model, max_length, dim)
    started = time.perf_counter()
    scores = [np.asarray(score(q.query, q.documents), dtype=np.float64) for q in eval_set]
    return {**evaluate_scores(eval_set, scores), "seconds": round(time.perf_counter() - started, 1)}
