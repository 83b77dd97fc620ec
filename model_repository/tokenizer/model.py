"""Triton Python-backend tokenizer: (QUERY, DOCUMENTS) pairs -> padded token ids for a
cross-encoder, or, when its config's input is TEXTS, single texts -> padded token ids for a
two-tower encoder.

Every request the dynamic batcher hands over is tokenized in one call of the tokenizer;
each request then gets its own output, padded only to its own longest row.

A cross-encoder's tokenizer is its pipeline's entrance: with admission control on, an
interactive request whose deadline the admitted work ahead of it would exceed is rejected
here: before it is tokenized if even a lower bound of its tokens (from its texts' bytes) would
not fit, else on its real tokens, once tokenized (admission.py).
"""

import os
import sys

import triton_python_backend_utils as pb_utils

# pair_encoding.py, text_rule.py, artifacts.py and admission.py are copied next to this file when the repository is built.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from admission import AdmissionControl, TokenEstimate, computed_tokens, deadline_s, is_batch  # noqa: E402
from artifacts import ModelSetupError, checked_setup  # noqa: E402
from pair_encoding import PairEncoder, decode_text  # noqa: E402

REQUIRED_PARAMETERS = ("max_length", "pad_id", "length_buckets")
# Set by a cross-encoder's tokenizer, not by a two-tower one's.
OPTIONAL_PARAMETERS = (
    "admission_control", "admission_scorer", "admission_deadline_share", "admission_default_deadline_s",
    "admission_max_pairs_per_run", "admission_max_tokens_per_run",  # the scorer's runs, whose padding is work
)


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
        # Widths each request is padded up to (empty: its own longest pair), for native scorers.
        self.length_buckets = sorted(int(width) for width in parameters["length_buckets"].split(",") if width.strip())
        self.output_names = {output["name"] for output in config["output"]}
        self.single_texts = any(i["name"] == "TEXTS" for i in config["input"])
        # Absent in a two-tower pipeline's tokenizer, whose embed models measure no speed.
        self.admission = None
        if parameters.get("admission_control") == "true":
            self.admission = AdmissionControl(parameters["admission_scorer"], float(parameters["admission_deadline_share"]))
            self.token_estimate = TokenEstimate(int(parameters["max_length"]))
            self.default_deadline_s = float(parameters["admission_default_deadline_s"])
            self.scorer_runs = (int(parameters["admission_max_pairs_per_run"]), int(parameters["admission_max_tokens_per_run"]))
            self.admission_family = pb_utils.MetricFamily(  # must outlive its metrics
                name="polyrank_admission_requests_total",
                description="Interactive requests admission control admitted or rejected (server at capacity)",
                kind=pb_utils.MetricFamily.COUNTER,
            )
            self.admission_counts = {
                outcome: self.admission_family.Metric(labels={"outcome": outcome, "model": args["model_name"]})
                for outcome in ("admitted", "rejected")
            }

    def finalize(self):
        if self.admission is not None:
            self.admission.close()

    def execute(self, requests):
        responses = [None] * len(requests)
        queries, documents, spans = [], [], []  # single texts travel in `documents`
        judged = {}  # position: (each pair's bytes, its deadline; None for batch work), with admission control on
        for position, request in enumerate(requests):
            try:
                if self.single_texts:
                    request_queries, request_documents = [], _read_texts(request, "TEXTS")
                else:
                    request_queries, request_documents = _read_pairs(request)
            except ValueError as error:
                responses[position] = _error(str(error), pb_utils.TritonError.INVALID_ARG)
                continue
            if self.admission is not None:
                pair_bytes = TokenEstimate.pair_bytes(request_queries, request_documents)
                # Batch-priority work is never turned away here: it waits behind interactive calls
                # within its own (longer) queue timeout, and is not counted as work ahead of them.
                deadline = None if is_batch(request) else deadline_s(request, self.default_deadline_s)
                if deadline is not None:
                    refusal = self.admission.refuse_early(self.token_estimate.at_least(pair_bytes), deadline)
                    if refusal is not None:
                        responses[position] = self._rejected(refusal)
                        continue
                judged[position] = (pair_bytes, deadline)
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
                refusal = self._admission_refusal(*judged[position], encodings[start:stop]) if position in judged else None
                responses[position] = self._rejected(refusal) if refusal else self._response(encodings[start:stop])
        except Exception as error:  # one bad batch must still answer every request
            for position, _, _ in spans:
                responses[position] = _error(
                    f"tokenizer failed: {error}", pb_utils.TritonError.INTERNAL
                )
        return responses

    def _admission_refusal(self, pair_bytes, deadline, encodings):
        """Learns bytes per token from a tokenized request and, for an interactive one, decides
        on the tokens the scorer will compute for it: the rejection message, or None (admitted,
        and counted as such)."""
        pair_tokens = [len(encoding.ids) for encoding in encodings]
        self.token_estimate.learn(pair_bytes, pair_tokens)
        if deadline is None:
            return None
        refusal = self.admission.admit(computed_tokens(pair_tokens, *self.scorer_runs), deadline)
        if refusal is None:
            self.admission_counts["admitted"].increment(1)
        return refusal

    def _rejected(self, refusal):
        self.admission_counts["rejected"].increment(1)
        return _error(refusal, pb_utils.TritonError.UNAVAILABLE)

    def _response(self, encodings):
        batch = self.encoder.pad(encodings, self.length_buckets)
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
