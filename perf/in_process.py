"""In-process scoring of a polyrank repository's scorer: the serving-overhead ceiling.

The best simple recipe (PEERS.md): pairs sorted by token length, batches of 16, 2 threads,
no server in between; the scorer's own files run by the same runtime the server uses
(model_repository/runtimes.py: ONNX Runtime, or OpenVINO in bf16 / f32).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from polyrank.export.scoring import TokenCount, runtime_batch_scorer, score_sorted
from polyrank.model_repository.pair_encoding import PairEncoder
from polyrank.model_repository.runtimes import MODEL_FILES, open_runtime


class InProcessScorer:
    """A repository's scorer, in this process: same files, same runtime, length-sorted batches of 16."""

    def __init__(self, repository: Path, threads: int = 2, scorer: str = "scorer", tokenizer: str = "tokenizer"):
        version = Path(repository) / scorer / "1"
        manifest = json.loads((version / "manifest.json").read_text())
        parameters = _parameters(Path(repository) / scorer / "config.pbtxt")
        runtime = parameters.get("runtime", "onnxruntime")
        options = json.loads(parameters.get("runtime_options", "{}"))
        self.runtime = open_runtime(runtime, str(version / MODEL_FILES[runtime]), threads=threads, **options)
        self.encoder = PairEncoder.from_file(Path(repository) / tokenizer / "1" / "tokenizer.json", manifest["max_length"])
        self.run = runtime_batch_scorer(self.runtime)
        self.tokens = TokenCount()

    def score(self, query: str, products: list[str]) -> np.ndarray:
        return score_sorted(self.run, self.encoder, query, products, tokens=self.tokens)


def _parameters(config_pbtxt: Path) -> dict:
    """The string parameters of a model's config.pbtxt."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(config_pbtxt.read_text(), model_config_pb2.ModelConfig())
    return {key: value.string_value for key, value in config.parameters.items()}
