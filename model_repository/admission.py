"""Admission control for one cross-encoder pipeline. Its tokenizer (the pipeline's entrance)
admits an interactive request only if the work ahead of it, plus its own, can be scored within
its deadline; one that cannot is rejected at once, before it is tokenized or queued, instead of
waiting out its deadline in a queue and taking the scorer's time from requests that can still
make theirs. On an idle scorer every request is admitted, however large.

The work ahead is counted, not guessed: the tokenizer counts the interactive pairs it admits,
the scorer the interactive pairs it receives and all the pairs it receives and has scored, so

    ahead = (admitted - received)             interactive pairs queued between the two
          + (received_all - scored_all)       pairs the scorer holds now, batch ones included

and divided by the pipeline's measured speed it is the expected wait. The speed is pairs scored
per second of busy time, a decaying average: the pipeline is busy whenever the scorer holds
pairs or admitted ones are on their way to it, so the time between the scorer's executions
(passing tensors in and out, Triton's batching, a loaded machine's scheduling) counts, and the
speed is what the pipeline delivers under load, not what the runtime does alone (that was up to
1.5 times more on a loaded 2-core machine, and admitted requests then missed their deadlines).
Several scorer instances share one busy clock, so their speed is the pipeline's together.

The wave the scorer is running counts whole until it is done: crediting the part done by the
clock admitted more and measured worse (README, "Overload"). Batch-priority pairs that wait
are not ahead of an interactive request: Triton serves interactive ones first. A request Triton
drops from the scorer's queue (its deadline passed) is never received: once the scorer has been
idle for a while with nothing newly admitted, what is still counted as queued is known to be
gone and is cleared.

The model processes of one server share this through small files in /dev/shm (the temporary
folder where there is none), named after the tritonserver process (the parent of every model's
process) and the scorer, so two servers on one machine never mix; a file lock keeps the counts
whole. Copied next to the tokenizer's and scorer's model.py when a repository is built;
standard library only.
"""

import contextlib
import fcntl
import glob
import json
import math
import os
import struct
import tempfile
import time

STATE_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
SPEED_HALF_LIFE_S = 10.0  # pairs scored this many busy seconds ago count half in the measured speed
IDLE_S = 1.0  # an idle scorer and no admission for this long: nothing admitted is still on its way
# (a loaded 2-core machine was seen to leave waiting work untaken for 0.5 s)
# How the client recognises a rejection of admission control, and finds the retry time.
REJECTION_PREFIX = "admission control"
_COUNTERS = (
    "admitted", "received", "received_all", "scored_all", "last_admitted", "last_scorer_activity",
    "speed_pairs", "speed_busy_s", "clock",  # decayed pairs scored, decayed busy seconds, when last changed
)
_STATE = struct.Struct(f"{len(_COUNTERS)}d")


def is_batch(request) -> bool:
    """Batch priority, as the polyrank client marks a request (a request parameter: the Python
    backend does not see Triton's priority level)."""
    try:
        return json.loads(request.parameters() or "{}").get("polyrank_priority") == "batch"
    except ValueError:
        return False


def _state_prefix(scorer_name: str, server_pid=None) -> str:
    return os.path.join(STATE_DIR, f"polyrank-{server_pid or os.getppid()}-{scorer_name}")


def remove_server_state(server_pid: int) -> None:
    """Removes a stopped server's files (a killed model process cannot remove its own)."""
    for path in glob.glob(_state_prefix("*", server_pid)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class PipelineCounts:
    """The counters a pipeline's tokenizer and scorer processes share, read and changed under a lock."""

    def __init__(self, scorer_name: str):
        self.descriptor = os.open(f"{_state_prefix(scorer_name)}.counts", os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def changing(self):
        """Yields the counters as a dict, the busy clock advanced to now; what the block
        changes is written back."""
        fcntl.flock(self.descriptor, fcntl.LOCK_EX)
        try:
            stored = os.pread(self.descriptor, _STATE.size, 0)
            counts = dict(zip(_COUNTERS, _STATE.unpack(stored) if len(stored) == _STATE.size else [0.0] * len(_COUNTERS)))
            _advance_busy_clock(counts, time.monotonic())
            yield counts
            os.pwrite(self.descriptor, _STATE.pack(*(counts[name] for name in _COUNTERS)), 0)
        finally:
            fcntl.flock(self.descriptor, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.descriptor)  # the file stays for the other processes; the server removes it


def _advance_busy_clock(counts, now: float) -> None:
    """Adds the time since the last change to the busy seconds if the pipeline had work then,
    decaying what was measured before. Admitted pairs not yet received count as work for at
    most IDLE_S: an idle scorer takes waiting work at once, so longer means they were dropped."""
    elapsed = now - counts["clock"] if counts["clock"] else 0.0
    counts["clock"] = now
    if counts["received_all"] > counts["scored_all"]:
        busy_s = elapsed
    elif counts["admitted"] > counts["received"]:
        busy_s = min(elapsed, IDLE_S)
    else:
        return
    decay = 0.5 ** (busy_s / SPEED_HALF_LIFE_S)
    counts["speed_pairs"] *= decay
    counts["speed_busy_s"] = counts["speed_busy_s"] * decay + busy_s


def _pairs_per_s(counts):
    """The measured speed, or None before anything was scored."""
    if counts["speed_pairs"] > 0 and counts["speed_busy_s"] > 0:
        return counts["speed_pairs"] / counts["speed_busy_s"]
    return None


class ScorerSide:
    """What the scorer tells admission control: the pairs it receives and those it has scored."""

    def __init__(self, scorer_name: str):
        self.counts = PipelineCounts(scorer_name)

    def received(self, interactive_pairs: int, all_pairs: int) -> None:
        with self.counts.changing() as counts:
            counts["received"] += interactive_pairs
            counts["received_all"] += all_pairs
            counts["last_scorer_activity"] = counts["clock"]

    def scored(self, pairs: int) -> None:
        with self.counts.changing() as counts:
            counts["scored_all"] += pairs
            counts["speed_pairs"] += pairs
            counts["last_scorer_activity"] = counts["clock"]

    def failed(self, pairs: int) -> None:
        """Pairs the scorer gave up on: no longer held, and not part of its speed."""
        with self.counts.changing() as counts:
            counts["scored_all"] += pairs
            counts["last_scorer_activity"] = counts["clock"]

    def close(self) -> None:
        self.counts.close()


class AdmissionControl:
    """The tokenizer's side: admit() decides for one interactive request."""

    def __init__(self, scorer_name: str, deadline_share: float):
        self.deadline_share = deadline_share
        self.counts = PipelineCounts(scorer_name)

    def pairs_per_s(self):
        """The pipeline's measured speed, or None before anything was scored."""
        with self.counts.changing() as counts:
            return _pairs_per_s(counts)

    def admit(self, pairs: int, deadline_s: float):
        """None if admitted (its pairs are then counted as queued), else the rejection message,
        which ends with the seconds after which a retry would be admitted."""
        with self.counts.changing() as counts:
            now = counts["clock"]
            holding = counts["received_all"] - counts["scored_all"]
            queued = counts["admitted"] - counts["received"]
            idle = holding <= 0 and now - max(counts["last_admitted"], counts["last_scorer_activity"]) > IDLE_S
            if queued < 0 or (queued > 0 and idle):  # below 0: the scorer's warm-up, never admitted here
                counts["admitted"], queued = counts["received"], 0  # dropped from the queue, never to arrive
            ahead = max(0.0, queued) + max(0.0, holding)
            speed = _pairs_per_s(counts)
            if ahead > 0 and speed is not None:  # nothing measured yet (or a native scorer): admit
                wait_s, work_s, budget_s = ahead / speed, pairs / speed, deadline_s * self.deadline_share
                if wait_s + work_s > budget_s:
                    retry_after_s = math.ceil((wait_s + work_s - budget_s) * 10) / 10
                    return (
                        f"{REJECTION_PREFIX}: {ahead:.0f} pairs are ahead (about {wait_s:.2f} s at {speed:.0f} pairs/s) "
                        f"and this request's {pairs} take {work_s:.2f} s, more than {self.deadline_share:g} of its "
                        f"{deadline_s:.2f} s deadline; retry after {retry_after_s:.1f} s"
                    )
            counts["admitted"] += pairs
            counts["last_admitted"] = now
            return None

    def close(self) -> None:
        self.counts.close()
