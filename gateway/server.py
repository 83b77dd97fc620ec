"""Run the HTTP API with uvicorn: in the foreground (`polyrank gateway`) or in a thread beside
the embedded Triton (`polyrank serve --api-port`), stopping with it."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Optional

import uvicorn

from polyrank.gateway.app import GatewaySettings, create_app


@dataclass(frozen=True, kw_only=True)
class Listener:
    """Where the HTTP API listens, and its own TLS (HTTPS; mutual when ca is given)."""

    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    tls_ca: Optional[str] = None

    def __post_init__(self):
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("HTTPS needs both a certificate and its key (--tls-cert and --tls-key)")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-ca (mutual TLS) needs --tls-cert and --tls-key as well")

    def uvicorn_options(self) -> dict:
        if self.tls_cert is None:
            return {}
        options = {"ssl_certfile": self.tls_cert, "ssl_keyfile": self.tls_key}
        if self.tls_ca is not None:
            import ssl

            options |= {"ssl_ca_certs": self.tls_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        return options


class GatewayServer:
    """The HTTP API on a socket of its own; start() returns once it accepts connections.

    Example:
        >>> with GatewayServer(GatewaySettings(triton_url="127.0.0.1:8001"), Listener(port=0)) as api:
        ...     print(api.url)
    """

    def __init__(self, settings: GatewaySettings, listener: Listener):
        self.listener = listener
        self._socket = socket.create_server((listener.host, listener.port), reuse_port=False)
        # Accepted connections inherit this. Without it a response's headers and body (two
        # writes) meet the client's delayed ACK: every request took 44 ms longer (measured).
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            create_app(settings), log_level="warning", access_log=False, timeout_graceful_shutdown=10, **listener.uvicorn_options()
        )
        self._server = uvicorn.Server(config)
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        scheme = "https" if self.listener.tls_cert else "http"
        return f"{scheme}://{self.listener.host}:{self.port}"

    def run(self) -> None:
        """Serves in this thread until interrupted (Ctrl-C / SIGTERM, handled by uvicorn)."""
        self._server.run(sockets=[self._socket])

    def start(self, timeout_s: float = 30.0) -> "GatewayServer":
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, name="http-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP API did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stops taking connections, lets requests in flight finish (10 s at most)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._socket.close()

    def __enter__(self) -> "GatewayServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
