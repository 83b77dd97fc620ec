"""The soak's CI version (about a minute): the real server under 80% of its capacity and then
twice it, with the shipped admission control. Every request ends answered with the right scores,
rejected as overloaded or past its deadline; none is lost; overload is turned away; memory is
sampled for the server and each model process. (The 40-minute run: perf/soak.py.)"""

from __future__ import annotations

import pytest

from perf.soak import soak
from polyrank.export.build_repository import build_repository
from polyrank.export.config import ExportConfig, ServingConfig
from polyrank.server import EmbeddedTritonServer, ServerConfig


@pytest.fixture(scope="module")
def slow_server(tiny_modernbert_dir, tmp_path_factory):
    """The tiny model made slow (one pair per run), so the load generator can offer twice its capacity."""
    root = tmp_path_factory.mktemp("soak")
    config = ExportConfig(model=str(tiny_modernbert_dir), output=root / "repository", max_length=128,
                          serving=ServingConfig(max_pairs_per_run=1))
    build_repository(config, log=lambda _: None)
    with EmbeddedTritonServer(ServerConfig(repository=config.output, grpc_port=0, http_port=0, metrics_port=0)) as server:
        yield server


def test_a_minute_of_soak_loses_nothing_and_turns_overload_away(slow_server):
    report = soak(slow_server, [("steady", 0.8, 35.0), ("overload", 2.0, 20.0)], sample_every_s=5.0, queries=8)
    steady, overload = report["phases"]["steady"], report["phases"]["overload"]
    assert report["lost"] == 0, [steady["lost_examples"], overload["lost_examples"]]
    assert report["wrong"] == 0
    assert steady["answered"] >= steady["requests"] // 2
    assert overload["rejected"] > 0 and overload["answered"] > 0
    labels = set(report["memory_slope_whole_run"])
    assert {"tritonserver", "tokenizer", "scorer"} <= labels, labels
    assert {"tritonserver anonymous", "tokenizer anonymous", "scorer anonymous"} <= labels, labels
    assert all(len(report["memory_slope_by_window_after_warm_up"][label]) == 4 for label in labels)
    assert report["memory_slope_whole_run"]["scorer"]["samples"] >= 10
