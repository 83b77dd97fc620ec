"""perf/memory_growth.py's pieces: growth per request from memory readings, glibc's live-heap
count read through gdb from a real process, and the readings taken between segments of load
on the real server. (The 40,000-request run: perf/memory_growth.py.)"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import pytest

from perf.memory_growth import bytes_per_request, live_heap_kb, quarters, serve_requests
from perf.workload import make_workload
from polyrank.server import EmbeddedTritonServer, ServerConfig

HOLD_MEMORY = """
import sys
held = []
for line in sys.stdin:
    held.append(bytearray(int(line)))  # a 64 MiB buffer: malloc'ed (mmap'ed) and held
    print("held", flush=True)
"""


def test_growth_is_bytes_per_request_and_levelling_off_shows_quarter_by_quarter():
    leak = [(n, 1000 + n * 10 / 1024) for n in range(0, 4001, 200)]  # 10 bytes a request, KiB
    assert bytes_per_request(leak)["bytes_per_request"] == pytest.approx(10, abs=0.1)
    assert all(q["bytes_per_request"] == pytest.approx(10, abs=0.1) for q in map(bytes_per_request, quarters(leak)))
    filling = [(n, 1000 + 400 * (1 - 0.999 ** n)) for n in range(0, 4001, 200)]  # a cache filling up
    slopes = [bytes_per_request(q)["bytes_per_request"] for q in quarters(filling)]
    assert slopes == sorted(slopes, reverse=True) and slopes[-1] < slopes[0] / 4
    assert len(quarters(leak)) == 4 and all(len(q) == 6 for q in quarters(leak))
    assert quarters(leak[:5]) == []  # too few readings to cut


@pytest.mark.skipif(shutil.which("gdb") is None, reason="reading glibc's heap count needs gdb (Debian package gdb)")
def test_live_heap_counts_what_a_process_holds(tmp_path):
    log_path = tmp_path / "stderr.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-c", HOLD_MEMORY], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=log, text=True)
    try:
        before = live_heap_kb(process.pid, log_path)
        process.stdin.write(f"{64 << 20}\n")
        process.stdin.flush()
        assert process.stdout.readline() == "held\n"
        after = live_heap_kb(process.pid, log_path)
    finally:
        process.kill()
        process.wait()
    assert 64 * 1024 <= after - before < 66 * 1024, (before, after)


def test_memory_is_read_between_segments_of_load(triton_server):
    args = argparse.Namespace(warm_up=8, requests=30, sample_every=10, clients=2)
    run = serve_requests(triton_server, make_workload(queries=4, candidates=5, seed=1), args, heap=False)
    assert [sample["requests"] for sample in run["samples"]] == [0, 10, 20, 30]
    assert {"tritonserver", "tokenizer", "scorer"} <= set(run["growth"])
    assert all(sample["tritonserver"] > 1000 for sample in run["samples"])  # KiB of a real process
    assert run["growth"]["tritonserver"]["measured"]["samples"] == 4
    assert run["requests_per_s"] > 0 and run["rejected"] == 0


@pytest.mark.skipif(shutil.which("gdb") is None, reason="reading glibc's heap count needs gdb (Debian package gdb)")
def test_with_heap_the_live_heap_is_read_too_and_malloc_trim_gives_back_only(tiny_repository, tmp_path):
    # a server of its own: gdb stops and calls into it, which no other test's server should see
    config = ServerConfig(repository=tiny_repository, grpc_port=0, http_port=0, metrics_port=0,
                          log_path=tmp_path / "tritonserver.log")
    args = argparse.Namespace(warm_up=4, requests=20, sample_every=10, clients=2)
    with EmbeddedTritonServer(config) as server:
        run = serve_requests(server, make_workload(queries=4, candidates=5, seed=1), args, heap=True)
    heap = [sample["tritonserver live heap"] for sample in run["samples"]]
    resident = [sample["tritonserver"] for sample in run["samples"]]
    assert all(0 < held < private for held, private in zip(heap, resident))  # what it holds, within what it keeps
    assert 0 < run["tritonserver_kib_after_malloc_trim"] <= resident[-1] + 64  # trimming only gives memory back
