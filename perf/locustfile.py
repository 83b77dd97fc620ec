"""Locust users that rerank workload queries with 20-200 candidates: `RerankUser` over gRPC
(polyrank's client), `HttpRerankUser` over the HTTP API (Cohere's /v2/rerank shape).

Run them through `make load` / `python perf/load.py [--protocol http]`, which starts a server
(or takes --host) and writes the reports. Each gRPC call is reported to Locust's request event,
so its statistics, CSV and HTML charts work as they do for HTTP.
"""

import itertools
import random
import sys
import time
from pathlib import Path

# grpcio must cooperate with Locust's gevent loop; this has to run before any channel exists.
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

from locust import FastHttpUser, User, task  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perf.load import REJECTED_ROW  # noqa: E402
from perf.workload import make_workload  # noqa: E402
from polyrank.client import OverloadedError, RerankClient  # noqa: E402

WORKLOAD = make_workload(queries=64, candidates=200, seed=1)
MIN_CANDIDATES, MAX_CANDIDATES = 20, 200
_user_seeds = itertools.count()


MAX_BACKOFF_S = 5.0


class BacksOff:
    """Told the server is at capacity, a user waits the time the server asked for (at most
    5 s) before its next call. The rejection is reported on its own row (perf/load.REJECTED_ROW),
    not as a failure: it is admission control doing its job, which the summary counts apart
    from errors."""

    backoff_s = 0.0

    def wait_time(self):
        backoff, self.backoff_s = self.backoff_s, 0.0
        return backoff

    def back_off(self, retry_after_s):
        self.backoff_s = min(retry_after_s or 0.5, MAX_BACKOFF_S)


class RerankUser(BacksOff, User):
    """One search frontend calling `rerank` back to back through polyrank's gRPC client."""

    def on_start(self):
        self.rng = random.Random(next(_user_seeds))  # reproducible per user
        # No client-side retries: a call the server could not take shows up as a rejection, not
        # as the latency of waiting out the client's retry window.
        self.client = RerankClient(self.host, timeout_s=120, max_concurrent_requests=1, retry_deadline_s=0)

    def on_stop(self):
        self.client.close()

    @task
    def rerank(self):
        request = self.rng.choice(WORKLOAD)
        candidates = self.rng.randint(MIN_CANDIDATES, MAX_CANDIDATES)
        started = time.perf_counter()
        error, name = None, "rerank"
        try:
            ranked = self.client.rerank(request.query, list(request.products[:candidates]))
            if len(ranked) != candidates:
                raise RuntimeError(f"got {len(ranked)} results for {candidates} candidates")
        except OverloadedError as exception:
            name = REJECTED_ROW
            self.back_off(exception.retry_after_s)
        except Exception as exception:  # every outcome is reported, none is lost
            error = exception
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=candidates,
            exception=error,
            context={},
        )


class HttpRerankUser(BacksOff, FastHttpUser):
    """The same frontend calling the HTTP API's POST /v2/rerank (what Cohere's SDK sends); a
    429 is a rejection at capacity, its Retry-After the wait."""

    network_timeout = connection_timeout = 120.0

    def on_start(self):
        self.rng = random.Random(next(_user_seeds))

    @task
    def rerank(self):
        request = self.rng.choice(WORKLOAD)
        candidates = self.rng.randint(MIN_CANDIDATES, MAX_CANDIDATES)
        body = {"model": "rerank", "query": request.query, "documents": list(request.products[:candidates])}
        with self.client.post("/v2/rerank", json=body, name="rerank", catch_response=True) as response:
            if response.status_code == 429:
                response.request_meta["name"] = REJECTED_ROW
                response.success()
                self.back_off(_seconds(response.headers.get("Retry-After")))
            elif response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif len(response.json()["results"]) != candidates:
                response.failure(f"got {len(response.json()['results'])} results for {candidates} candidates")


def _seconds(header):
    try:
        return float(header)
    except (TypeError, ValueError):
        return None
