"""In-process ONNX Runtime on a polyrank scorer graph: the serving-overhead ceiling.

The best simple recipe (PEERS.md): pairs sorted by token length, batches of 16, 2 intra-op
threads, no server in between.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from polyrank.model_repository.pair_encoding import PairEncoder


class InProcessOnnxRuntime:
    """The serving-overhead ceiling: same graph, same encoder, length-sorted batches of 16."""

    def __init__(self, onnx_path: Path, encoder: PairEncoder, batch: int = 16, threads: int = 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.encoder = encoder
        self.batch = batch
        self.computed_tokens = 0
        self.real_tokens = 0

    def score(self, query: str, products: list[str]) -> np.ndarray:
        encodings = self.encoder.encode([query] * len(products), products)
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        scores = np.empty(len(products), dtype=np.float32)
        for start in range(0, len(order), self.batch):
            rows = order[start : start + self.batch]
            padded = self.encoder.pad([encodings[i] for i in rows])
            self.computed_tokens += padded.input_ids.size
            self.real_tokens += padded.real_tokens
            scores[rows] = self.session.run(["SCORES"], padded.feed(self.input_names))[0].reshape(-1)
        return scores
