"""The full-size mmBERT-small-shaped model with the exact Gemma-2 tokenizer: export parity,
and the same scores through the embedded Triton server. Slow (minutes), runs in CI."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from polyrank.client import RerankClient
from polyrank.export.assets import cache_dir_from, shaped_model
from polyrank.export.build_repository import build_repository
from polyrank.export.config import ExportConfig
from polyrank.checkpoint import torch_scores
from polyrank.export.samples import parity_pairs
from polyrank.checkpoint import load_checkpoint
from polyrank.model_repository.pair_encoding import PairEncoder
from polyrank.server import EmbeddedTritonServer, ServerConfig

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def shaped_model_dir():
    return Path(shaped_model(cache_dir_from(os.environ)))


def test_model_has_mmbert_small_shape(shaped_model_dir):
    config = json.loads((shaped_model_dir / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (22, 384, 6)
    assert (config["intermediate_size"], config["vocab_size"], config["local_attention"]) == (1152, 256000, 128)


def test_gemma_tokenizer_encodes_pairs_like_transformers(shaped_model_dir):
    queries, documents = parity_pairs()
    encoder = PairEncoder.from_file(shaped_model_dir / "tokenizer.json", max_length=256)
    expected = AutoTokenizer.from_pretrained(shaped_model_dir)(
        queries, documents, truncation="only_second", max_length=256
    )["input_ids"]
    encoded = [e.ids for e in encoder.encode(queries, documents)]
    assert encoded == expected
    assert all(ids[0] == 2 and ids[-1] == 1 for ids in encoded)
    assert max(len(ids) for ids in encoded) > 128  # past the local attention window


def test_export_parity_and_scores_through_triton(shaped_model_dir, tmp_path):
    repository = build_repository(
        ExportConfig(model=str(shaped_model_dir), output=tmp_path / "repository"), log=lambda _: None
    )
    manifest = json.loads((repository / "scorer" / "1" / "manifest.json").read_text())
    assert manifest["source"]["parameters"] == pytest.approx(140.6e6, rel=0.01)
    assert manifest["tokenizer_template"] == "<bos> {query} <eos> {product} <eos>"
    assert manifest["parity"]["passed"] and manifest["parity"]["max_abs_diff"] <= 1e-4

    checkpoint = load_checkpoint(str(shaped_model_dir))
    encoder = PairEncoder(checkpoint.tokenizer, 256, checkpoint.pad_id)
    queries, documents = parity_pairs()
    config = ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0)
    with EmbeddedTritonServer(config) as server, RerankClient(server.grpc_url, timeout_s=120) as client:
        for query in dict.fromkeys(queries):
            products = [d for q, d in zip(queries, documents) if q == query]
            expected = torch_scores(checkpoint, encoder, [query] * len(products), products)
            assert np.abs(client.score(query, products) - expected).max() <= 1e-4
