"""Memory per request: does the server's private memory keep growing with the requests it
serves (a leak), or level off (caches and allocator pools filling), and does the allocator
change it?

    .venv/bin/python perf/memory_growth.py [--allocators system,jemalloc,tcmalloc] [--requests 40000]
                                           [--warm-up 2000] [--sample-every 2000] [--candidates 10]
                                           [--clients 4] [--heap] [--model DIR]

A soak measures growth per hour at a realistic rate, a few thousand requests an hour with
the real model. This drives the same pipeline as fast as it goes (closed loop, --clients at
once, small requests, a tiny model) so that tens of thousands of requests fit in minutes. For
each allocator in turn (ServerConfig.allocator: glibc's malloc, or jemalloc / tcmalloc preloaded
into tritonserver and every model process; Triton's docs advise one for memory growth) it
starts the embedded server, serves --warm-up requests, then --requests more in segments of
--sample-every; after each segment, with the server idle, it reads the private (anonymous)
resident memory of tritonserver and of each model process and, with --heap (glibc only, needs
gdb), glibc's own count of tritonserver's live heap bytes (malloc_stats "in use": what the
program holds, not what the allocator keeps) and, at the end, tritonserver's private memory
after malloc_trim (what glibc gives back when asked). Reports per process the growth in bytes
per request (least squares, with its standard error) over the measured part and over each
quarter of it: growth that levels off falls quarter by quarter, a leak keeps its slope.
Writes perf/results/memory_growth.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.run_facts import run_facts  # noqa: E402
from perf.soak import process_label  # noqa: E402
from perf.systems import memory_kb, process_tree  # noqa: E402
from perf.workload import make_workload  # noqa: E402
from polyrank.client import OverloadedError, RerankClient  # noqa: E402
from polyrank.server import ALLOCATORS, EmbeddedTritonServer, ServerConfig  # noqa: E402

RESULTS = ROOT / "perf" / "results" / "memory_growth.json"
HEAP_LABEL = "tritonserver live heap"


def private_kb(server_pid: int) -> dict[str, int]:
    """Private (anonymous) resident KiB of tritonserver and of each model's process."""
    sample: dict[str, int] = {}
    for pid in process_tree(server_pid):
        label = process_label(pid)
        sample[label] = sample.get(label, 0) + memory_kb(pid, "RssAnon")
    return sample


def live_heap_kb(pid: int, log_path: Path) -> int:
    """glibc's count of a process's heap bytes in use (KiB): malloc_stats, called through gdb,
    prints it to the process's stderr, here the server's log. Call it while the process is
    idle: a thread stopped inside malloc would hold the lock malloc_stats waits for."""
    before = log_path.stat().st_size
    call_in_process(pid, "(void) malloc_stats()")
    for _ in range(20):
        with open(log_path, "rb") as log:
            log.seek(before)
            printed = log.read().decode(errors="replace")
        total = printed.split("Total (incl. mmap):")[-1]
        match = re.search(r"in use bytes\s*=\s*(\d+)", total) if "Total (incl. mmap):" in printed else None
        if match:
            return int(match.group(1)) // 1024
        time.sleep(0.25)
    raise RuntimeError(f"malloc_stats printed nothing to {log_path}")


def call_in_process(pid: int, expression: str) -> None:
    """Calls a C function inside a running process, through gdb (the process is stopped meanwhile)."""
    subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", f"call {expression}"], capture_output=True, timeout=120, check=True)


def bytes_per_request(points: list[tuple[int, int]]) -> dict:
    """Least-squares slope of (requests served, KiB) points in bytes per request, with its standard error."""
    if len(points) < 3:
        return {"samples": len(points)}
    n, kib = np.array(points, dtype=float).T
    slope, intercept = np.polyfit(n, kib, 1)
    residual = kib - (slope * n + intercept)
    stderr = (float(residual @ residual) / (len(n) - 2) / ((n - n.mean()) ** 2).sum()) ** 0.5
    return {"samples": len(points), "bytes_per_request": round(slope * 1024, 1), "stderr": round(stderr * 1024, 1),
            "first_kib": int(kib[0]), "last_kib": int(kib[-1])}


def quarters(points: list) -> list[list]:
    """Four consecutive windows of the points, each sharing its first point with the one before."""
    size = (len(points) - 1) // 4
    return [points[i * size:(i + 1) * size + 1] for i in range(4)] if size >= 2 else []


def serve_requests(server: EmbeddedTritonServer, workload, args, heap: bool) -> dict:
    """Warm-up, then --requests calls by --clients closed-loop clients, memory read between segments."""
    rejected = 0

    def call(number: int) -> bool:
        request = workload[number % len(workload)]
        try:
            client.score(request.query, list(request.products))
            return True
        except OverloadedError:  # counted: an allocator that slows the server gets more
            return False

    def sample(served: int) -> dict:
        time.sleep(0.5)  # idle: answers sent, buffers released
        memory = {"requests": served, **private_kb(server.process.pid)}
        if heap:
            memory[HEAP_LABEL] = live_heap_kb(server.process.pid, server.log_path)
        return memory

    samples, busy_s = [], 0.0
    with RerankClient(server.grpc_url, timeout_s=60, max_concurrent_requests=args.clients, retry_deadline_s=0) as client:
        with ThreadPoolExecutor(args.clients) as pool:
            rejected += list(pool.map(call, range(args.warm_up))).count(False)
            samples.append(sample(0))
            for start in range(0, args.requests, args.sample_every):
                started = time.perf_counter()
                numbers = range(args.warm_up + start, args.warm_up + min(start + args.sample_every, args.requests))
                rejected += list(pool.map(call, numbers)).count(False)
                busy_s += time.perf_counter() - started
                samples.append(sample(start + len(numbers)))
    trimmed = None
    if heap:  # what glibc gives back when asked: the part of the resident memory it only kept
        call_in_process(server.process.pid, "(int) malloc_trim(0)")
        trimmed = private_kb(server.process.pid)["tritonserver"]
    growth = {}
    for label in sorted(samples[0].keys() - {"requests"}):
        points = [(s["requests"], s.get(label, 0)) for s in samples]
        growth[label] = {"measured": bytes_per_request(points), "by_quarter": [bytes_per_request(q) for q in quarters(points)]}
    return {"requests_per_s": round(args.requests / busy_s, 1), "rejected": rejected, "growth": growth,
            "tritonserver_kib_after_malloc_trim": trimmed, "samples": samples}


def main() -> int:
    from polyrank.export.build_repository import build_repository_unless_current
    from polyrank.export.config import ExportConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocators", default=",".join(ALLOCATORS), help=f"comma-separated, of {', '.join(ALLOCATORS)}")
    parser.add_argument("--requests", type=int, default=40000, help="requests measured after warm-up (default 40000)")
    parser.add_argument("--warm-up", type=int, default=2000)
    parser.add_argument("--sample-every", type=int, default=2000, help="requests between memory readings (default 2000)")
    parser.add_argument("--candidates", type=int, default=10, help="products per request (default 10)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--heap", action="store_true", help="also read tritonserver's live heap (glibc's malloc_stats, via gdb)")
    parser.add_argument("--model", help="cross-encoder checkpoint (default: a tiny ModernBERT built here)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "memory-growth")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    allocators = args.allocators.split(",")
    unknown = [a for a in allocators if a not in ALLOCATORS]
    if unknown:
        parser.error(f"--allocators: unknown {', '.join(unknown)}; choose from {', '.join(ALLOCATORS)}")
    model = args.model
    if model is None:
        from tests.tiny_models import build_tiny_modernbert

        model = args.workdir / "tiny-modernbert"
        if not (model / "config.json").exists():
            build_tiny_modernbert(model)
    config = ExportConfig(model=str(model), output=args.workdir / "repository", max_length=128)
    build_repository_unless_current(config)
    workload = make_workload(queries=16, candidates=args.candidates, seed=1)
    runs = {}
    for allocator in allocators:
        server_config = ServerConfig(repository=config.output, grpc_port=0, http_port=0, metrics_port=0, allocator=allocator,
                                     log_path=args.workdir / f"tritonserver-{allocator}.log")
        server_config.log_path.unlink(missing_ok=True)
        with EmbeddedTritonServer(server_config) as server:
            runs[allocator] = serve_requests(server, workload, args, heap=args.heap and allocator == "system")
        print(json.dumps({allocator: {k: v for k, v in runs[allocator].items() if k != "samples"}}), flush=True)
    report = {**run_facts(), "model": str(model), "candidates": args.candidates, "clients": args.clients,
              "warm_up_requests": args.warm_up, "measured_requests": args.requests, "allocators": runs}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
