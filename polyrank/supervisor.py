"""`polyrank serve`'s watch: Triton 2.51 keeps reporting ready after a model's Python process
dies, so the supervisor restarts the server itself (clients retry meanwhile)."""

from __future__ import annotations

import time

from polyrank.server import EmbeddedTritonServer, ServerError


def supervise(server: EmbeddedTritonServer, stop, log=print, poll_s: float = 0.5, max_restarts: int = 5) -> int:
    """Keeps `server` serving until `stop()` is true: when it exits or a model's Python
    process dies, restarts it on the same ports (clients retry meanwhile). Returns the
    number of restarts; raises ServerError after `max_restarts`."""
    restarts = 0
    while not stop():
        problem = server.problem()
        if problem is None:
            time.sleep(poll_s)
            continue
        if restarts >= max_restarts:
            raise ServerError(f"{problem}; gave up after {restarts} restarts (log: {server.log_path})")
        restarts += 1
        log(f"{problem}; restarting the server ({restarts}/{max_restarts})")
        server.stop()
        server.start()
    return restarts
