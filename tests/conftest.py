"""Session-scoped tiny models, exported repositories and one real embedded Triton server."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyrank.export.build_repository import build_repository
from polyrank.export.config import ExportConfig, ServingConfig
from polyrank.checkpoint import load_checkpoint
from polyrank.server import EmbeddedTritonServer, ServerConfig
from tests.tiny_models import build_tiny_bert, build_tiny_modernbert, sharpened, trained_ranker

# Small enough that the chunking tests split lists into several requests.
TEST_MAX_BATCH_SIZE = 8
TEST_MAX_LENGTH = 128


@pytest.fixture(scope="session")
def tiny_modernbert_dir(tmp_path_factory) -> Path:
    return build_tiny_modernbert(tmp_path_factory.mktemp("tiny-modernbert"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def spread_bert_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    """The tiny BERT with spread-out scores (no near-ties): for ranking metrics and distillation."""
    return sharpened(tiny_bert_dir, tmp_path_factory.mktemp("spread-bert"))


@pytest.fixture(scope="session")
def ranker_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    """The tiny BERT fine-tuned to rank the sample: scores with clear gaps, for the quality gate."""
    return trained_ranker(tiny_bert_dir, tmp_path_factory.mktemp("ranker") / "model")


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_modernbert_dir):
    return load_checkpoint(str(tiny_modernbert_dir))


@pytest.fixture(scope="session")
def tiny_repository(tiny_modernbert_dir, tmp_path_factory) -> Path:
    config = ExportConfig(
        model=str(tiny_modernbert_dir),
        output=tmp_path_factory.mktemp("repositories") / "tiny",
        max_length=TEST_MAX_LENGTH,
        serving=ServingConfig(max_batch_size=TEST_MAX_BATCH_SIZE),
    )
    return build_repository(config, log=lambda _: None)


@pytest.fixture(scope="session")
def triton_server(tiny_repository, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    config = ServerConfig(
        repository=tiny_repository, grpc_port=0, http_port=0, metrics_port=0, log_path=log_path, startup_timeout_s=120
    )
    server = EmbeddedTritonServer(config).start()
    yield server
    server.stop()
    assert server.process.poll() is not None, "tritonserver still running after stop()"
