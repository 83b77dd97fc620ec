"""Locust user that reranks workload queries with 20-200 candidates over gRPC (tritonclient).

Run it through `make load` / `python perf/load.py`, which starts a server (or takes --host)
and writes the reports. Each call is reported to Locust's request event, so its statistics,
CSV and HTML charts work as they do for HTTP.
"""

import itertools
import random
import sys
import time
from pathlib import Path

# grpcio must cooperate with Locust's gevent loop; this has to run before any channel exists.
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

from locust import User, constant, task  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perf.workload import make_workload  # noqa: E402
from polyrank.client import RerankClient  # noqa: E402

WORKLOAD = make_workload(queries=64, candidates=200, seed=1)
MIN_CANDIDATES, MAX_CANDIDATES = 20, 200
_user_seeds = itertools.count()


class RerankUser(User):
    """One search frontend calling `rerank` back to back."""

    wait_time = constant(0)

    def on_start(self):
        self.rng = random.Random(next(_user_seeds))  # reproducible per user
        # No client-side retries: a call the server could not take shows up as a failure, not
        # as the latency of waiting out the client's retry window.
        self.client = RerankClient(self.host, timeout_s=120, max_concurrent_requests=1, retry_deadline_s=0)

    def on_stop(self):
        self.client.close()

    @task
    def rerank(self):
        request = self.rng.choice(WORKLOAD)
        candidates = self.rng.randint(MIN_CANDIDATES, MAX_CANDIDATES)
        started = time.perf_counter()
        error = None
        try:
            ranked = self.client.rerank(request.query, list(request.products[:candidates]))
            if len(ranked) != candidates:
                raise RuntimeError(f"got {len(ranked)} results for {candidates} candidates")
        except Exception as exception:  # every outcome is reported, none is lost
            error = exception
        self.environment.events.request.fire(
            request_type="grpc",
            name="rerank",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=candidates,
            exception=error,
            context={},
        )
