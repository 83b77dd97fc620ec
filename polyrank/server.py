"""Run the embedded `tritonserver` (shipped in the nvidia-pytriton wheel) as a subprocess.

Three things make the wheel's binary serve Python-backend models (see DESIGN.md): a
backend folder holding the Python backend and the stub for this Python version, the
wheel's bundled libraries on LD_LIBRARY_PATH, and this environment's bin/ first on PATH
so that the models import this environment's packages.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from polyrank.model_repository.admission import remove_server_state


class ServerError(RuntimeError):
    """The server could not start, or did not become ready."""


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How to run the embedded server.

    Attributes:
        repository: Triton model repository folder.
        host: address every endpoint binds to; loopback unless told otherwise.
        grpc_port, http_port, metrics_port: ports; 0 picks a free one.
        ready_models: models that must be ready before `start()` returns.
        startup_timeout_s: how long to wait for readiness.
        log_path: server log file; a temporary file when not given.
        extra_args: more tritonserver flags.
        tls_cert, tls_key: PEM server certificate and key: gRPC speaks TLS only.
        tls_ca: PEM CA certificate: mutual TLS, clients must present a certificate it signed.
        response_cache_mb: memory for Triton's response cache (0: off). The rerank pipelines
            enable it in their config, so a request identical to an earlier one (same model,
            query and products) is answered from memory without scoring.
        admin_key: opens the model-control API (load / unload; closed when None), and only
            to calls carrying the header `triton-grpc-protocol-polyrank-admin-key: <admin_key>`
            (gRPC) or `polyrank-admin-key: <admin_key>` (HTTP).
        allocator: the memory allocator of tritonserver and of its model processes, which
            inherit its environment: "system" (glibc's malloc), or "jemalloc" / "tcmalloc"
            preloaded from the system's package, as Triton's docs advise against memory growth
            (measured here, neither beat glibc's at both request sizes, and both took more
            memory: README "Overload", perf/memory_growth.py).
    """

    repository: Path
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    ready_models: Sequence[str] = ("rerank",)
    startup_timeout_s: float = 300.0
    log_path: Optional[Path] = None
    extra_args: Sequence[str] = ()
    tls_cert: Optional[Path] = None
    tls_key: Optional[Path] = None
    tls_ca: Optional[Path] = None
    admin_key: Optional[str] = None
    response_cache_mb: int = 0
    allocator: str = "system"

    def __post_init__(self):
        if self.allocator not in ALLOCATORS:
            raise ValueError(f"the allocator must be one of {', '.join(ALLOCATORS)}, got {self.allocator!r}")
        if self.response_cache_mb < 0:
            raise ValueError(f"the response cache size must be 0 (off) or a number of MB, got {self.response_cache_mb}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-ca (mutual TLS) needs --tls-cert and --tls-key as well")
        for path in (self.tls_cert, self.tls_key, self.tls_ca):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"TLS file {path} does not exist")
        if self.admin_key is not None and len(self.admin_key) < 16:
            raise ValueError("the admin key must be at least 16 characters")


# The library each allocator preloads, and the Debian / Ubuntu package that installs it.
ALLOCATOR_LIBRARIES = {
    "jemalloc": ("libjemalloc.so.2", "libjemalloc2"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
}
ALLOCATORS = ("system", *ALLOCATOR_LIBRARIES)

ADMIN_HEADER = "polyrank-admin-key"
ADMIN_GRPC_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"  # Triton prefixes restricted gRPC headers
# Every HTTP API but health: the HTTP endpoint only answers readiness probes unless asked.
HTTP_APIS_BUT_HEALTH = "metadata,inference,shared-memory,model-config,statistics,trace,logging"

class EmbeddedTritonServer:
    """A `tritonserver` subprocess; use as a context manager or call start()/stop().

    Example:
        >>> with EmbeddedTritonServer(ServerConfig(repository=Path("build/repo"))) as server:
        ...     print(server.grpc_url)
    """

    def __init__(self, config: ServerConfig):
        self.config = config
        ports = [config.grpc_port, config.http_port, config.metrics_port]
        self.grpc_port, self.http_port, self.metrics_port = [p or free_port(config.host) for p in ports]
        self.process: Optional[subprocess.Popen] = None
        self._stubs: dict[str, int] = {}
        self._workdir: Optional[tempfile.TemporaryDirectory] = None
        self.log_path: Optional[Path] = config.log_path

    @property
    def grpc_url(self) -> str:
        return f"{self.config.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.config.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process else None

    def start(self) -> "EmbeddedTritonServer":
        repository = Path(self.config.repository)
        if not repository.is_dir():
            raise ServerError(f"model repository {repository} does not exist; run `polyrank export` first")
        environment = _server_environment(self.config.allocator)  # first: a missing allocator fails before anything starts
        binary, backends = _prepare_backends(self._new_workdir())
        if self.log_path is None:
            self.log_path = Path(self._workdir.name) / "tritonserver.log"
        host = self.config.host
        command = [
            str(binary),
            f"--model-repository={repository.resolve()}",
            f"--backend-directory={backends}",
            f"--grpc-address={host}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={host}",
            f"--http-port={self.http_port}",
            f"--metrics-address={host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=true",
            "--exit-timeout-secs=10",
            "--log-verbose=0",
            *self._access_args(),
            *self._cache_args(binary),
            *self.config.extra_args,
        ]
        log = open(self.log_path, "ab")
        # Its own session: stop() can signal the server and its backend stubs together.
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._stubs = self.python_stubs()
        return self

    def python_stubs(self) -> dict[str, int]:
        """{model instance (e.g. 'tokenizer_0_0'): pid} of this server's Python-backend processes."""
        stubs = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            except OSError:
                continue
            if argv and argv[0].endswith("triton_python_backend_stub") and str(self.pid) in argv and len(argv) >= 2:
                stubs[argv[-2]] = int(entry.name)
        return stubs

    def problem(self) -> Optional[str]:
        """Why this server can no longer serve (it exited, or a model's Python process died:
        Triton 2.51 neither restarts that process nor turns readiness false), or None."""
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            return f"tritonserver exited (code {code})"
        dead = sorted(name for name, pid in self._stubs.items() if not _running(pid))
        return f"the Python process of {', '.join(dead)} died" if dead else None

    def _cache_args(self, binary: Path) -> list[str]:
        if not self.config.response_cache_mb:
            return []
        return [f"--cache-config=local,size={self.config.response_cache_mb * 2**20}", f"--cache-directory={binary.parents[1] / 'caches'}"]

    def _access_args(self) -> list[str]:
        """TLS, the model-control API and HTTP restrictions as tritonserver flags."""
        config, args = self.config, []
        if config.tls_cert is not None:
            args += ["--grpc-use-ssl=true", f"--grpc-server-cert={config.tls_cert}", f"--grpc-server-key={config.tls_key}"]
            if config.tls_ca is not None:
                args += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={config.tls_ca}"]
            # Plain HTTP would bypass TLS: it keeps only the health API (for the readiness
            # probe); every other API needs a secret nobody is given.
            args.append(f"--http-restricted-api={HTTP_APIS_BUT_HEALTH}:polyrank-closed={os.urandom(24).hex()}")
        if config.admin_key is None:
            return args  # Triton's default model-control mode "none": no load / unload API
        return args + [
            "--model-control-mode=explicit",
            "--load-model=*",
            f"--grpc-restricted-protocol=model-repository:{ADMIN_HEADER}={config.admin_key}",
            f"--http-restricted-api=model-repository:{ADMIN_HEADER}={config.admin_key}",
        ]

    def _wait_ready(self):
        """Polls the HTTP health API (open in every mode, TLS or not) until the server and the
        ready_models are ready."""
        deadline = time.monotonic() + self.config.startup_timeout_s
        probes = [f"http://{self.config.host}:{self.http_port}/v2/health/ready"] + [
            f"http://{self.config.host}:{self.http_port}/v2/models/{model}/ready" for model in self.config.ready_models
        ]
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"tritonserver exited with code {self.process.returncode} while starting: "
                    f"{self.first_error()} (log: {self.log_path})"
                )
            if all(_answers_ok(url) for url in probes):
                return
            time.sleep(0.25)
        raise ServerError(
            f"tritonserver was not ready within {self.config.startup_timeout_s:.0f} s; "
            f"last log lines:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stops the server (SIGTERM, then SIGKILL for the whole process group)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process is not None:
            try:  # backend stubs left behind by a killed server
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            remove_server_state(self.process.pid)
        if self._workdir is not None and self.config.log_path is None:
            self.log_path = None
            self._workdir.cleanup()
            self._workdir = None

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not Path(self.log_path).exists():
            return "(no log)"
        text = Path(self.log_path).read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def first_error(self, limit: int = 400) -> str:
        """The first error line of the log that says what failed (Triton's error lines start
        with 'E' and a date; a CPU-only server also logs harmless CUDA ones), shortened."""
        if self.log_path is None or not Path(self.log_path).exists():
            return "(no log)"
        lines = Path(self.log_path).read_text(encoding="utf-8", errors="replace").splitlines()
        errors = [line.split("] ", 1)[-1].strip().strip('"') for line in lines if line[:1] == "E" and line[1:5].isdigit()]
        failures = [e for e in errors if "fail" in e.lower()] or errors
        if not failures:
            return self.log_tail(3).replace("\n", " | ")
        first = failures[0].split("\\n")[0]  # a Python backend error carries its traceback after an escaped newline
        return first if len(first) <= limit else first[:limit] + "..."

    def _new_workdir(self) -> Path:
        self._workdir = tempfile.TemporaryDirectory(prefix="polyrank-triton-")
        return Path(self._workdir.name)

    def __enter__(self) -> "EmbeddedTritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _pytriton_root() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("the embedded server needs nvidia-pytriton: pip install nvidia-pytriton==0.7.0")
    return Path(list(spec.submodule_search_locations)[0])


def _prepare_backends(workdir: Path) -> tuple[Path, Path]:
    """Returns (tritonserver binary, backend folder with the Python backend and its stub)."""
    triton = _pytriton_root() / "tritonserver"
    binary = triton / "bin" / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = triton / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise ServerError(f"nvidia-pytriton has no Python backend stub for Python {version}")
    python_backend = workdir / "backends" / "python"
    python_backend.mkdir(parents=True)
    for source in (triton / "backends" / "python").iterdir():
        if source.is_file():
            (python_backend / source.name).symlink_to(source)
    (python_backend / stub.name).symlink_to(stub)
    return binary, python_backend.parent


def allocator_library(allocator: str) -> Optional[Path]:
    """The shared library to preload for an allocator (None for the system's malloc)."""
    if allocator == "system":
        return None
    name, package = ALLOCATOR_LIBRARIES[allocator]
    folders = [Path(f"/usr/lib/{platform.machine()}-linux-gnu"), Path("/usr/lib64"), Path("/usr/lib"), Path("/usr/local/lib")]
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise ServerError(f"allocator {allocator} needs {name}, found in none of {', '.join(map(str, folders))}: "
                      f"apt-get install {package}, or serve with allocator system")


def _server_environment(allocator: str) -> dict:
    environment = dict(os.environ)
    library = allocator_library(allocator)
    if library is not None:
        environment["LD_PRELOAD"] = os.pathsep.join(p for p in (str(library), environment.get("LD_PRELOAD", "")) if p)
    libraries = _pytriton_root().parent / "nvidia_pytriton.libs"
    environment["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(libraries), environment.get("LD_LIBRARY_PATH", "")) if p
    )
    environment["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), environment.get("PATH", "")))
    return environment


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a killed child its parent has not reaped yet is a zombie


def _answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:  # not listening yet, or not ready (HTTP 400)
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
