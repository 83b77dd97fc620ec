"""Admission control for one cross-encoder pipeline. Its tokenizer (the pipeline's entrance)
admits an interactive request only if the work ahead of it, plus its own, can be scored within
its deadline; one that cannot is rejected at once, before it is tokenized or queued, instead of
waiting out its deadline in a queue and taking the scorer's time from requests that can still
make theirs. On an idle scorer every request is admitted, however large.

Work is counted in tokens, the unit the scorer's time follows (a 100-product request takes
from 0.8 to 2 s on one CPU, depending on its texts' lengths): the tokens the scorer computes,
each of its runs padded to its longest pair (computed_tokens). The padding is 10-20% of a
request's real tokens, and it varies, so counted in real tokens the time of a wave was off by
up to 0.10 s, twice as much (traced at twice the capacity). The work is counted, not guessed:
the tokenizer counts the interactive tokens it admits, the scorer the interactive tokens it
receives into its queue (scorer_queue.py), all the tokens it holds (batch ones from when their
wave starts) and those it has scored or dropped, so

    ahead = (admitted - received)             interactive tokens on their way between the two
          + (received_all - scored_all)       tokens the scorer holds now, batch ones included
          - done                              the part of the running waves already scored

where `done` is the busy time since the running waves started at the measured speed, at most
their tokens. Divided by the speed, `ahead` is the expected wait. A request's own tokens are
counted once it is tokenized; before that, a lower bound of them, from its texts' UTF-8 bytes
(TokenEstimate: bytes per token learned from the requests tokenized so far; padding only adds
to it), lets a request that could not fit even then be turned away without being tokenized
(most rejections under overload: the work ahead alone is too much).

The speed is tokens scored per second of busy time, a decaying average: the pipeline is busy
whenever the scorer holds tokens or admitted ones are on their way to it, so the time between
the scorer's executions (passing tensors in and out, Triton's batching, a loaded machine's
scheduling) counts, and the speed is what the pipeline delivers under load, not what the
runtime does alone (that was up to 1.5 times more on a loaded 2-core machine, and admitted
requests then missed their deadlines). Several scorer instances share one busy clock, so their
speed is the pipeline's together.

A request's predicted time (the wait and its own work) is stretched by a margin: DEVIATIONS
times the recent mean relative error of the predicted busy time, over windows of about a
deadline (DEVIATION_WINDOW_S). Small on a steady machine, it widens when the speed swings (a
shared host's did by 25%) and narrows again after.

Batch-priority tokens that wait are not ahead of an interactive request: the scorer serves
interactive ones first. A request Triton drops on its way to the scorer (its deadline passed) is
never received: once the scorer has been idle for a while with nothing newly admitted, what is
still counted as on its way is known to be gone and is cleared.

The model processes of one server share this through small files in /dev/shm (the temporary
folder where there is none), named after the tritonserver process (the parent of every model's
process: its pid and start time) and the scorer, so two servers on one machine never mix, nor
does a server that gets the pid of a killed one (whose files the next scorer to start removes);
a file lock keeps the counts whole. Copied next to the tokenizer's and scorer's model.py when
a repository is built; standard library only.
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
SPEED_HALF_LIFE_S = 10.0  # tokens scored this many busy seconds ago count half in the measured speed
IDLE_S = 1.0  # an idle scorer and no admission for this long: nothing admitted is still on its way
# (a loaded 2-core machine was seen to leave waiting work untaken for 0.5 s)
# How the client recognises a rejection of admission control, and finds the retry time.
REJECTION_PREFIX = "admission control"
_COUNTERS = (
    "admitted", "received", "received_all", "scored_all", "last_admitted", "last_scorer_activity",
    "running", "running_since",  # tokens in the waves being scored, and when the latest of them started
    "speed_tokens", "speed_busy_s", "clock",  # decayed tokens scored, decayed busy seconds, when last changed
    "unsettled_busy_s",  # busy seconds since the last wave ended, counted in the speed when the next one ends
    "speed_deviation",  # decayed mean of how far the busy time of a window was from its prediction, relative
    "window_busy_s", "window_predicted_s",  # the busy time of the window so far, and what the speed predicted for it
)
_STATE = struct.Struct(f"{len(_COUNTERS)}d")
BYTES_PER_TOKEN_AT_START = 4.0  # about right for Latin scripts, until tokenized requests tell
ESTIMATE_HALF_LIFE_TOKENS = 50_000.0
# Real counts of 100-product requests were 0.53-1.43 times the estimate (perf/overload.py's
# workload, English-vocabulary MiniLM on multilingual products): too loose to admit on, so the
# estimate only turns away early what would not fit even at half of it.
ESTIMATE_LOWER_BOUND = 0.5
# A request's predicted time is stretched by this many times the speed's recent deviation (as
# TCP's retransmission timeout adds 4 deviations to the mean round trip): waves were timed
# within a few % on a steady machine, but a shared host's speed swung by 25% between runs and
# within them, and admitted requests then missed their deadlines.
DEVIATIONS = 4.0
# The deviation is measured over windows of about a deadline's length of busy time, the horizon
# a prediction must hold for: the jitter of short waves (a small model's take milliseconds)
# averages out there, and a slower machine does not.
DEVIATION_WINDOW_S = 2.0
DEVIATION_WEIGHT = 0.25  # of the latest window in the deviation (TCP's weight for its latest round trip)
DEVIATION_CAP = 0.5  # one window counts at most this relative error (a stall of the whole machine)


def is_batch(request) -> bool:
    """Batch priority, as the polyrank client marks a request (a request parameter: the Python
    backend does not see Triton's priority level)."""
    try:
        return json.loads(request.parameters() or "{}").get("polyrank_priority") == "batch"
    except ValueError:
        return False


def deadline_s(request, default_s: float) -> float:
    """Seconds a request may wait: its call's deadline, which may shorten the queue's default
    but never lengthen it (Triton's rule for allow_timeout_override)."""
    call_s = request.timeout() / 1e6
    return min(call_s, default_s) if call_s else default_s


def _server_key(pid: int) -> str:
    """The process id and its start time (clock ticks after boot): a later server that gets a
    killed one's pid must not take over its counts."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return f"{pid}.{stat.read().rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return str(pid)


def _state_prefix(scorer_name: str, server_pid: int) -> str:
    return os.path.join(STATE_DIR, f"polyrank-{_server_key(server_pid)}-{scorer_name}")


def remove_server_state(server_pid: int) -> None:
    """Removes a stopped server's files (a killed model process cannot remove its own)."""
    for path in glob.glob(os.path.join(STATE_DIR, f"polyrank-{server_pid}[.-]*")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def remove_stale_state() -> None:
    """Removes the files of servers no longer running (killed, so never stopped)."""
    for path in glob.glob(os.path.join(STATE_DIR, "polyrank-*-*.counts")):
        key = os.path.basename(path)[len("polyrank-"):].split("-", 1)[0]
        pid = key.split(".", 1)[0]
        if pid.isdigit() and _server_key(int(pid)) != key:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


class PipelineCounts:
    """The counters a pipeline's tokenizer and scorer processes share, read and changed under a
    lock: those of the server that started this process, or of `server_pid`'s (to inspect it)."""

    def __init__(self, scorer_name: str, server_pid: int = None):
        prefix = _state_prefix(scorer_name, server_pid or os.getppid())
        self.descriptor = os.open(f"{prefix}.counts", os.O_RDWR | os.O_CREAT, 0o600)

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
    """Adds the time since the last change to the unsettled busy seconds if the pipeline had
    work then. Admitted tokens not yet received count as work until IDLE_S after the last
    admission: an idle scorer takes waiting work at once, so longer means they were dropped.
    (Counted per change instead, a dropped request's tokens added up to IDLE_S at every change
    until the next admission: the likely reason a fresh clone's test session measured the tiny
    model at 186 tokens/s and rejected a call's second chunk behind its first.)"""
    previous = counts["clock"] or now
    counts["clock"] = now
    if counts["received_all"] > counts["scored_all"]:
        counts["unsettled_busy_s"] += now - previous
    elif counts["admitted"] > counts["received"]:
        counts["unsettled_busy_s"] += max(0.0, min(now, counts["last_admitted"] + IDLE_S) - previous)


def _settle_speed(counts, tokens_scored: float) -> None:
    """At a wave's end: the busy time since the last one and the tokens scored join the speed,
    decaying what was measured before. (Settled only at a wave's end, so the speed never
    counts a running wave's time without its tokens.)"""
    busy_s, counts["unsettled_busy_s"] = counts["unsettled_busy_s"], 0.0
    speed = _tokens_per_s(counts)
    if speed is not None and tokens_scored > 0:
        counts["window_busy_s"] += busy_s
        counts["window_predicted_s"] += tokens_scored / speed
        if counts["window_busy_s"] >= DEVIATION_WINDOW_S:
            predicted_s = counts["window_predicted_s"]
            error = min(DEVIATION_CAP, abs(counts["window_busy_s"] - predicted_s) / predicted_s)
            counts["speed_deviation"] += DEVIATION_WEIGHT * (error - counts["speed_deviation"])
            counts["window_busy_s"] = counts["window_predicted_s"] = 0.0
    decay = 0.5 ** (busy_s / SPEED_HALF_LIFE_S)
    counts["speed_tokens"] = counts["speed_tokens"] * decay + tokens_scored
    counts["speed_busy_s"] = counts["speed_busy_s"] * decay + busy_s


def _tokens_per_s(counts):
    """The measured speed, or None before anything was scored."""
    if counts["speed_tokens"] > 0 and counts["speed_busy_s"] > 0:
        return counts["speed_tokens"] / counts["speed_busy_s"]
    return None


class ScorerSide:
    """What the scorer tells admission control: the tokens it receives, and its waves."""

    def __init__(self, scorer_name: str):
        remove_stale_state()
        self.counts = PipelineCounts(scorer_name)

    def received(self, interactive_tokens: int, all_tokens: int) -> None:
        with self.counts.changing() as counts:
            counts["received"] += interactive_tokens
            counts["received_all"] += all_tokens
            counts["last_scorer_activity"] = counts["clock"]

    def wave_started(self, tokens: int, newly_held: int = 0) -> None:
        """A wave of `tokens` starts; `newly_held` of them (batch work, which waited without
        being counted as ahead of interactive requests) are counted as held from now."""
        with self.counts.changing() as counts:
            counts["received_all"] += newly_held
            counts["running"] += tokens
            counts["running_since"] = counts["last_scorer_activity"] = counts["clock"]

    def wave_done(self, tokens: int, scored: bool = True) -> None:
        """A wave scored, or given up on (`scored=False`: no longer held, not part of the speed)."""
        with self.counts.changing() as counts:
            counts["running"] = max(0.0, counts["running"] - tokens)
            counts["scored_all"] += tokens
            _settle_speed(counts, tokens if scored else 0)
            counts["last_scorer_activity"] = counts["clock"]

    def dropped(self, tokens: int) -> None:
        """Held tokens that will not be scored (their deadline passed while they waited, or the call was cancelled)."""
        if tokens:
            with self.counts.changing() as counts:
                counts["scored_all"] += tokens
                counts["last_scorer_activity"] = counts["clock"]

    def close(self) -> None:
        self.counts.close()


def scorer_runs(order, lengths, max_pairs, max_tokens):
    """How the scorer splits pairs into runtime calls: length-sorted pair indices (`order`) in
    runs of at most max_pairs pairs and max_tokens padded tokens (the longest member's length
    x pairs). Defined here so admission counts a request's work as the scorer computes it."""
    run = []
    for index in order:
        width = lengths[index]  # sorted ascending: the newest member is the longest
        if run and (len(run) >= max_pairs or width * (len(run) + 1) > max_tokens):
            yield run
            run = []
        run.append(index)
    if run:
        yield run


def computed_tokens(lengths, max_pairs, max_tokens) -> int:
    """The tokens the scorer computes for one request's pairs (their real lengths) scored on
    their own: each run padded to its longest pair."""
    widths = sorted(map(int, lengths))  # plain ints: per request, numpy scalars cost more than the rest
    runs = scorer_runs(range(len(widths)), widths, max_pairs, max_tokens)
    return sum(widths[run[-1]] * len(run) for run in runs)  # sorted: a run's last pair is its longest


class TokenEstimate:
    """A request's tokens before it is tokenized, from its texts' UTF-8 bytes: per pair the
    bytes over the bytes per token, at most max_length. The ratio is learned from the pairs
    tokenized since (those not truncated), a decaying average: scripts differ (about 4 bytes
    per token in English, fewer in CJK), and so do tokenizers."""

    def __init__(self, max_length: int):
        self.max_length = max_length
        self.bytes, self.tokens = BYTES_PER_TOKEN_AT_START * 1000, 1000.0  # a prior worth 1000 tokens

    @staticmethod
    def pair_bytes(queries, documents) -> list:
        return [len(query.encode()) + len(document.encode()) for query, document in zip(queries, documents)]

    def tokens_of(self, pair_bytes) -> int:
        bytes_per_token = self.bytes / self.tokens
        return sum(min(self.max_length, math.ceil(size / bytes_per_token)) for size in pair_bytes)

    def at_least(self, pair_bytes) -> int:
        """A lower bound of the tokens: a share of the estimate no request went below."""
        return math.floor(self.tokens_of(pair_bytes) * ESTIMATE_LOWER_BOUND)

    def learn(self, pair_bytes, pair_tokens) -> None:
        untruncated = [(size, tokens) for size, tokens in zip(pair_bytes, pair_tokens) if tokens < self.max_length]
        tokens = sum(tokens for _, tokens in untruncated)
        decay = 0.5 ** (tokens / ESTIMATE_HALF_LIFE_TOKENS)
        self.bytes = self.bytes * decay + sum(size for size, _ in untruncated)
        self.tokens = self.tokens * decay + tokens


class AdmissionControl:
    """The tokenizer's side: refuse_early() before tokenizing, admit() after, for one interactive request."""

    def __init__(self, scorer_name: str, deadline_share: float):
        self.deadline_share = deadline_share
        self.counts = PipelineCounts(scorer_name)

    def tokens_per_s(self):
        """The pipeline's measured speed, or None before anything was scored."""
        with self.counts.changing() as counts:
            return _tokens_per_s(counts)

    def refuse_early(self, at_least_tokens: int, deadline_s: float):
        """Before tokenizing: the rejection message if even `at_least_tokens` (a lower bound of
        the request's tokens) would not be done in time, else None (nothing is counted)."""
        with self.counts.changing() as counts:
            return self._refusal(counts, at_least_tokens, deadline_s, at_least=True)

    def admit(self, tokens: int, deadline_s: float):
        """After tokenizing: None if admitted (its tokens are then counted as on their way to
        the scorer), else the rejection message, which ends with the seconds after which a
        retry would be admitted."""
        with self.counts.changing() as counts:
            refusal = self._refusal(counts, tokens, deadline_s)
            if refusal is None:
                counts["admitted"] += tokens
                counts["last_admitted"] = counts["clock"]
            return refusal

    def _refusal(self, counts, tokens, deadline_s, at_least=False):
        now = counts["clock"]
        holding = counts["received_all"] - counts["scored_all"]
        queued = counts["admitted"] - counts["received"]
        idle = holding <= 0 and now - max(counts["last_admitted"], counts["last_scorer_activity"]) > IDLE_S
        if queued < 0 or (queued > 0 and idle):  # below 0: the scorer's warm-up, never admitted here
            counts["admitted"], queued = counts["received"], 0  # dropped on the way, never to arrive
        speed = _tokens_per_s(counts)
        if speed is None or holding + queued <= 0:  # nothing measured yet (or a native scorer), or idle: admit
            return None
        # With several scorer instances this is rougher (the latest wave's start, their speed
        # together); measured with one.
        done = min(counts["running"], (now - counts["running_since"]) * speed)
        ahead = max(0.0, queued) + max(0.0, holding - done)
        margin = DEVIATIONS * counts["speed_deviation"]
        wait_s, work_s = ahead / speed * (1 + margin), tokens / speed * (1 + margin)
        budget_s = deadline_s * self.deadline_share
        if wait_s + work_s <= budget_s:
            return None
        retry_after_s = math.ceil((wait_s + work_s - budget_s) * 10) / 10
        own = f"at least {tokens} tokens take at least" if at_least else f"{tokens} take"
        return (
            f"{REJECTION_PREFIX}: {ahead:.0f} tokens are ahead (about {wait_s:.2f} s at {speed:.0f} tokens/s, "
            f"{margin:.0%} margin for its recent variation) and this request's {own} {work_s:.2f} s, more than "
            f"{self.deadline_share:g} of its {deadline_s:.2f} s deadline; retry after {retry_after_s:.1f} s"
        )

    def close(self) -> None:
        self.counts.close()
