"""`polyrank evaluate` against sentence-transformers' reranking evaluator and scipy, on the same model and lists."""

import json

import numpy as np
import pytest
import scipy.stats
import torch

from polyrank.cli import main
from polyrank.evaluate import evaluate_model, evaluate_scores, model_scorer
from polyrank.ranking import EvalQuery
from polyrank.export.samples import SAMPLE_QUERIES

# ESCI gains: exact 1.0, substitute 0.1, complement 0.01, irrelevant 0
GAINS = (1.0, 0.1, 0.01, 0.0, 1.0)


@pytest.fixture
def labelled(tmp_path):
    path = tmp_path / "labelled.jsonl"
    with open(path, "w", encoding="utf-8") as stream:
        for shift, sample in enumerate(SAMPLE_QUERIES):
            labels = [GAINS[(i + shift) % len(GAINS)] for i in range(len(sample.products))]
            stream.write(json.dumps({"query": sample.query, "documents": list(sample.products), "labels": labels}) + "\n")
    return path


def test_matches_sentence_transformers_reranking_evaluator(spread_bert_dir, labelled):
    from sentence_transformers.cross_encoder import CrossEncoder
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    samples = []
    for line in labelled.read_text().splitlines():
        record = json.loads(line)
        pairs = list(zip(record["documents"], record["labels"]))
        samples.append({"query": record["query"], "positive": [d for d, l in pairs if l > 0],
                        "negative": [d for d, l in pairs if l == 0]})
    # binary relevance: the same lists with labels > 0 as 1
    binary = labelled.with_name("binary.jsonl")
    binary.write_text("".join(
        json.dumps({**(r := json.loads(line)), "labels": [float(l > 0) for l in r["labels"]]}) + "\n"
        for line in labelled.read_text().splitlines()
    ))
    ours = evaluate_model(str(spread_bert_dir), binary, max_length=128)
    theirs = CrossEncoderRerankingEvaluator(samples, at_k=10)(CrossEncoder(str(spread_bert_dir), max_length=128, activation_fn=torch.nn.Identity()))
    assert ours["ndcg@10"] == pytest.approx(theirs["ndcg@10"], abs=1e-6)
    assert ours["mrr@10"] == pytest.approx(theirs["mrr@10"], abs=1e-6)
    assert ours["map"] == pytest.approx(theirs["map"], abs=1e-6)


def test_graded_ndcg_and_correlations_match_sklearn_and_scipy(spread_bert_dir, labelled):
    from sklearn.metrics import ndcg_score

    from polyrank.ranking import read_lists

    eval_set = read_lists(labelled)
    score = model_scorer(str(spread_bert_dir), 128)
    scores = [np.asarray(score(q.query, q.documents), dtype=np.float64) for q in eval_set]
    ours = evaluate_scores(eval_set, scores)
    expected_ndcg = np.mean([ndcg_score([q.labels], [s], k=10) for q, s in zip(eval_set, scores)])
    labels, flat = np.concatenate([q.labels for q in eval_set]), np.concatenate(scores)
    assert ours["ndcg@10"] == pytest.approx(expected_ndcg, abs=1e-6)
    assert ours["pearson"] == pytest.approx(scipy.stats.pearsonr(labels, flat)[0], abs=1e-6)
    assert ours["spearman"] == pytest.approx(scipy.stats.spearmanr(labels, flat)[0], abs=1e-6)


def test_a_query_without_relevant_documents_counts_zero():
    eval_set = [EvalQuery("q", ("a", "b"), (0.0, 0.0)), EvalQuery("r", ("c", "d"), (1.0, 0.0))]
    report = evaluate_scores(eval_set, [np.array([1.0, 0.0]), np.array([1.0, 0.0])])
    assert (report["ndcg@10"], report["mrr@10"], report["map"]) == (0.5, 0.5, 0.5)


def test_cli_prints_metrics_and_refuses_unlabelled_data(spread_bert_dir, labelled, tmp_path, capsys):
    assert main(["evaluate", "--model", str(spread_bert_dir), "--data", str(labelled)]) == 0
    assert set(json.loads(capsys.readouterr().out)) >= {"ndcg@10", "mrr@10", "map", "pearson", "spearman"}
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text(json.dumps({"query": "q", "documents": ["a", "b"]}) + "\n")
    assert main(["evaluate", "--model", str(spread_bert_dir), "--data", str(unlabelled)]) == 1
    assert capsys.readouterr().err.strip() == (
        'polyrank evaluate: error: every evaluation line needs "labels" (one per document)'
    )
