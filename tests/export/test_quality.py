"""Quality-gate figures against hand-computed values; the gate inside `polyrank export` is
tested with each precision in test_precisions.py, the ranking metrics in tests/test_ranking.py."""

import numpy as np
import pytest

from polyrank.export.quality import GateThresholds, clear_pair_counts, compare_rankings, top_k_fidelity, top_k_overlap
from polyrank.ranking import EvalQuery
from polyrank.export.quantize import int8_weight_format


def test_fidelity_and_clear_pairs_match_hand_computed_values():
    reference = np.array([5.0, 4.95, 3.0, 1.0])
    # the candidate shows product 1 first: it is within 0.1 of the reference's best
    assert top_k_fidelity(reference, np.array([4.9, 5.0, 3.0, 1.0]), 1, margin=0.1) == 1.0
    assert top_k_fidelity(reference, np.array([4.9, 5.0, 3.0, 1.0]), 1, margin=0.01) == 0.0
    # the candidate's top 2 holds product 2, 1.95 below the reference's 2nd best
    assert top_k_fidelity(reference, np.array([5.0, 1.0, 4.0, 0.0]), 2, margin=0.1) == 0.5
    assert top_k_overlap(np.arange(20.0), np.arange(20.0)[::-1]) == 0.0
    assert top_k_overlap(np.arange(20.0), np.arange(20.0)) == 1.0
    # 5 of the 6 pairs differ by more than 0.1; the candidate swaps one of them (2 and 3)
    assert clear_pair_counts(reference, np.array([5.0, 4.9, 1.0, 3.0]), margin=0.1) == (5, 4)


def test_near_ties_may_swap_without_failing_the_gate():
    queries = [EvalQuery("q", ("a", "b", "c", "d"))]
    reference = [np.array([5.0, 4.95, 3.0, 1.0])]
    swapped_tie = [np.array([4.9, 5.0, 3.0, 1.0])]
    report = compare_rankings(queries, reference, swapped_tie, GateThresholds())
    assert not report.failures()
    assert report.top1_changed == 1.0 and report.mean_spearman < 1.0  # the old gate would have failed it


def test_gate_report_names_each_failed_figure():
    queries = [EvalQuery("q", ("a", "b", "c", "d"), (1.0, 0.1, 0.0, 0.0))]
    reference = [np.array([4.0, 3.0, 2.0, 1.0])]
    report = compare_rankings(queries, reference, [np.array([1.0, 2.0, 3.0, 4.0])], GateThresholds())
    failures = report.failures()
    assert failures[0].startswith("top-1 fidelity 0.0000 < 0.99 (the first product is one the reference scores more than 0.1 below its best on 1 of 1 queries)")
    assert not any(f.startswith("top-10 fidelity") for f in failures)  # a 4-product list is its own top 10
    assert any(f.startswith("clear-pair concordance 0.0000 < 0.995 (of 6 pairs") for f in failures)
    assert any(f.startswith("label MRR@10 0.3333 vs 1.0000 for the reference: drop 0.6667 > 0.01") for f in failures)
    assert report.mean_spearman == pytest.approx(-1.0)  # reported, not gated
    assert not compare_rankings(queries, reference, reference, GateThresholds()).failures()


@pytest.mark.parametrize(
    "field, value", [("tie_margin", -1.0), ("min_top1_fidelity", 1.5), ("max_label_drop", -0.1)]
)
def test_gate_thresholds_reject_values_outside_their_range(field, value):
    with pytest.raises(ValueError, match=field):
        GateThresholds(**{field: value})


@pytest.mark.parametrize(
    "machine, flags, expected",
    [
        ("x86_64", {"avx2", "avx512_vnni"}, (False, "AVX-512 VNNI")),
        ("x86_64", {"avx2"}, (True, "AVX2 (no VNNI)")),
        ("aarch64", set(), (False, "Arm64")),
    ],
)
def test_int8_weight_format_follows_the_instruction_set(machine, flags, expected):
    chosen = int8_weight_format(machine, flags)
    assert (chosen["reduce_range"], chosen["instruction_set"]) == expected
