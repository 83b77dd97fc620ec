"""Ranked lists and ranking metrics against hand-computed values."""

import numpy as np
import pytest

from polyrank.ranking import (
    ListsError,
    average_precision,
    kendall_tau,
    mrr_at_k,
    ndcg_at_k,
    read_lists,
    spearman,
)


def test_spearman_matches_hand_computed_values():
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    # ranks (0,1,2,3) vs (0,2,1,3): 1 - 6*2/(4*15) = 0.8
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])) == pytest.approx(0.8)


def test_ndcg_mrr_map_match_hand_computed_values():
    labels = np.array([0.0, 1.0, 0.0, 1.0])
    scores = np.array([4.0, 3.0, 2.0, 1.0])  # ranking: 0, 1, 2, 3 -> relevant at ranks 2 and 4
    ideal = 1 + 1 / np.log2(3)
    assert ndcg_at_k(labels, scores) == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / ideal)
    assert mrr_at_k(labels, scores) == pytest.approx(0.5)
    assert average_precision(labels, scores) == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_kendall_tau_matches_hand_computed_values():
    assert kendall_tau(np.array([1.0, 2, 3]), np.array([1.0, 3, 2])) == pytest.approx(1 / 3)  # 2 of 3 pairs agree
    assert kendall_tau(np.array([1.0, 2, 3]), np.array([3.0, 2, 1])) == pytest.approx(-1.0)


def test_eval_set_is_read_from_jsonl_and_bad_lines_are_named(tmp_path):
    good = tmp_path / "eval.jsonl"
    good.write_text('{"query": "shoes", "documents": ["a", "b"], "labels": [1, 0]}\n\n')
    [query] = read_lists(good)
    assert query.labels == (1.0, 0.0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "shoes", "documents": ["a", "b"], "labels": [1]}\n')
    with pytest.raises(ListsError, match="bad.jsonl:1: 1 labels for 2 documents"):
        read_lists(bad)
