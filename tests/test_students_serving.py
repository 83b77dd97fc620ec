"""Students beside their teacher in one repository, served by the real embedded Triton: a
shallow cross-encoder and a two-tower student (its rerank model takes the same tensors as the
teacher's, plus precomputed product embeddings)."""

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from polyrank.client import InvalidRequestError, RerankClient
from polyrank.evaluate import model_scorer
from polyrank.export.build_repository import build_repository
from polyrank.export.config import ExportConfig, ServingConfig
from polyrank.export.samples import SAMPLE_QUERIES
from polyrank.server import EmbeddedTritonServer, ServerConfig
from polyrank.training.distill import DistillConfig, distill
from tests.conftest import TEST_MAX_BATCH_SIZE, TEST_MAX_LENGTH
from tests.tiny_models import sharpened

QUERY = SAMPLE_QUERIES[0].query
PRODUCTS = [p for s in SAMPLE_QUERIES for p in s.products][:19]  # more than one request of 8


def quiet(_):
    pass


@pytest.fixture(scope="module")
def students(tiny_modernbert_dir, tmp_path_factory):
    """A sharpened tiny ModernBERT teacher (the mmBERT path), its shallow and two-tower students."""
    root = tmp_path_factory.mktemp("students")
    teacher = sharpened(tiny_modernbert_dir, root / "teacher", factor=30.0)  # within the 1e-4 parity bound
    lists = root / "lists.jsonl"
    lists.write_text("".join(json.dumps({"query": s.query, "documents": list(s.products)}) + "\n" for s in SAMPLE_QUERIES))
    common = dict(teacher=str(teacher), data=lists, epochs=2, lists_per_batch=4, max_length=64)
    shallow = distill(DistillConfig(student="shallow", layers=2, output=root / "shallow", **common), log=quiet)
    two_tower = distill(
        DistillConfig(student="two-tower", dim=16, reduced_dim=8, output=root / "two-tower", **common), log=quiet
    )
    return {"rerank": teacher, "shallow": shallow, "two_tower": two_tower}


@pytest.fixture(scope="module")
def repository(students, tmp_path_factory):
    output = tmp_path_factory.mktemp("shared-repository") / "models"
    settings = dict(output=output, max_length=TEST_MAX_LENGTH, serving=ServingConfig(max_batch_size=TEST_MAX_BATCH_SIZE))
    build_repository(ExportConfig(model=str(students["rerank"]), **settings), log=quiet)
    build_repository(ExportConfig(model=str(students["shallow"]), name="shallow", add=True, **settings), log=quiet)
    build_repository(ExportConfig(model=str(students["two_tower"]), add=True, **settings), log=quiet)
    build_repository(
        ExportConfig(model=str(students["two_tower"]), name="two_tower_8", embedding_dim=8, add=True, **settings),
        log=quiet,
    )
    return output


@pytest.fixture(scope="module")
def server(repository, tmp_path_factory):
    config = ServerConfig(
        repository=repository, grpc_port=0, http_port=0, metrics_port=0, startup_timeout_s=180,
        ready_models=("rerank", "shallow", "two_tower", "two_tower_8"),
        log_path=tmp_path_factory.mktemp("triton-students") / "tritonserver.log",
    )
    with EmbeddedTritonServer(config) as running:
        yield running


def test_one_repository_holds_teacher_and_students(repository):
    assert {p.name for p in repository.iterdir()} == {
        "rerank", "tokenizer", "scorer",
        "shallow", "shallow_tokenizer", "shallow_scorer",
        "two_tower", "two_tower_embed", "two_tower_tokenizer", "two_tower_encoder",
        "two_tower_8", "two_tower_8_embed", "two_tower_8_tokenizer", "two_tower_8_encoder",
    }
    manifest = json.loads((repository / "two_tower_encoder" / "1" / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "two-tower" and manifest["embedding_dim"] == 16
    assert manifest["parity_max_abs_diff"]["product"] <= 1e-4


@pytest.mark.parametrize("model", ["rerank", "shallow", "two_tower"])
def test_each_model_serves_the_same_tensors_and_scores_like_pytorch(server, students, model):
    expected = model_scorer(str(students[model]), TEST_MAX_LENGTH)(QUERY, PRODUCTS)
    with RerankClient(server.grpc_url, model_name=model) as client:
        served = client.score(QUERY, PRODUCTS)
    assert np.abs(served - expected).max() < 1e-4


def test_precomputed_product_embeddings_rank_like_the_texts(server):
    with RerankClient(server.grpc_url, model_name="two_tower") as client:
        catalogue = client.embed(PRODUCTS)
        assert catalogue.shape == (len(PRODUCTS), 16)
        assert np.allclose(np.linalg.norm(catalogue, axis=1), 1.0, atol=1e-5)
        from_embeddings = client.rerank_embeddings(QUERY, catalogue)
        from_texts = client.rerank(QUERY, PRODUCTS)
    assert [r["index"] for r in from_embeddings] == [r["index"] for r in from_texts]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(from_embeddings, from_texts)) < 1e-4


def test_reduced_embedding_serves_the_first_components(server, students):
    expected = model_scorer(str(students["two_tower"]), TEST_MAX_LENGTH, dim=8)(QUERY, PRODUCTS)
    with RerankClient(server.grpc_url, model_name="two_tower_8") as client:
        assert client.embed(PRODUCTS[:3]).shape == (3, 8)
        assert np.abs(client.score(QUERY, PRODUCTS) - expected).max() < 1e-4


def test_bad_embeddings_get_one_clear_error_and_the_server_keeps_serving(server):
    with RerankClient(server.grpc_url, model_name="two_tower") as client:
        with pytest.raises(InvalidRequestError, match=r"Expected \[-1,16\], got \[2,3\]"):
            client.rerank_embeddings(QUERY, np.ones((2, 3), dtype=np.float32))
        with pytest.raises(InvalidRequestError, match="NaN or infinite"):
            client.rerank_embeddings(QUERY, np.full((2, 16), np.nan, dtype=np.float32))
        raw = grpcclient.InferenceServerClient(server.grpc_url)  # around the client's checks
        query = grpcclient.InferInput("QUERY", [1, 1], "BYTES")
        query.set_data_from_numpy(np.array([[QUERY.encode()]], dtype=object))
        with pytest.raises(InferenceServerException, match="send exactly one of DOCUMENTS and DOCUMENT_EMBEDDINGS") as error:
            raw.infer("two_tower", [query])
        assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
        raw.close()
        assert len(client.rerank(QUERY, PRODUCTS[:3])) == 3


def test_adding_a_model_whose_name_is_taken_is_refused(repository, students):
    config = ExportConfig(model=str(students["shallow"]), output=repository, name="shallow", add=True)
    with pytest.raises(FileExistsError, match="already has models shallow, shallow_scorer, shallow_tokenizer"):
        build_repository(config, log=quiet)
