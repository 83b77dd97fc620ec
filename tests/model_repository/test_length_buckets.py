"""Length buckets: the tokenizer pads each request up to a bucket width, so that Triton's native
backends (triton-gpu) can merge requests of similar lengths. On by default for triton-gpu, off
for the embedded scorer; with them on, the embedded server still scores exactly as PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from polyrank.checkpoint import torch_scores
from polyrank.client import RerankClient
from polyrank.export.build_repository import build_repository
from polyrank.export.config import ExportConfig
from polyrank.export.errors import ExportSettingsError
from polyrank.export.samples import SAMPLE_QUERIES
from polyrank.model_repository.pair_encoding import PairEncoder
from polyrank.server import EmbeddedTritonServer, ServerConfig


@pytest.mark.parametrize("settings, buckets", [
    ({"target": "triton-gpu", "precision": "fp16", "max_length": 256}, (16, 32, 64, 128, 256)),
    ({"target": "triton-gpu", "precision": "fp16", "max_length": 100}, (16, 32, 64, 100)),
    ({"target": "embedded", "max_length": 256}, ()),
    ({"target": "embedded", "max_length": 256, "length_buckets": (24, 512)}, (24, 256)),
    ({"target": "triton-gpu", "precision": "fp16", "max_length": 256, "length_buckets": ()}, ()),
])
def test_buckets_by_target_always_end_at_max_length(settings, buckets, tmp_path):
    assert ExportConfig(model="m", output=tmp_path, **settings).padding_buckets() == buckets


def test_bad_buckets_are_refused(tmp_path):
    with pytest.raises(ExportSettingsError, match="length_buckets must be positive integers, got \\(16, 0\\)"):
        ExportConfig(model="m", output=tmp_path, length_buckets=(16, 0))


def test_bucketed_requests_score_exactly_as_pytorch(tiny_modernbert_dir, tiny_checkpoint, tmp_path):
    config = ExportConfig(model=str(tiny_modernbert_dir), output=tmp_path / "repository", max_length=64,
                          length_buckets=(16, 32, 48))
    repository = build_repository(config, log=lambda _: None)
    assert 'string_value: "16,32,48,64"' in (repository / "tokenizer" / "config.pbtxt").read_text()
    encoder = PairEncoder(tiny_checkpoint.tokenizer, 64, tiny_checkpoint.pad_id)
    server_config = ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0)
    with EmbeddedTritonServer(server_config) as server, RerankClient(server.grpc_url) as client:
        for request in SAMPLE_QUERIES:
            expected = torch_scores(tiny_checkpoint, encoder, [request.query] * len(request.products), list(request.products))
            assert np.abs(client.score(request.query, list(request.products)) - expected).max() < 1e-4
