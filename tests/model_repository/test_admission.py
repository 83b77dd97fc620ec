"""Admission control's arithmetic, without a server: the counts the tokenizer and scorer share,
the pipeline's measured speed (pairs per busy second), and the rejection message the client
reads its retry time from. A fake monotonic clock makes the busy time exact."""

from __future__ import annotations

import os

import pytest

from polyrank.client.types import OverloadedError, classify, retry_after_s
from polyrank.model_repository import admission
from polyrank.model_repository.admission import AdmissionControl, ScorerSide, remove_server_state


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(tmp_path, monkeypatch):
    monkeypatch.setattr(admission, "STATE_DIR", str(tmp_path))
    fake = Clock()
    monkeypatch.setattr(admission.time, "monotonic", fake)
    return fake


def scorer_at(clock: Clock, pairs_per_s: float) -> ScorerSide:
    """A scorer that has scored a batch request at `pairs_per_s` for one second."""
    side = ScorerSide("scorer")
    side.received(0, pairs_per_s)
    clock.advance(1.0)
    side.scored(pairs_per_s)
    return side


def test_nothing_measured_admits_everything():
    gate = AdmissionControl("scorer", deadline_share=0.8)
    assert gate.admit(10_000, deadline_s=0.01) is None
    assert gate.admit(10_000, deadline_s=0.01) is None


def test_speed_is_pairs_per_busy_second_and_follows_recent_work(clock):
    scorer = scorer_at(clock, 100)
    gate = AdmissionControl("scorer", deadline_share=0.8)
    assert gate.pairs_per_s() == pytest.approx(100)
    clock.advance(60)  # idle time is not counted
    assert gate.pairs_per_s() == pytest.approx(100)
    for _ in range(20):  # 200 busy seconds at 300 pairs/s: the old 100 pairs/s no longer counts
        scorer.received(0, 3000)
        clock.advance(10)
        scorer.scored(3000)
    assert gate.pairs_per_s() == pytest.approx(300, rel=0.01)
    other = ScorerSide("other")  # another pipeline's scorer is not counted
    other.received(0, 1000)
    clock.advance(1)
    other.scored(1000)
    assert gate.pairs_per_s() == pytest.approx(300, rel=0.01)


def test_the_time_between_executions_counts_while_admitted_work_waits(clock):
    """Passing tensors between the models and Triton's batching are part of what a request
    costs: the speed admission control uses is what the pipeline delivers, not the runtime."""
    scorer, gate = ScorerSide("scorer"), AdmissionControl("scorer", 0.8)
    for _ in range(10):
        assert gate.admit(100, deadline_s=100.0) is None
        clock.advance(0.1)  # tokenizing, and on its way to the scorer
        scorer.received(100, 100)
        clock.advance(0.4)
        scorer.scored(100)
        clock.advance(5)  # idle
    assert gate.pairs_per_s() == pytest.approx(100 / 0.5, rel=0.01)


def test_instances_share_one_busy_clock(clock):
    first, second, gate = ScorerSide("scorer"), ScorerSide("scorer"), AdmissionControl("scorer", 0.8)
    first.received(0, 100)
    second.received(0, 100)  # both score at once
    clock.advance(1.0)
    first.scored(100)
    second.scored(100)
    assert gate.pairs_per_s() == pytest.approx(200)


def test_admitted_work_is_ahead_until_the_scorer_has_scored_it(clock):
    scorer = scorer_at(clock, 100)  # 100 pairs/s
    gate, other_instance = AdmissionControl("scorer", 0.8), AdmissionControl("scorer", 0.8)
    assert gate.admit(500, deadline_s=2.0) is None  # nothing ahead: admitted, however large
    refusal = other_instance.admit(10, deadline_s=2.0)  # 5 s ahead
    assert refusal is not None and refusal.startswith(admission.REJECTION_PREFIX)
    assert "500 pairs are ahead (about 5.00 s at 100 pairs/s)" in refusal
    assert retry_after_s(refusal) == pytest.approx(5.0 + 0.1 - 1.6)
    assert classify("StatusCode.UNAVAILABLE", f"in ensemble 'rerank', {refusal}") == (OverloadedError, False)

    scorer.received(500, 500)  # the scorer takes it: still ahead while it runs
    assert gate.admit(10, deadline_s=2.0) is not None
    clock.advance(4.5)
    scorer.scored(450)
    assert gate.admit(100, deadline_s=2.0) is None  # 50 left + 100 of its own: 1.5 s of 1.6
    assert gate.admit(20, deadline_s=2.0) is not None  # and that one is now ahead too


def test_batch_work_is_ahead_only_while_the_scorer_holds_it(clock):
    scorer = scorer_at(clock, 100)
    gate = AdmissionControl("scorer", 0.8)
    scorer.received(0, 100)  # a batch request of 100 pairs (never admitted here) is being scored
    assert gate.admit(100, deadline_s=2.0) is not None  # 1 s ahead + 1 s of its own > 1.6 s
    assert gate.admit(50, deadline_s=2.0) is None  # 1 s + 0.5 s
    clock.advance(1.0)
    scorer.scored(100)  # the batch request is done: only the admitted 50 pairs are ahead
    assert gate.admit(100, deadline_s=2.0) is None


def test_a_failed_wave_is_no_longer_ahead_and_not_counted_as_speed(clock):
    scorer = scorer_at(clock, 100)
    gate = AdmissionControl("scorer", 0.8)
    scorer.received(0, 1000)
    assert gate.admit(100, deadline_s=2.0) is not None
    clock.advance(0.5)
    scorer.failed(1000)
    assert gate.admit(100, deadline_s=2.0) is None
    decay = 0.5 ** (0.5 / admission.SPEED_HALF_LIFE_S)  # its busy time counted, its pairs not
    assert gate.pairs_per_s() == pytest.approx(100 * decay / (1 * decay + 0.5))


def test_what_never_reaches_the_scorer_is_forgotten_once_it_is_idle(clock):
    scorer_at(clock, 100)
    gate = AdmissionControl("scorer", 0.8)
    assert gate.admit(100, deadline_s=2.0) is None  # then dropped from the scorer's queue, say
    assert gate.admit(100, deadline_s=2.0) is not None
    clock.advance(60)
    assert gate.admit(100, deadline_s=2.0) is None
    # and the minute it was counted as queued was busy time for at most IDLE_S
    decay = 0.5 ** (admission.IDLE_S / admission.SPEED_HALF_LIFE_S)
    assert gate.pairs_per_s() == pytest.approx(100 * decay / (1 * decay + admission.IDLE_S))


def test_a_stopped_servers_files_are_removed(tmp_path, clock):
    scorer_at(clock, 100)
    AdmissionControl("scorer", 0.8).admit(1, 1.0)
    assert len(list(tmp_path.iterdir())) == 1
    remove_server_state(os.getppid())
    assert list(tmp_path.iterdir()) == []
