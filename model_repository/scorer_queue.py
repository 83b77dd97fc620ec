"""The Python scorer's own queue of requests waiting to be scored, and its rules: interactive
requests before batch ones, in arrival order within each; a request whose deadline passed while
it waited is dropped unscored; a request that finds max_size others of its priority waiting is
refused.

Why the scorer keeps its own queue instead of waiting in Triton's: with priority levels or a
queue policy (which the deadlines, bounds and priorities need), Triton's dynamic batcher cannot
prefetch, and when a request waits while the instance is busy, the batcher is woken when the
execution ends but before the instance is ready to take more; it then sleeps for up to 500 ms
(its default wait) unless another request arrives (core's dynamic_batch_scheduler.cc,
WaitForPayloadSlotAvailable). Measured at twice the capacity: 28% of the scorer's waves started
0.1-0.5 s after it went idle with a request waiting, and admitted requests missed their
deadlines. The scorer's execute only puts requests here and returns, so Triton hands each one
over as it arrives, and a worker thread takes waves from here with no gap.

Copied next to the scorer's model.py when a repository is built; standard library only.
"""

import collections
import dataclasses
import threading
import time


@dataclasses.dataclass(eq=False)  # compared by identity: its inputs are arrays
class Waiting:
    """One request in the queue: its Triton request, its inputs, each pair's real length, and
    its work as admission control counts it."""

    request: object
    inputs: dict
    lengths: object  # numpy array, one real length per pair
    batch: bool
    arrived: float  # time.monotonic()
    deadline: float
    work_tokens: int  # the tokens the scorer computes for it (admission.computed_tokens)

    @property
    def pairs(self) -> int:
        return len(self.lengths)


class ScorerQueue:
    """Thread-safe: the scorer's execute puts, its worker thread takes waves."""

    def __init__(self, max_size: dict, clock=time.monotonic):
        self.max_size = max_size  # {batch: bool -> requests}
        self.clock = clock
        self._waiting = {False: collections.deque(), True: collections.deque()}
        self._changed = threading.Condition()
        self._closed = False

    def put(self, entries: list) -> list:
        """Queues the requests of one execution; returns those refused: the queue is closed, or
        max_size requests of their priority were already waiting when they came (as in Triton,
        the requests handed over together are not counted against each other)."""
        with self._changed:
            waiting = {batch: len(queue) for batch, queue in self._waiting.items()}
            refused = [entry for entry in entries if self._closed or waiting[entry.batch] >= self.max_size[entry.batch]]
            for entry in entries:
                if entry not in refused:
                    self._waiting[entry.batch].append(entry)
            self._changed.notify()
            return refused

    def next_wave(self, max_pairs: int, wait_s=None):
        """Waits for work; returns (wave, expired): the next requests to score, at most max_pairs
        pairs between them (a larger request is a wave of its own), and those whose deadline
        passed while they waited. None once the queue is closed, or after wait_s with nothing."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._closed or any(self._waiting.values()), wait_s):
                return None
            if self._closed:
                return None
            now = self.clock()
            wave, pairs, expired = [], 0, []
            for batch in (False, True):  # interactive first
                queue = self._waiting[batch]
                while queue:
                    if queue[0].deadline <= now:
                        expired.append(queue.popleft())
                    elif wave and pairs + queue[0].pairs > max_pairs:
                        return wave, expired
                    else:
                        pairs += queue[0].pairs
                        wave.append(queue.popleft())
            return wave, expired

    def close(self) -> list:
        """Stops the queue; returns what was still waiting (to be answered with an error)."""
        with self._changed:
            self._closed = True
            left = [*self._waiting[False], *self._waiting[True]]
            for queue in self._waiting.values():
                queue.clear()
            self._changed.notify_all()
            return left
