"""Triton Python-backend model: a two-tower student's rerank, same tensors as the
cross-encoder's (QUERY, DOCUMENTS -> SCORES), or QUERY + precomputed DOCUMENT_EMBEDDINGS.

It embeds the distinct queries (and the documents, unless their embeddings came with the
request) of every request the batcher hands over through the embed ensembles (BLS calls),
then scores each row as scale * cosine + bias, the scale the student was trained on.
"""

import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

# artifacts.py and pair_encoding.py are copied next to this file when the repository is built.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from artifacts import ModelSetupError, checked_setup  # noqa: E402
from pair_encoding import decode_text  # noqa: E402

REQUIRED_PARAMETERS = ("query_embed_model", "product_embed_model", "embed_max_batch_size", "scale", "bias")


class TritonPythonModel:
    def initialize(self, args):
        try:
            config, parameters, _ = checked_setup(args, "two-tower rerank", REQUIRED_PARAMETERS)
        except ModelSetupError as error:
            raise pb_utils.TritonModelException(str(error))
        self.query_model = parameters["query_embed_model"]
        self.product_model = parameters["product_embed_model"]
        self.chunk = int(parameters["embed_max_batch_size"])
        self.scale, self.bias = float(parameters["scale"]), float(parameters["bias"])
        embeddings = next(i for i in config["input"] if i["name"] == "DOCUMENT_EMBEDDINGS")
        self.dim = int(embeddings["dims"][0])

    def execute(self, requests):
        responses = [None] * len(requests)
        accepted = []  # (position, query per row, document texts or None, document embeddings or None)
        for position, request in enumerate(requests):
            try:
                accepted.append((position, *self._read(request)))
            except ValueError as error:
                responses[position] = _error(str(error), pb_utils.TritonError.INVALID_ARG)
        if not accepted:
            return responses
        try:
            queries = list(dict.fromkeys(q for _, rows, _, _ in accepted for q in rows))
            query_vectors = dict(zip(queries, self._embed(self.query_model, queries)))
            texts = [d for _, _, documents, _ in accepted if documents is not None for d in documents]
            text_vectors = iter(self._embed(self.product_model, texts)) if texts else iter(())
            for position, rows, documents, given in accepted:
                vectors = given if given is not None else np.stack([next(text_vectors) for _ in documents])
                cosine = (np.stack([query_vectors[q] for q in rows]) * vectors).sum(axis=1)
                scores = (self.scale * cosine + self.bias).astype(np.float32).reshape(-1, 1)
                responses[position] = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("SCORES", scores)])
        except Exception as error:  # every request still gets exactly one answer
            for position, *_ in accepted:
                if responses[position] is None:
                    responses[position] = _error(f"two-tower rerank failed: {error}", pb_utils.TritonError.INTERNAL)
        return responses

    def _read(self, request):
        rows = _texts(request, "QUERY")
        documents = pb_utils.get_input_tensor_by_name(request, "DOCUMENTS")
        given = pb_utils.get_input_tensor_by_name(request, "DOCUMENT_EMBEDDINGS")
        if (documents is None) == (given is None):
            raise ValueError("send exactly one of DOCUMENTS and DOCUMENT_EMBEDDINGS")
        if documents is not None:
            texts = _texts(request, "DOCUMENTS")
            if len(texts) != len(rows):
                raise ValueError(f"QUERY has {len(rows)} rows but DOCUMENTS has {len(texts)}; send one query per document")
            return rows, texts, None
        vectors = given.as_numpy()
        if vectors.shape != (len(rows), self.dim):
            raise ValueError(
                f"DOCUMENT_EMBEDDINGS must have shape [{len(rows)}, {self.dim}] (one per QUERY row), "
                f"got {list(vectors.shape)}"
            )
        if not np.isfinite(vectors).all():
            raise ValueError("DOCUMENT_EMBEDDINGS holds NaN or infinite values")
        return rows, None, vectors.astype(np.float32, copy=False)

    def _embed(self, model, texts):
        """Embeddings [len(texts), dim] of UTF-8 texts from an embed ensemble, in calls of at most `chunk`."""
        parts = []
        for start in range(0, len(texts), self.chunk):
            batch = np.array(texts[start : start + self.chunk], dtype=object)
            response = pb_utils.InferenceRequest(
                model_name=model,
                requested_output_names=["EMBEDDINGS"],
                inputs=[pb_utils.Tensor("TEXTS", batch.reshape(-1, 1))],
            ).exec()
            if response.has_error():
                raise RuntimeError(f"{model}: {response.error().message()}")
            parts.append(pb_utils.get_output_tensor_by_name(response, "EMBEDDINGS").as_numpy())
        return np.concatenate(parts)


def _texts(request, name):
    """The UTF-8 bytes of input `name`, each checked by the text rule and passed on as they came."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"{name} is missing")
    values = list(tensor.as_numpy().reshape(-1))
    for row, value in enumerate(values):
        decode_text(name, row, value)
    return values


def _error(message, code):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
