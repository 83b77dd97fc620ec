"""polyrank side by side with the tools a search team would run instead, in one run.

Same model (mmBERT-small-shaped ModernBERT cross-encoder, random weights: speed does not
depend on them), same multilingual workload (perf/workload.py), same max length (256).
Systems, rounds alternating, each request = one query with 100 products:

  onnxruntime-sorted  in-process ONNX Runtime on polyrank's fp32 graph, length-sorted batches of 16
  polyrank-fp32       polyrank through the embedded Triton (gRPC), fp32
  polyrank-int8       the same, int8-dynamic (fails the quality gate on random weights: written with force)
  st-torch            sentence-transformers CrossEncoder.predict, torch fp32, batch 32
  st-onnx             sentence-transformers, backend="onnx" (it exports the model itself)
  infinity            Infinity (infinity-emb, torch engine) over HTTP

Servers run at 1 and 4 concurrent clients; libraries are called from one thread.
The libraries run in their own virtual environments (build/venv-peers, build/venv-infinity;
`make bench` creates them): their ONNX backend and Infinity pin transformers 4.x.

    .venv/bin/python perf/bench_systems.py [--queries 8] [--rounds 2]

Writes perf/results/systems.json and perf/results/systems.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.workload import make_workload  # noqa: E402
from polyrank.client import RerankClient  # noqa: E402
from polyrank.export.assets import cache_dir_from, shaped_model  # noqa: E402
from polyrank.export.build_repository import build_repository_unless_current  # noqa: E402
from polyrank.export.config import ExportConfig  # noqa: E402
from polyrank.server import EmbeddedTritonServer, ServerConfig, free_port, scorer_token_counts  # noqa: E402

RESULTS = ROOT / "perf" / "results"
MAX_LENGTH = 256
CANDIDATES = 100
SERVER_CONCURRENCY = (1, 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=8, help="100-product requests per system per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench-systems")
    parser.add_argument("--peers-python", type=Path, default=ROOT / "build" / "venv-peers" / "bin" / "python")
    parser.add_argument("--infinity", type=Path, default=ROOT / "build" / "venv-infinity" / "bin" / "infinity_emb")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    model = Path(shaped_model(cache_dir_from(os.environ)))
    repositories = {
        precision: build_repository_unless_current(ExportConfig(
            model=str(model), output=args.workdir / f"repository-{precision}", max_length=MAX_LENGTH,
            precision=precision, force=True,
        ))
        for precision in ("fp32", "int8-dynamic")
    }
    requests = make_workload(queries=args.queries, candidates=CANDIDATES, seed=0)
    workload_file = args.workdir / "workload.json"
    workload_file.write_text(json.dumps([{"query": r.query, "products": list(r.products)} for r in requests]))
    transformers4_model = _transformers4_copy(model, args.workdir / "model-transformers4")

    systems = {
        "onnxruntime-sorted": LibraryWorker("onnxruntime", Path(sys.executable), repositories["fp32"], workload_file),
        "polyrank-fp32": TritonSystem(repositories["fp32"], requests),
        "polyrank-int8": TritonSystem(repositories["int8-dynamic"], requests),
        "st-torch": LibraryWorker("st-torch", args.peers_python, transformers4_model, workload_file),
        "st-onnx": LibraryWorker("st-onnx", args.peers_python, transformers4_model, workload_file),
        "infinity": InfinitySystem(args.infinity, transformers4_model, requests),
    }
    unavailable = {}
    for name, system in list(systems.items()):
        print(f"starting {name}", flush=True)
        try:
            system.start()
        except Exception as error:  # record exactly why a peer could not run, and go on
            unavailable[name] = str(error)
            del systems[name]
            print(f"  {name} unavailable: {error}", flush=True)

    runs = {}  # (system, concurrency) -> {"latencies_s": [...], "pairs_per_s": [per round]}
    try:
        reference = np.array(systems["onnxruntime-sorted"].scores_of_first_request())
        agreement = {name: float(np.abs(np.array(s.scores_of_first_request()) - reference).max()) for name, s in systems.items()}
        for round_number in range(args.rounds):
            for name, system in systems.items():
                for concurrency in system.concurrency_levels:
                    started = time.perf_counter()
                    latencies = system.run_round(concurrency)
                    wall = time.perf_counter() - started
                    run = runs.setdefault(f"{name}@{concurrency}", {"system": name, "concurrency": concurrency, "latencies_s": [], "pairs_per_s": []})
                    run["latencies_s"] += latencies
                    run["pairs_per_s"].append(CANDIDATES * len(latencies) / wall)
                    print(f"round {round_number + 1}: {name} x{concurrency}: {run['pairs_per_s'][-1]:.1f} pairs/s", flush=True)
        facts = {name: {"peak_rss_mb": round(s.peak_rss_mb()), "padding_efficiency": s.padding_efficiency()} for name, s in systems.items()}
    finally:
        for system in systems.values():
            system.stop()

    table = [_summary(run, facts[run["system"]], agreement[run["system"]]) for run in runs.values()]
    by_name = {row["run"]: row for row in table}
    ratios = {
        "polyrank-fp32 vs onnxruntime-sorted": _ratio(by_name, "polyrank-fp32@1", "onnxruntime-sorted@1"),
        "polyrank-fp32 vs st-torch": _ratio(by_name, "polyrank-fp32@1", "st-torch@1"),
        "polyrank-int8 vs st-torch": _ratio(by_name, "polyrank-int8@1", "st-torch@1"),
        "polyrank-fp32 vs infinity (4 clients)": _ratio(by_name, "polyrank-fp32@4", "infinity@4"),
        "polyrank-int8 vs infinity (4 clients)": _ratio(by_name, "polyrank-int8@4", "infinity@4"),
    }
    result = {
        "benchmark": "side by side: pairs/s and latency of 100-product reranks",
        "command": "python perf/bench_systems.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": "mmBERT-small-shaped ModernBERT cross-encoder, random weights (seed 0), max length 256",
        "workload": f"{args.queries} queries x {CANDIDATES} products (perf/workload.py, seed 0), {args.rounds} alternating rounds",
        "pairs_per_s": "median over rounds of (pairs in the round / its wall time)",
        "score_agreement": "max |score - in-process ONNX Runtime score| on the first request",
        "ratios_pairs_per_s": ratios,
        "runs": table,
        "unavailable": unavailable,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "systems.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(table, RESULTS / "systems.png")
    for row in table:
        print(json.dumps({k: v for k, v in row.items()}))
    print(json.dumps(ratios, indent=2))
    print(f"wrote {RESULTS / 'systems.json'} and {RESULTS / 'systems.png'}")
    return 0


class LibraryWorker:
    """A library system in its own process (and virtual environment): perf/library_worker.py."""

    concurrency_levels = (1,)

    def __init__(self, system: str, python: Path, model: Path, workload_file: Path):
        self.command = [str(python), str(ROOT / "perf" / "library_worker.py"), "--system", system,
                        "--model", str(model), "--workload", str(workload_file), "--max-length", str(MAX_LENGTH)]
        self.process = None
        self.last = {}

    def start(self):
        if not Path(self.command[0]).exists():
            raise RuntimeError(f"{self.command[0]} does not exist (make bench creates it)")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        ready = self.process.stdout.readline()
        if not ready:
            raise RuntimeError(f"{' '.join(self.command[1:4])} exited with code {self.process.wait()} while loading")

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
        return self.last.get("peak_rss_mb", 0.0)

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
        return _concurrent(lambda r: self.client.score(r.query, list(r.products)), self.requests, concurrency)

    def peak_rss_mb(self):
        return _process_tree_peak_mb(self.server.pid)

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
        self.log = open(ROOT / "build" / "bench-systems" / "infinity.log", "w")
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
        return _concurrent(self._rerank, self.requests, concurrency)

    def peak_rss_mb(self):
        return _process_tree_peak_mb(self.process.pid)

    def padding_efficiency(self):
        return None  # Infinity does not report computed tokens

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def _concurrent(call, requests, concurrency: int) -> list[float]:
    def timed(request):
        started = time.perf_counter()
        call(request)
        return time.perf_counter() - started

    if concurrency == 1:
        return [timed(r) for r in requests]
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(timed, requests))


def _process_tree_peak_mb(root_pid: int) -> float:
    """Sum of peak resident memory (VmHWM) of a process and all its descendants."""
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
    total_kb = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


def _transformers4_copy(model: Path, folder: Path) -> Path:
    """The checkpoint as transformers 4.x reads it: same weights (linked), its tokenizer class name."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        link = folder / name
        if not link.exists():
            link.symlink_to(model / name)
    tokenizer_config = json.loads((model / "tokenizer_config.json").read_text())
    tokenizer_config.pop("backend", None)
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"  # "TokenizersBackend" is transformers 5's name
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    shutil.rmtree(folder / "onnx", ignore_errors=True)  # sentence-transformers re-exports each run
    return folder


def _summary(run: dict, facts: dict, agreement: float) -> dict:
    milliseconds = np.array(run["latencies_s"]) * 1000
    return {
        "run": f"{run['system']}@{run['concurrency']}",
        "system": run["system"],
        "concurrency": run["concurrency"],
        "requests": len(milliseconds),
        "pairs_per_s": round(statistics.median(run["pairs_per_s"]), 1),
        "p50_ms": round(float(np.percentile(milliseconds, 50)), 1),
        "p95_ms": round(float(np.percentile(milliseconds, 95)), 1),
        "p99_ms": round(float(np.percentile(milliseconds, 99)), 1),
        "padding_efficiency": facts["padding_efficiency"],
        "peak_rss_mb": facts["peak_rss_mb"],
        "score_agreement": agreement,
    }


def _ratio(rows: dict, numerator: str, denominator: str):
    if numerator not in rows or denominator not in rows:
        return None
    return round(rows[numerator]["pairs_per_s"] / rows[denominator]["pairs_per_s"], 2)


def _plot(table: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(13, 5))
    for system in dict.fromkeys(row["system"] for row in table):
        rows = sorted((r for r in table if r["system"] == system), key=lambda r: r["concurrency"])
        throughput.plot([r["concurrency"] for r in rows], [r["pairs_per_s"] for r in rows], marker="o", label=system)
    throughput.set(xlabel="concurrent clients", ylabel="pairs/s", title="Throughput vs concurrency", xticks=list(SERVER_CONCURRENCY))
    throughput.legend()
    single = [r for r in table if r["concurrency"] == 1]
    positions = np.arange(len(single))
    for offset, percentile in zip((-0.25, 0, 0.25), ("p50_ms", "p95_ms", "p99_ms")):
        latency.bar(positions + offset, [r[percentile] / 1000 for r in single], width=0.25, label=percentile[:3])
    latency.set_xticks(positions, [r["system"] for r in single], rotation=20)
    latency.set(ylabel="seconds per 100-product rerank", title="Latency, one client")
    latency.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
