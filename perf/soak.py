"""Soak: a long steady load below capacity, then overload, with the server's memory sampled
throughout and every answer checked.

    .venv/bin/python perf/soak.py [--model DIR] [--precision bf16] [--steady 1800]
                                  [--overload 600] [--sample-every 10] [--allocator system]
                                  [--results FILE]

Serves a cross-encoder (default: the trained MiniLM, exported at --precision, shipped serving
defaults) on the embedded Triton over loopback, with --allocator's malloc. Measures
single-client capacity, then offers 80% of it for --steady seconds and 2x for --overload
seconds (open loop, 100 products per request, the default 2 s deadline). Every --sample-every
seconds it records the resident memory of tritonserver and of each model's process. Every
answer is compared with the scores the idle server gave for the same request; every request
must end answered, rejected as overloaded, or past its deadline: anything else is lost.
Reports, per process, the memory slope after warm-up (MiB per hour, with its standard error),
of its resident and of its private (anonymous) memory, over the whole time after warm-up and
over each quarter of it. Writes perf/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.run_facts import run_facts  # noqa: E402
from perf.systems import memory_kb, process_tree  # noqa: E402
from perf.workload import make_workload  # noqa: E402
from polyrank.client import DeadlineExceededError, OverloadedError, RerankClient, RerankError  # noqa: E402
from polyrank.server import ALLOCATORS, EmbeddedTritonServer, ServerConfig  # noqa: E402

RESULTS = ROOT / "perf" / "results" / "soak.json"
CANDIDATES = 100
SCORE_TOLERANCE = 1e-3  # a request pooled with others runs in other chunk widths: float noise only


def process_label(pid: int) -> str:
    """'tritonserver', or the model a Python-backend stub serves (its model.py's folder)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    for argument in arguments:
        if argument.endswith(b"model.py"):
            return Path(argument.decode()).parent.parent.name
    return Path(arguments[0].decode()).name if arguments and arguments[0] else str(pid)


class MemorySampler(threading.Thread):
    """Samples the resident memory (MiB) of every process of the server every `every_s` seconds."""

    def __init__(self, server_pid: int, every_s: float):
        super().__init__(daemon=True)
        self.server_pid, self.every_s = server_pid, every_s
        self.samples: list[dict] = []  # {"t": seconds since start, "phase": ..., label: MiB}
        self.phase = "warm-up"
        self._done = threading.Event()
        self.started_at = time.perf_counter()

    def run(self):
        while not self._done.wait(0 if not self.samples else self.every_s):
            sample = {"t": round(time.perf_counter() - self.started_at, 1), "phase": self.phase}
            for pid in process_tree(self.server_pid):
                label = process_label(pid)
                sample[label] = round(sample.get(label, 0) + memory_kb(pid, "VmRSS") / 1024, 1)
                # resident = private (anonymous) + shared memory and files mapped; only the first can leak
                sample[f"{label} anonymous"] = round(sample.get(f"{label} anonymous", 0) + memory_kb(pid, "RssAnon") / 1024, 1)
            self.samples.append(sample)

    def stop(self):
        self._done.set()
        self.join()


def slope_mib_per_hour(samples: list[dict], label: str) -> dict:
    """Least-squares slope of one process's memory over the samples, with its standard error."""
    points = [(s["t"], s[label]) for s in samples if label in s]
    if len(points) < 3:
        return {"samples": len(points)}
    t, mib = np.array(points, dtype=float).T
    design = np.vstack([t, np.ones_like(t)]).T
    (slope, intercept), residuals, *_ = np.linalg.lstsq(design, mib, rcond=None)
    dof = len(t) - 2
    sigma2 = float(residuals[0]) / dof if residuals.size and dof > 0 else 0.0
    stderr = (sigma2 / ((t - t.mean()) ** 2).sum()) ** 0.5
    return {"samples": len(points), "slope_mib_per_hour": round(slope * 3600, 2), "stderr_mib_per_hour": round(stderr * 3600, 2),
            "first_mib": round(float(mib[0]), 1), "last_mib": round(float(mib[-1]), 1)}


def windows(samples: list[dict], count: int) -> list[list[dict]]:
    """The samples cut into `count` consecutive windows of equal length."""
    size = len(samples) // count
    return [samples[i * size:(i + 1) * size] for i in range(count)] if size else []


def run_phase(client: RerankClient, workload, expected, requests_per_s: float, duration_s: float) -> dict:
    """Open-loop load: a request every 1/rate s for duration_s; each outcome counted, each answer checked."""
    counts = {"answered": 0, "wrong": 0, "rejected": 0, "deadline_exceeded": 0, "lost": 0}
    lost_examples: list[str] = []
    lock = threading.Lock()

    def call(number: int):
        request = workload[number % len(workload)]
        try:
            scores = client.score(request.query, list(request.products))
            outcome = "answered" if np.abs(scores - expected[number % len(workload)]).max() <= SCORE_TOLERANCE else "wrong"
        except OverloadedError:
            outcome = "rejected"
        except DeadlineExceededError:
            outcome = "deadline_exceeded"
        except RerankError as error:
            outcome = "lost"
            with lock:
                lost_examples.append(str(error)[:200])
        with lock:
            counts[outcome] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(256) as pool:
        for number in range(int(duration_s * requests_per_s)):
            time.sleep(max(0.0, started + number / requests_per_s - time.perf_counter()))
            pool.submit(call, number)
    seconds = time.perf_counter() - started
    return {"requests": sum(counts.values()), "seconds": round(seconds, 1), **counts,
            "answered_pairs_per_s": round(CANDIDATES * counts["answered"] / seconds, 1), "lost_examples": lost_examples[:5]}


def soak(server: EmbeddedTritonServer, phases: list[tuple[str, float, float]], sample_every_s: float, queries: int = 16) -> dict:
    """Runs the phases (name, multiple of capacity, seconds) against a running server."""
    workload = make_workload(queries=queries, candidates=CANDIDATES, seed=1)
    with RerankClient(server.grpc_url, timeout_s=120, max_concurrent_requests=256, retry_deadline_s=0) as client:
        sampler = MemorySampler(server.process.pid, sample_every_s)
        sampler.start()
        expected, latencies = [], []
        for request in workload:  # the reference answers, and capacity
            started = time.perf_counter()
            expected.append(client.score(request.query, list(request.products)))
            latencies.append(time.perf_counter() - started)
        capacity = CANDIDATES * len(latencies[1:]) / sum(latencies[1:])
        results = {}
        for name, multiple, seconds in phases:
            sampler.phase = name
            results[name] = {"offered_x_capacity": multiple, **run_phase(client, workload, expected, multiple * capacity / CANDIDATES, seconds)}
            print(json.dumps({name: results[name]}), flush=True)
        sampler.stop()
    steady = [s for s in sampler.samples if s["phase"] == phases[0][0]]
    after_warm_up = steady[len(steady) // 5:]  # the first fifth of the steady phase is warm-up
    labels = sorted({k for s in sampler.samples for k in s} - {"t", "phase"})
    return {
        "capacity_pairs_per_s": round(capacity, 1),
        "phases": results,
        "lost": sum(r["lost"] for r in results.values()),
        "wrong": sum(r["wrong"] for r in results.values()),
        "memory_slope_after_warm_up": {label: slope_mib_per_hour(after_warm_up, label) for label in labels},
        "memory_slope_whole_run": {label: slope_mib_per_hour(sampler.samples, label) for label in labels},
        # growth that settles shows as slopes falling window by window; a leak keeps its slope
        "memory_slope_by_window_after_warm_up": {label: [slope_mib_per_hour(window, label) for window in windows(after_warm_up, 4)]
                                                 for label in labels},
        "memory_samples": sampler.samples,
    }


def main() -> int:
    from perf.trained_teacher import trained_minilm
    from polyrank.export.assets import cache_dir_from
    from polyrank.export.build_repository import build_repository_unless_current
    from polyrank.export.config import ExportConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="cross-encoder checkpoint (default: the trained MiniLM)")
    parser.add_argument("--precision", default="bf16", help="export precision (default bf16)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "soak")
    parser.add_argument("--steady", type=float, default=1800.0, help="seconds at 80%% of capacity (default 1800)")
    parser.add_argument("--overload", type=float, default=600.0, help="seconds at 2x capacity (default 600)")
    parser.add_argument("--sample-every", type=float, default=10.0)
    parser.add_argument("--allocator", choices=ALLOCATORS, default="system", help="the server's memory allocator (default system)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = args.model or str(trained_minilm(cache_dir_from(os.environ))[0])
    config = ExportConfig(model=model, output=args.workdir / "repository", max_length=128, precision=args.precision)
    build_repository_unless_current(config)
    server_config = ServerConfig(repository=config.output, grpc_port=0, http_port=0, metrics_port=0, allocator=args.allocator)
    with EmbeddedTritonServer(server_config) as server:
        result = soak(server, [("steady", 0.8, args.steady), ("overload", 2.0, args.overload)], args.sample_every)
    report = {**run_facts(), "model": model, "precision": args.precision, "allocator": args.allocator, **result}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "memory_samples"}, indent=2))
    print(f"wrote {args.results}")
    return 0 if report["lost"] == 0 and report["wrong"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
