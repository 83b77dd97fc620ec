"""The Python scorer's own queue, without a server: interactive before batch, arrival order
within each, waves capped by pairs, deadlines dropped unscored, the bound per priority, and
close() handing back what still waits. The scorer model answers what these rules return; the
server tests (test_deadlines.py, test_overload.py) run it in Triton."""

from __future__ import annotations

import threading

import numpy as np

from polyrank.model_repository.scorer_queue import ScorerQueue, Waiting


def waiting(name, pairs=10, batch=False, arrived=0.0, deadline=100.0):
    return Waiting(name, {}, np.full(pairs, 5), batch, arrived, deadline, work_tokens=5 * pairs)


def names(entries):
    return [entry.request for entry in entries]


def test_interactive_first_then_batch_in_arrival_order_capped_by_pairs():
    queue = ScorerQueue({False: 10, True: 10}, clock=lambda: 1.0)
    assert queue.put([waiting("batch1", batch=True), waiting("a"), waiting("batch2", batch=True), waiting("b")]) == []
    wave, expired = queue.next_wave(max_pairs=30)
    assert names(wave) == ["a", "b", "batch1"] and expired == []
    assert names(queue.next_wave(max_pairs=30)[0]) == ["batch2"]


def test_a_request_larger_than_a_wave_is_a_wave_of_its_own():
    queue = ScorerQueue({False: 10, True: 10}, clock=lambda: 1.0)
    queue.put([waiting("large", pairs=200), waiting("small")])
    assert names(queue.next_wave(max_pairs=128)[0]) == ["large"]
    assert names(queue.next_wave(max_pairs=128)[0]) == ["small"]


def test_what_waited_past_its_deadline_is_returned_as_expired_not_scored():
    now = [1.0]
    queue = ScorerQueue({False: 10, True: 10}, clock=lambda: now[0])
    queue.put([waiting("late", deadline=2.0), waiting("in time", deadline=9.0), waiting("late batch", batch=True, deadline=2.5)])
    now[0] = 3.0
    wave, expired = queue.next_wave(max_pairs=100)
    assert names(wave) == ["in time"] and names(expired) == ["late", "late batch"]


def test_a_full_priority_refuses_only_its_own_and_not_within_one_handover():
    queue = ScorerQueue({False: 2, True: 1}, clock=lambda: 1.0)
    assert queue.put([waiting("a"), waiting("b"), waiting("c")]) == []  # handed over together
    refused = queue.put([waiting("d"), waiting("batch", batch=True)])
    assert names(refused) == ["d"]


def test_next_wave_waits_for_work_and_close_hands_back_what_waits():
    queue = ScorerQueue({False: 10, True: 10}, clock=lambda: 1.0)
    assert queue.next_wave(max_pairs=10, wait_s=0.01) is None  # nothing came
    taken = []
    worker = threading.Thread(target=lambda: taken.append(queue.next_wave(max_pairs=10)))
    worker.start()
    queue.put([waiting("a")])
    worker.join(timeout=10)
    assert names(taken[0][0]) == ["a"]
    queue.put([waiting("b"), waiting("c", batch=True)])
    assert names(queue.close()) == ["b", "c"]
    assert queue.next_wave(max_pairs=10) is None  # closed: the worker stops
    assert names(queue.put([waiting("d")])) == ["d"]
