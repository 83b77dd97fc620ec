"""Triton Python-backend tokenizer: (QUERY, DOCUMENTS) pairs -> padded token ids for a
cross-encoder, or, when its config's input is TEXTS, single texts -> padded token ids for a
two-tower encoder.

Every request the dynamic batcher hands over is tokenized in one call of the tokenizer;
each request then gets its own output, padded only to its own longest row.
"""

import os
import sys

import triton_python_backend_utils as pb_utils

# pair_encoding.py, text_rule.py and artifacts.py are copied next to this file when the repository is built.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from artifacts import ModelSetupError, checked_setup  # noqa: E402
from pair_encoding import PairEncoder, decode_text  # noqa: E402

REQUIRED_PARAMETERS = ("max_length", "pad_id")


class TritonPythonModel:
    def initialize(self, args):
        try:
            config, parameters, version_dir = checked_setup(args, "tokenizer", REQUIRED_PARAMETERS)
        except ModelSetupError as error:
            raise pb_utils.TritonModelException(str(error))
        self.encoder = PairEncoder.from_file(
            os.path.join(version_dir, "tokenizer.json"),
            max_length=int(parameters["max_length"]),
            pad_id=int(parameters["pad_id"]),
        )
        self.output_names = {output["name"] for output in config["output"]}
        self.single_texts = any(i["name"] == "TEXTS" for i in config["input"])

    def execute(self, requests):
        responses = [None] * len(requests)
        queries, documents, spans = [], [], []  # single texts travel in `documents`
        for position, request in enumerate(requests):
            try:
                if self.single_texts:
                    request_queries, request_documents = [], _read_texts(request, "TEXTS")
                else:
                    request_queries, request_documents = _read_pairs(request)
            except ValueError as error:
                responses[position] = _error(str(error), pb_utils.TritonError.INVALID_ARG)
                continue
            spans.append((position, len(documents), len(documents) + len(request_documents)))
            queries.extend(request_queries)
            documents.extend(request_documents)

        if not spans:
            return responses
        try:
            if self.single_texts:
                encodings = self.encoder.encode_texts(documents)
            else:
                encodings = self.encoder.encode(queries, documents)
            for position, start, stop in spans:
                responses[position] = self._response(encodings[start:stop])
        except Exception as error:  # one bad batch must still answer every request
            for position, _, _ in spans:
                responses[position] = _error(
                    f"tokenizer failed: {error}", pb_utils.TritonError.INTERNAL
                )
        return responses

    def _response(self, encodings):
        batch = self.encoder.pad(encodings)
        tensors = [
            pb_utils.Tensor("INPUT_IDS", batch.input_ids),
            pb_utils.Tensor("ATTENTION_MASK", batch.attention_mask),
        ]
        if "TOKEN_TYPE_IDS" in self.output_names:
            tensors.append(pb_utils.Tensor("TOKEN_TYPE_IDS", batch.token_type_ids))
        return pb_utils.InferenceResponse(output_tensors=tensors)


def _read_texts(request, name):
    """The strings of input `name`; ValueError if missing or malformed."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"{name} is missing")
    return [decode_text(name, row, value) for row, value in enumerate(tensor.as_numpy().reshape(-1))]


def _read_pairs(request):
    """Returns (queries, documents) of one request as str lists; ValueError if malformed."""
    queries, documents = _read_texts(request, "QUERY"), _read_texts(request, "DOCUMENTS")
    if len(queries) != len(documents):
        raise ValueError(
            f"QUERY has {len(queries)} rows but DOCUMENTS has {len(documents)}; send one query per document"
        )
    return queries, documents


def _error(message, code):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
