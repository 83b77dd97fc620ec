"""A stream of rerank calls whose every outcome is recorded: the fault and replica tests run it
while they stop, kill and restart servers, then check each call."""

from __future__ import annotations

import time


def record_calls(client, requests, outcomes: list, pause_s: float = 0.05, stop=None) -> None:
    """Scores each request in turn, storing ("ok", scores) or ("error", exception) at its index;
    ends early once `stop` (a threading.Event) is set."""
    for i, request in enumerate(requests):
        if stop is not None and stop.is_set():
            return
        try:
            outcomes[i] = ("ok", client.score(request.query, list(request.products)))
        except Exception as error:  # recorded, never swallowed: the tests check each outcome
            outcomes[i] = ("error", error)
        time.sleep(pause_s)
