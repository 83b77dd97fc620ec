"""Several Triton replicas behind one client: health-aware round robin.

Each call goes to the next replica in turn among those in rotation. A replica that answers
UNAVAILABLE (down, starting, stopping, or its model not ready) is taken out of rotation for a
cooldown that doubles while it keeps failing (capped); once the cooldown is over, it is asked
whether it is ready (one cheap health call) before it gets calls again. When every replica is
out, the one due back first is tried, so a call never fails only because all cooled down at once.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

READY_CHECK_TIMEOUT_S = 0.5


def replicas_of(host_port: str) -> list[str]:
    """Every address a name resolves to, as "address:port" (e.g. a Kubernetes headless Service,
    one record per ready pod), for RerankClient to balance over per call. Resolved once: a pod
    that goes away is taken out of rotation by its failures; one added later is not seen."""
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {host_port!r}")
    addresses = dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM))
    return [f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addresses]


@dataclass
class Replica:
    url: str
    grpc: Any  # tritonclient.grpc.InferenceServerClient
    failures: int = 0
    out_until: float = 0.0  # time.monotonic() until which it is out of rotation
    calls: int = 0  # calls it answered (for tests and metrics)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Endpoints:
    def __init__(self, urls: Sequence[str], connect: Callable[[str], Any], cooldown_s: float = 0.5, max_cooldown_s: float = 10.0):
        if not urls or not all(urls):
            raise ValueError(f"give one or more endpoints, host:port each, got {list(urls)!r}")
        self.replicas = [Replica(url, connect(url)) for url in urls]
        self.cooldown_s, self.max_cooldown_s = cooldown_s, max_cooldown_s
        self._turn = itertools.count()

    def pick(self) -> Replica:
        """The next replica in rotation (round robin)."""
        now = time.monotonic()
        start = next(self._turn)
        for offset in range(len(self.replicas)):
            replica = self.replicas[(start + offset) % len(self.replicas)]
            # out_until is 0 for a replica that has not failed: only a cooled-down one is checked first
            if replica.out_until <= now and (replica.failures == 0 or self._ready_again(replica)):
                return replica
        return min(self.replicas, key=lambda r: r.out_until)  # all out: the one due back first

    def in_rotation(self) -> bool:
        """Whether some replica is in rotation now, or due a health check (else a retry had better wait)."""
        now = time.monotonic()
        return any(replica.out_until <= now for replica in self.replicas)

    def answered(self, replica: Replica) -> None:
        with replica.lock:
            replica.failures, replica.out_until = 0, 0.0
            replica.calls += 1

    def unavailable(self, replica: Replica) -> None:
        """Takes the replica out of rotation for a cooldown that doubles with each failure in a row."""
        with replica.lock:
            replica.failures += 1
            cooldown = min(self.cooldown_s * 2 ** min(replica.failures - 1, 20), self.max_cooldown_s)  # a replica down for hours must not overflow
            replica.out_until = time.monotonic() + cooldown

    def _ready_again(self, replica: Replica) -> bool:
        """A cooled-down replica's health check; back in rotation if ready, else out for longer."""
        try:
            ready = bool(replica.grpc.is_server_ready(client_timeout=READY_CHECK_TIMEOUT_S))
        except Exception:  # unreachable, TLS refused, ...: not ready
            ready = False
        if ready:
            with replica.lock:
                replica.failures, replica.out_until = 0, 0.0
        else:
            self.unavailable(replica)
        return ready

    def close(self) -> None:
        for replica in self.replicas:
            replica.grpc.close()
