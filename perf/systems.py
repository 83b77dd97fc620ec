"""The systems the benchmarks drive, each behind one small interface (start, run_round,
scores_of_first_request, peak_rss_mb, padding_efficiency, stop): polyrank through the
embedded Triton, a library in its own process and virtual environment (library_worker.py),
and Infinity over HTTP. Peak memory is read the same way for all: the sum over the system's
process tree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from polyrank.client import RerankClient
from polyrank.metrics import scorer_token_counts
from polyrank.server import EmbeddedTritonServer, ServerConfig, free_port

ROOT = Path(__file__).resolve().parents[1]
MAX_LENGTH = 256
CANDIDATES = 100
SERVER_CONCURRENCY = (1, 4)


class LibraryWorker:
    """A library system in its own process (and virtual environment): perf/library_worker.py."""

    concurrency_levels = (1,)

    def __init__(self, system: str, python: Path, model: Path, workload_file: Path, calibration: Path | None = None):
        self.command = [str(python), str(ROOT / "perf" / "library_worker.py"), "--system", system,
                        "--model", str(model), "--workload", str(workload_file), "--max-length", str(MAX_LENGTH)]
        if calibration is not None:
            self.command += ["--calibration", str(calibration)]
        self.process = None
        self.last = {}

    def start(self):
        if not Path(self.command[0]).exists():
            raise RuntimeError(f"{self.command[0]} does not exist (make bench creates it)")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.log = tempfile.TemporaryFile("w+")  # the library's own messages, for the reason it failed
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )
        ready = self.process.stdout.readline()
        if not ready:
            code = self.process.wait()
            self.log.seek(0)
            errors = [line.strip() for line in self.log if "Error" in line]
            reason = errors[-1] if errors else f"exited with code {code}"
            raise RuntimeError(f"{' '.join(self.command[1:4])} failed while loading: {reason[:400]}")

    def _ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        self.last = json.loads(self.process.stdout.readline())
        return self.last

    def scores_of_first_request(self):
        return self._ask("scores")["scores"]

    def run_round(self, concurrency: int):
        return self._ask("round")["latencies_s"]

    def peak_rss_mb(self):
        return process_tree_peak_mb(self.process.pid)  # measured like the servers: the whole tree

    def padding_efficiency(self):
        return round(self.last["real_tokens"] / self.last["computed_tokens"], 3) if self.last.get("computed_tokens") else None

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


class TritonSystem:
    """polyrank: the embedded Triton with one repository, reached through RerankClient over gRPC."""

    concurrency_levels = SERVER_CONCURRENCY

    def __init__(self, repository: Path, requests):
        self.config = ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0, startup_timeout_s=300)
        self.requests = requests
        self.server = self.client = None

    def start(self):
        self.server = EmbeddedTritonServer(self.config).start()
        self.client = RerankClient(self.server.grpc_url, timeout_s=600)
        self.client.score(self.requests[0].query, list(self.requests[0].products))
        self.tokens_at_start = scorer_token_counts(self.server.metrics_url)

    def scores_of_first_request(self):
        return self.client.score(self.requests[0].query, list(self.requests[0].products))

    def run_round(self, concurrency: int):
        return concurrent_calls(lambda r: self.client.score(r.query, list(r.products)), self.requests, concurrency)

    def peak_rss_mb(self):
        return process_tree_peak_mb(self.server.pid)

    def padding_efficiency(self):
        now = scorer_token_counts(self.server.metrics_url)
        real = now["real"] - self.tokens_at_start.get("real", 0)
        computed = now["computed"] - self.tokens_at_start.get("computed", 0)
        return round(real / computed, 3) if computed else None

    def stop(self):
        if self.client:
            self.client.close()
        if self.server:
            self.server.stop()


class InfinitySystem:
    """Infinity (infinity-emb) serving the same checkpoint with its torch engine, over HTTP."""

    concurrency_levels = SERVER_CONCURRENCY

    def __init__(self, executable: Path, model: Path, requests):
        self.executable, self.model, self.requests = executable, model, requests
        self.port = free_port("127.0.0.1")
        self.process = None

    def start(self):
        if not self.executable.exists():
            raise RuntimeError(f"{self.executable} does not exist (make bench creates build/venv-infinity)")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
        self.log = open(self.model.parent / "infinity.log", "w")
        self.process = subprocess.Popen(
            [str(self.executable), "v2", "--model-id", str(self.model), "--engine", "torch", "--device", "cpu",
             "--host", "127.0.0.1", "--port", str(self.port), "--batch-size", "32"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"infinity_emb exited with code {self.process.returncode}; see {self.log.name}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2).read()
                self.scores_of_first_request()
                return
            except OSError:
                time.sleep(2)
        raise RuntimeError("infinity_emb was not healthy within 600 s")

    def _rerank(self, request):
        body = json.dumps({"query": request.query, "documents": list(request.products), "raw_scores": True}).encode()
        call = urllib.request.Request(f"http://127.0.0.1:{self.port}/rerank", body, {"content-type": "application/json"})
        with urllib.request.urlopen(call, timeout=600) as response:
            results = json.loads(response.read())["results"]
        scores = [0.0] * len(request.products)
        for item in results:
            scores[item["index"]] = item["relevance_score"]
        return scores

    def scores_of_first_request(self):
        return self._rerank(self.requests[0])

    def run_round(self, concurrency: int):
        return concurrent_calls(self._rerank, self.requests, concurrency)

    def peak_rss_mb(self):
        return process_tree_peak_mb(self.process.pid)

    def padding_efficiency(self):
        return None  # Infinity does not report computed tokens

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def concurrent_calls(call, requests, concurrency: int) -> list[float]:
    def timed(request):
        started = time.perf_counter()
        call(request)
        return time.perf_counter() - started

    if concurrency == 1:
        return [timed(r) for r in requests]
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(timed, requests))


def process_tree(root_pid: int) -> set[int]:
    """A process and all its descendants."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, grew = {root_pid}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


def memory_kb(pid: int, field: str = "VmHWM") -> int:
    """A /proc/<pid>/status memory field (VmHWM: peak resident, VmRSS: resident now), 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree_peak_mb(root_pid: int) -> float:
    """Sum of peak resident memory (VmHWM) of a process and all its descendants."""
    return sum(memory_kb(pid) for pid in process_tree(root_pid)) / 1024