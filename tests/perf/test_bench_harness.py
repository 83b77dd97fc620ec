"""The side-by-side benchmark's pieces, on the tiny repository: the library worker protocol
and its padding count, and the process-tree memory reading."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from polyrank.export.parity import onnx_scores, onnx_session
from polyrank.export.samples import SAMPLE_QUERIES
from polyrank.model_repository.pair_encoding import PairEncoder
from tests.conftest import TEST_MAX_LENGTH

ROOT = Path(__file__).resolve().parents[2]


def test_in_process_worker_scores_like_the_graph_and_counts_padding(tiny_repository, tmp_path):
    workload = [{"query": s.query, "products": list(s.products)} for s in SAMPLE_QUERIES[:3]]
    (tmp_path / "workload.json").write_text(json.dumps(workload))
    command = [sys.executable, str(ROOT / "perf" / "library_worker.py"), "--system", "in-process", "--model",
               str(tiny_repository), "--workload", str(tmp_path / "workload.json"), "--max-length", str(TEST_MAX_LENGTH)]
    result = subprocess.run(command, input="round\nscores\n", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    ready, round_reply, scores_reply = [json.loads(line) for line in result.stdout.splitlines()]
    assert ready == {"ready": True}
    assert len(round_reply["latencies_s"]) == len(workload)
    encoder = PairEncoder.from_file(tiny_repository / "tokenizer" / "1" / "tokenizer.json", TEST_MAX_LENGTH)
    real = sum(len(e.ids) for w in workload for e in encoder.encode([w["query"]] * len(w["products"]), w["products"]))
    assert round_reply["real_tokens"] == real <= round_reply["computed_tokens"]
    first = workload[0]
    expected = onnx_scores(onnx_session(tiny_repository / "scorer" / "1" / "model.onnx"), encoder,
                           [first["query"]] * len(first["products"]), first["products"])
    np.testing.assert_allclose(scores_reply["scores"], expected, atol=1e-5)
    assert scores_reply["peak_rss_mb"] > 50


def test_process_tree_peak_memory_includes_children():
    from perf.systems import process_tree_peak_mb

    child = subprocess.Popen([sys.executable, "-c", "b = bytearray(300 * 1024 * 1024); import time; time.sleep(30)"])
    try:
        for _ in range(100):  # until the child has touched its 300 MB
            if process_tree_peak_mb(child.pid) > 300:
                break
            time.sleep(0.1)
        assert process_tree_peak_mb(child.pid) > 300
        assert process_tree_peak_mb(os.getpid()) > process_tree_peak_mb(child.pid)  # parent + child
    finally:
        child.kill()
        child.wait()


def test_latency_summary_gives_a_p99_only_from_100_samples():
    sys.path.insert(0, str(ROOT))
    from perf.alternating import latency_summary

    few = latency_summary({"latencies_s": [0.001 * i for i in range(1, 51)], "pairs_per_s": [10.0, 30.0, 20.0]})
    assert few["p99_ms"] is None and few["max_ms"] == 50.0 and few["latency_samples"] == 50
    assert few["pairs_per_s"] == 20.0 and few["p50_ms"] == 25.5
    many = latency_summary({"latencies_s": [0.001 * i for i in range(1, 201)], "pairs_per_s": [1.0]})
    assert many["p99_ms"] == 198.01
