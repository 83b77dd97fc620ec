"""The server's memory allocator (ServerConfig.allocator, `polyrank serve --allocator`): preloaded
into tritonserver and every model process, the same scores as with glibc's malloc, and a clear
one-line error where the library is missing. (What it changes: perf/memory_growth.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perf.systems import process_tree
from polyrank import server as server_module
from polyrank.client import RerankClient
from polyrank.export.samples import SAMPLE_QUERIES
from polyrank.server import EmbeddedTritonServer, ServerConfig, ServerError, allocator_library


def mapped_libraries(pid: int) -> set[str]:
    return {Path(line.split()[-1]).name for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/" in line}


def test_an_unknown_allocator_is_refused_naming_the_choices(tiny_repository):
    with pytest.raises(ValueError, match="the allocator must be one of system, jemalloc, tcmalloc, got 'mimalloc'"):
        ServerConfig(repository=tiny_repository, allocator="mimalloc")


def test_a_missing_allocator_library_fails_before_starting_and_names_the_package(tiny_repository, monkeypatch):
    monkeypatch.setitem(server_module.ALLOCATOR_LIBRARIES, "jemalloc", ("libjemalloc.so.99", "libjemalloc99"))
    server = EmbeddedTritonServer(ServerConfig(repository=tiny_repository, grpc_port=0, http_port=0, metrics_port=0,
                                               allocator="jemalloc"))
    with pytest.raises(ServerError, match=r"allocator jemalloc needs libjemalloc\.so\.99, .*: apt-get install libjemalloc99, "
                                          r"or serve with allocator system$"):
        server.start()
    assert server.process is None


def test_jemalloc_is_preloaded_into_every_process_and_scores_the_same(tiny_repository, triton_server):
    try:
        library = allocator_library("jemalloc")
    except ServerError as error:
        pytest.skip(str(error))
    query = SAMPLE_QUERIES[0]
    with RerankClient(triton_server.grpc_url) as client:
        expected = client.score(query.query, list(query.products))
    assert library.name not in mapped_libraries(triton_server.pid)  # the default is glibc's malloc
    config = ServerConfig(repository=tiny_repository, grpc_port=0, http_port=0, metrics_port=0, allocator="jemalloc")
    with EmbeddedTritonServer(config) as server, RerankClient(server.grpc_url) as client:
        processes = process_tree(server.pid)
        assert len(processes) >= 3  # tritonserver, the tokenizer's and the scorer's processes
        assert all(library.name in mapped_libraries(pid) for pid in processes)
        np.testing.assert_allclose(client.score(query.query, list(query.products)), expected, atol=1e-6)
