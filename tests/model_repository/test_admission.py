"""Admission control's arithmetic, without a server: the counts the tokenizer and scorer share,
the scorer's measured speed, and the rejection message the client reads its retry time from."""

from __future__ import annotations

import os
import time

import pytest

from polyrank.client.types import OverloadedError, classify, retry_after_s
from polyrank.model_repository import admission
from polyrank.model_repository.admission import AdmissionControl, ScorerSide, remove_server_state


@pytest.fixture(autouse=True)
def state_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(admission, "STATE_DIR", str(tmp_path))


def scorer_at(pairs_per_s: float, name: str = "scorer_0_0") -> ScorerSide:
    side = ScorerSide("scorer", name)
    side.received(0, pairs_per_s)
    side.scored(pairs_per_s, 1.0)
    return side


def test_nothing_measured_admits_everything():
    gate = AdmissionControl("scorer", deadline_share=0.8)
    assert gate.admit(10_000, deadline_s=0.01) is None
    assert gate.admit(10_000, deadline_s=0.01) is None


def test_speeds_of_instances_add_up_and_decay_towards_recent_runs():
    first, _ = scorer_at(100), scorer_at(50, "scorer_0_1")
    gate = AdmissionControl("scorer", deadline_share=0.8)
    assert gate.pairs_per_s() == pytest.approx(150)
    for _ in range(20):  # 200 s of runs at 300 pairs/s: the old 100 pairs/s no longer counts
        first.received(0, 3000)
        first.scored(3000, 10.0)
    assert gate.pairs_per_s() == pytest.approx(300 + 50, rel=0.01)
    ScorerSide("other", "other_0_0").scored(1000, 1.0)  # another pipeline's scorer is not counted
    assert gate.pairs_per_s() == pytest.approx(350, rel=0.01)


def test_admitted_work_is_ahead_until_the_scorer_has_scored_it():
    scorer = scorer_at(100)  # 100 pairs/s
    gate, other_instance = AdmissionControl("scorer", 0.8), AdmissionControl("scorer", 0.8)
    assert gate.admit(500, deadline_s=2.0) is None  # nothing ahead: admitted, however large
    refusal = other_instance.admit(10, deadline_s=2.0)  # 5 s ahead
    assert refusal is not None and refusal.startswith(admission.REJECTION_PREFIX)
    assert "500 pairs are ahead (about 5.00 s at 100 pairs/s)" in refusal
    assert retry_after_s(refusal) == pytest.approx(5.0 + 0.1 - 1.6)
    assert classify("StatusCode.UNAVAILABLE", f"in ensemble 'rerank', {refusal}") == (OverloadedError, False)

    scorer.received(500, 500)  # the scorer takes it: still ahead while it runs
    assert gate.admit(10, deadline_s=2.0) is not None
    scorer.scored(450, 4.5)
    assert gate.admit(100, deadline_s=2.0) is None  # 50 left + 100 of its own: 1.5 s of 1.6
    assert gate.admit(20, deadline_s=2.0) is not None  # and that one is now ahead too


def test_batch_work_is_ahead_only_while_the_scorer_holds_it():
    scorer = scorer_at(100)
    gate = AdmissionControl("scorer", 0.8)
    scorer.received(0, 100)  # a batch request of 100 pairs (never admitted here) is being scored
    assert gate.admit(100, deadline_s=2.0) is not None  # 1 s ahead + 1 s of its own > 1.6 s
    assert gate.admit(50, deadline_s=2.0) is None  # 1 s + 0.5 s
    scorer.scored(100, 1.0)  # the batch request is done: only the admitted 50 pairs are ahead
    assert gate.admit(100, deadline_s=2.0) is None


def test_what_never_reaches_the_scorer_is_forgotten_once_it_is_idle(monkeypatch):
    scorer_at(100)
    gate = AdmissionControl("scorer", 0.8)
    assert gate.admit(100, deadline_s=2.0) is None  # then dropped from the scorer's queue, say
    assert gate.admit(100, deadline_s=2.0) is not None
    monkeypatch.setattr(admission, "IDLE_S", 0.01)
    time.sleep(0.02)
    assert gate.admit(100, deadline_s=2.0) is None


def test_a_stopped_servers_files_are_removed(tmp_path):
    scorer_at(100)
    AdmissionControl("scorer", 0.8).admit(1, 1.0)
    assert len(list(tmp_path.iterdir())) == 2
    remove_server_state(os.getppid())
    assert list(tmp_path.iterdir()) == []
