"""Admission control's arithmetic, without a server: the counts the tokenizer and scorer share
(in tokens), the pipeline's measured speed (tokens per busy second), the running wave's credit,
the token estimate made before tokenizing, and the rejection message the client reads its retry
time from. A fake monotonic clock makes the busy time exact."""

from __future__ import annotations

import os

import pytest

from polyrank.client.types import OverloadedError, classify, retry_after_s
from polyrank.model_repository import admission
from polyrank.model_repository.admission import AdmissionControl, ScorerSide, TokenEstimate, remove_server_state


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


def score_wave(clock: Clock, scorer: ScorerSide, tokens: int, seconds: float, interactive: int = 0) -> None:
    scorer.received(interactive, tokens)
    scorer.wave_started(tokens)
    clock.advance(seconds)
    scorer.wave_done(tokens)


def scorer_at(clock: Clock, tokens_per_s: float) -> ScorerSide:
    """A scorer that has scored a batch request at `tokens_per_s` for one second."""
    side = ScorerSide("scorer")
    score_wave(clock, side, tokens_per_s, 1.0)
    return side


def test_nothing_measured_admits_everything():
    gate = AdmissionControl("scorer", deadline_share=0.8)
    assert gate.admit(10_000, deadline_s=0.01) is None
    assert gate.admit(10_000, deadline_s=0.01) is None


def test_speed_is_tokens_per_busy_second_and_follows_recent_work(clock):
    scorer = scorer_at(clock, 1000)
    gate = AdmissionControl("scorer", deadline_share=0.8)
    assert gate.tokens_per_s() == pytest.approx(1000)
    clock.advance(60)  # idle time is not counted
    assert gate.tokens_per_s() == pytest.approx(1000)
    for _ in range(20):  # 200 busy seconds at 3000 tokens/s: the old 1000 tokens/s no longer counts
        score_wave(clock, scorer, 30_000, 10.0)
    assert gate.tokens_per_s() == pytest.approx(3000, rel=0.01)
    score_wave(clock, ScorerSide("other"), 10_000, 1.0)  # another pipeline's scorer is not counted
    assert gate.tokens_per_s() == pytest.approx(3000, rel=0.01)


def test_the_time_between_executions_counts_while_admitted_work_waits(clock):
    """Passing tensors between the models and Triton's batching are part of what a request
    costs: the speed admission control uses is what the pipeline delivers, not the runtime."""
    scorer, gate = ScorerSide("scorer"), AdmissionControl("scorer", 0.8)
    for _ in range(10):
        assert gate.admit(1000, deadline_s=100.0) is None
        clock.advance(0.1)  # tokenizing, and on its way to the scorer
        score_wave(clock, scorer, 1000, 0.4, interactive=1000)
        clock.advance(5)  # idle
    assert gate.tokens_per_s() == pytest.approx(1000 / 0.5, rel=0.01)


def test_instances_share_one_busy_clock(clock):
    first, second, gate = ScorerSide("scorer"), ScorerSide("scorer"), AdmissionControl("scorer", 0.8)
    for instance in (first, second):  # both score at once
        instance.received(0, 1000)
        instance.wave_started(1000)
    clock.advance(1.0)
    first.wave_done(1000)
    second.wave_done(1000)
    assert gate.tokens_per_s() == pytest.approx(2000)


def test_admitted_work_is_ahead_until_the_scorer_has_scored_it(clock):
    scorer = scorer_at(clock, 1000)  # 1000 tokens/s
    gate, other_instance = AdmissionControl("scorer", 0.8), AdmissionControl("scorer", 0.8)
    assert gate.admit(5000, deadline_s=2.0) is None  # nothing ahead: admitted, however large
    refusal = other_instance.admit(100, deadline_s=2.0)  # 5 s ahead
    assert refusal is not None and refusal.startswith(admission.REJECTION_PREFIX)
    assert "5000 tokens are ahead (about 5.00 s at 1000 tokens/s, 0% margin" in refusal  # steady so far
    assert retry_after_s(refusal) == pytest.approx(5.0 + 0.1 - 1.6)
    assert classify("StatusCode.UNAVAILABLE", f"in ensemble 'rerank', {refusal}") == (OverloadedError, False)

    scorer.received(5000, 5000)  # the scorer takes it in two waves: ahead until scored
    scorer.wave_started(4500)
    assert gate.admit(100, deadline_s=2.0) is not None
    clock.advance(4.5)
    scorer.wave_done(4500)
    scorer.wave_started(500)
    assert gate.admit(1000, deadline_s=2.0) is None  # 500 left + 1000 of its own: 1.5 s of 1.6
    assert gate.admit(200, deadline_s=2.0) is not None  # and that one is now ahead too


def margin_of(refusal) -> float:
    return int(refusal.split("tokens/s, ")[1].split("% margin")[0]) / 100


def refusal_of_one_that_fits_without_margin(clock, scorer, gate, wave_s):
    """With a wave of 1000 tokens running, asks for a request that, without a margin, would end
    at 1.4 s of its 1.6 s budget (a margin up to 14% lets it in); the wave then ends after
    wave_s. The rejection message, or None (then it is scored at the measured speed)."""
    scorer.received(0, 1000)
    scorer.wave_started(1000)
    speed = gate.tokens_per_s()
    own = int(1.4 * speed) - 1000
    refusal = gate.admit(own, deadline_s=2.0)
    clock.advance(wave_s)
    scorer.wave_done(1000)
    if refusal is None:
        score_wave(clock, scorer, own, own / speed, interactive=own)
    return refusal


def test_a_slower_machine_widens_the_margin_jitter_does_not_and_it_narrows_again(clock):
    scorer = scorer_at(clock, 1000)
    gate = AdmissionControl("scorer", 0.8)
    for seconds in (1.3, 0.7) * 4:  # waves of 1000 tokens, 30% off either way: over a window, on time
        score_wave(clock, scorer, 1000, seconds)
    assert refusal_of_one_that_fits_without_margin(clock, scorer, gate, 1.0) is None
    for _ in range(6):  # the machine is 40% slower now: the speed catches up slowly, the margin at once
        score_wave(clock, scorer, 1000, 1.4)
    refusal = refusal_of_one_that_fits_without_margin(clock, scorer, gate, 1.4)
    assert refusal is not None and margin_of(refusal) > 0.3
    for _ in range(40):  # steady again at its new speed
        score_wave(clock, scorer, 1000, 1.4)
    assert refusal_of_one_that_fits_without_margin(clock, scorer, gate, 1.4) is None


def test_the_running_wave_is_credited_with_the_busy_time_since_it_started(clock):
    scorer = scorer_at(clock, 1000)
    gate = AdmissionControl("scorer", 0.8)
    scorer.received(0, 3000)
    scorer.wave_started(2000)  # a wave of 2000 tokens, then one of 1000 waits in the scorer
    assert gate.admit(1000, deadline_s=2.0) is not None  # 3 s ahead
    clock.advance(1.5)  # 1500 of the running 2000 are done: 0.5 + 1 s ahead, + 0.1 s of its own
    assert gate.admit(100, deadline_s=2.0) is None
    clock.advance(5)  # running late: the whole wave is credited, never the next one
    refusal = gate.admit(1000, deadline_s=2.0)
    assert refusal is not None and "1100 tokens are ahead" in refusal  # the waiting 1000 and the admitted 100


def test_batch_work_is_ahead_only_while_the_scorer_holds_it(clock):
    scorer = scorer_at(clock, 1000)
    gate = AdmissionControl("scorer", 0.8)
    scorer.received(0, 1000)  # a batch request of 1000 tokens (never admitted here) waits in the scorer
    assert gate.admit(1000, deadline_s=2.0) is not None  # 1 s ahead + 1 s of its own > 1.6 s
    assert gate.admit(500, deadline_s=2.0) is None  # 1 s + 0.5 s
    scorer.wave_started(1000)
    clock.advance(1.0)
    scorer.wave_done(1000)  # the batch request is done: only the admitted 500 tokens are ahead
    assert gate.admit(1000, deadline_s=2.0) is None


def test_the_early_check_counts_nothing_and_refuses_only_what_cannot_fit_even_then(clock):
    scorer_at(clock, 1000)
    gate = AdmissionControl("scorer", 0.8)
    assert gate.admit(1000, deadline_s=2.0) is None  # 1 s ahead from now on
    assert gate.refuse_early(500, deadline_s=2.0) is None  # 1.5 s of 1.6: may fit
    assert gate.refuse_early(500, deadline_s=2.0) is None  # and nothing was counted for it
    refusal = gate.refuse_early(700, deadline_s=2.0)
    assert "this request's at least 700 tokens take at least 0.70 s" in refusal
    assert retry_after_s(refusal) == pytest.approx(0.1)
    assert gate.admit(700, deadline_s=2.0) is not None  # tokenized: its real 700 do not fit
    assert gate.admit(600, deadline_s=2.0) is None


def test_a_failed_wave_is_no_longer_ahead_and_not_counted_as_speed(clock):
    scorer = scorer_at(clock, 1000)
    gate = AdmissionControl("scorer", 0.8)
    scorer.received(0, 10_000)
    scorer.wave_started(10_000)
    clock.advance(0.5)
    scorer.wave_done(10_000, scored=False)
    assert gate.admit(1000, deadline_s=2.0) is None
    decay = 0.5 ** (0.5 / admission.SPEED_HALF_LIFE_S)  # its busy time counted, its tokens not
    assert gate.tokens_per_s() == pytest.approx(1000 * decay / (1 * decay + 0.5))


def test_what_never_reaches_the_scorer_is_forgotten_once_it_is_idle(clock):
    scorer_at(clock, 1000)
    gate = AdmissionControl("scorer", 0.8)
    assert gate.admit(1000, deadline_s=2.0) is None  # then dropped from the scorer's queue, say
    assert gate.admit(1000, deadline_s=2.0) is not None
    clock.advance(60)
    assert gate.admit(1000, deadline_s=2.0) is None
    score_wave(clock, ScorerSide("scorer"), 1000, 1.0, interactive=1000)
    # the minute the dropped tokens were counted as queued was busy time for at most IDLE_S
    busy_s = admission.IDLE_S + 1.0
    decay = 0.5 ** (busy_s / admission.SPEED_HALF_LIFE_S)
    assert gate.tokens_per_s() == pytest.approx((1000 * decay + 1000) / (1 * decay + busy_s))


def test_work_is_the_tokens_the_scorer_computes_each_run_padded_to_its_longest_pair():
    lengths = [5, 30, 6, 7, 31, 8]
    # sorted 5 6 7 | 8 30 31 in runs of 3 pairs: 3 x 7 + 3 x 31
    assert admission.computed_tokens(lengths, max_pairs=3, max_tokens=1000) == 3 * 7 + 3 * 31
    # at most 40 padded tokens a run: 5 6 7 | 8 | 30 | 31 (8 30 would be 2 x 30)
    assert admission.computed_tokens(lengths, max_pairs=3, max_tokens=40) == 3 * 7 + 8 + 30 + 31
    assert admission.computed_tokens(lengths, max_pairs=1, max_tokens=1000) == sum(lengths)  # no padding
    runs = list(admission.scorer_runs(sorted(range(6), key=lengths.__getitem__), lengths, 3, 1000))
    assert runs == [[0, 2, 3], [5, 1, 4]]  # what the scorer runs: indices into its pairs


def test_token_estimate_learns_bytes_per_token_and_caps_at_max_length():
    estimate = TokenEstimate(max_length=64)
    english = TokenEstimate.pair_bytes(["red shoes"] * 2, ["leather boots, brown, size 42", "x" * 1000])
    assert english == [9 + 29, 9 + 1000]
    assert estimate.tokens_of(english) == 10 + 64  # 4 bytes per token to start; the long pair is truncated
    japanese = TokenEstimate.pair_bytes(["赤い靴"], ["革のブーツ、茶色、サイズ42"])  # 3 bytes a character
    for _ in range(50):  # the tokenizer found 12 tokens in it each time (not truncated: learned)
        estimate.learn(japanese, [12])
    assert estimate.tokens_of(japanese) == pytest.approx(12, abs=1)
    assert estimate.at_least(japanese) == pytest.approx(12 * admission.ESTIMATE_LOWER_BOUND, abs=1)
    estimate.learn(TokenEstimate.pair_bytes(["q"], ["y" * 10_000]), [64])  # truncated: teaches nothing
    assert estimate.tokens_of(japanese) == pytest.approx(12, abs=1)


def test_a_stopped_servers_files_are_removed(tmp_path, clock):
    scorer_at(clock, 1000)
    AdmissionControl("scorer", 0.8).admit(1, 1.0)
    assert len(list(tmp_path.iterdir())) == 1
    remove_server_state(os.getppid())
    assert list(tmp_path.iterdir()) == []


def test_a_killed_servers_counts_are_not_inherited(tmp_path, clock):
    """A killed server never removes its files; a later one with the same pid must not read
    its counts (work held forever would reject every request), and a starting scorer removes them."""
    ours = AdmissionControl("scorer", 0.8)
    ours.admit(1, 1.0)
    [current] = tmp_path.iterdir()
    pid, started = current.name[len("polyrank-"):].split("-", 1)[0].split(".")
    same_pid_earlier = tmp_path / f"polyrank-{pid}.{int(started) - 1}-scorer.counts"
    gone = tmp_path / "polyrank-999999999.1-scorer.counts"
    for stale in (same_pid_earlier, gone):
        stale.write_bytes(current.read_bytes())
    ScorerSide("scorer")
    assert list(tmp_path.iterdir()) == [current]


def test_waiting_batch_work_is_ahead_only_once_its_wave_starts_and_dropped_work_not_at_all(clock):
    scorer = scorer_at(clock, 1000)  # 1000 tokens/s
    gate = AdmissionControl("scorer", 0.8)
    scorer.received(0, 0)  # 5000 batch tokens wait in the scorer's queue: not ahead
    assert gate.admit(1000, deadline_s=2.0) is None
    scorer.received(1000, 1000)
    scorer.wave_started(1000)
    clock.advance(1.0)
    scorer.wave_done(1000)
    scorer.wave_started(5000, newly_held=5000)  # the batch wave starts: 5 s ahead now
    assert gate.admit(100, deadline_s=2.0) is not None
    clock.advance(5.0)
    scorer.wave_done(5000)
    assert gate.admit(1000, deadline_s=2.0) is None
    scorer.received(1000, 1000)  # its deadline passes in the scorer's queue: dropped, never scored
    scorer.dropped(1000)
    assert gate.admit(1500, deadline_s=2.0) is None  # nothing ahead: 1.5 s of its own


def test_work_dropped_on_its_way_counts_as_busy_once_not_at_every_change(clock):
    scorer = scorer_at(clock, 1000)
    gate = AdmissionControl("scorer", 0.8)
    assert gate.admit(1000, deadline_s=2.0) is None  # then dropped before the scorer, say
    for _ in range(10):  # other changes to the counts (a batch wave elsewhere in time, metrics reads)
        clock.advance(30)
        gate.tokens_per_s()
    score_wave(clock, scorer, 1000, 1.0)
    busy_s = admission.IDLE_S + 1.0  # not 10 x IDLE_S
    decay = 0.5 ** (busy_s / admission.SPEED_HALF_LIFE_S)
    assert gate.tokens_per_s() == pytest.approx((1000 * decay + 1000) / (1 * decay + busy_s))
