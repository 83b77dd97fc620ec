"""RerankClient: send a query and its candidate products to the `rerank` ensemble over gRPC."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Sequence

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from polyrank.client.types import InvalidRequestError, RankedDocument, RerankError, error_for_status


class RerankClient:
    """Reranks products for a query through a polyrank Triton server.

    Lists longer than the server model's max batch size are split into several requests,
    sent concurrently (so the server's dynamic batcher can run them together), and merged.

    Args:
        url: gRPC endpoint, "host:port".
        model_name: the ensemble to call.
        timeout_s: deadline of each gRPC call.
        max_documents: longest list accepted in one `rerank` call.
        max_concurrent_requests: chunks of one call in flight at once.

    Example:
        >>> client = RerankClient("localhost:8001")
        >>> client.rerank("running shoes", ["Nike Pegasus 40", "Coffee grinder"], top_k=1)
        [{'index': 0, 'score': 3.2}]
    """

    def __init__(
        self,
        url: str = "localhost:8001",
        *,
        model_name: str = "rerank",
        timeout_s: float = 30.0,
        max_documents: int = 10_000,
        max_concurrent_requests: int = 4,
    ):
        self.url = url
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.max_documents = max_documents
        self._grpc = grpcclient.InferenceServerClient(url)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent_requests, thread_name_prefix="rerank")
        self._max_batch_size: Optional[int] = None

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: Optional[int] = None,
        return_documents: bool = False,
    ) -> list[RankedDocument]:
        """Scores every document against the query and returns them best first.

        Args:
            query: the shopper's query.
            documents: candidate product texts.
            top_k: keep only the best k (all when None).
            return_documents: include each document's text in the result.

        Returns:
            `[{"index": i, "score": s, "document"?: text}, ...]` sorted by score, descending;
            `index` points into `documents`.

        Raises:
            InvalidRequestError: bad input (before any network call) or INVALID_ARGUMENT.
            OverloadedError, ServerUnavailableError, BackendError: see polyrank.client.types.

        Example:
            >>> client.rerank("炊飯器 5合", ["象印 IH炊飯器 5.5合", "電気ケトル"], return_documents=True)
            [{'index': 0, 'score': 2.9, 'document': '象印 IH炊飯器 5.5合'}, {'index': 1, ...}]
        """
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise InvalidRequestError(f"top_k must be a positive integer or None, got {top_k!r}")
        scores = self.score(query, documents)
        order = np.argsort(-scores, kind="stable")[:top_k]
        ranked: list[RankedDocument] = []
        for index in order:
            item: RankedDocument = {"index": int(index), "score": float(scores[index])}
            if return_documents:
                item["document"] = documents[index]
            ranked.append(item)
        return ranked

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """Raw relevance scores (float32), in the order of `documents`."""
        encoded_query, encoded_documents = self._validate(query, documents)
        chunk = self.max_batch_size
        starts = range(0, len(encoded_documents), chunk)
        futures = [
            self._pool.submit(self._infer, encoded_query, encoded_documents[start : start + chunk])
            for start in starts
        ]
        return np.concatenate([future.result() for future in futures])

    @property
    def max_batch_size(self) -> int:
        """Most pairs the server accepts in one request (read once from the model config)."""
        if self._max_batch_size is None:
            try:
                config = self._grpc.get_model_config(self.model_name, as_json=True, client_timeout=self.timeout_s)
            except InferenceServerException as error:
                raise _client_error(error) from None
            self._max_batch_size = int(config["config"].get("max_batch_size", 0)) or 1
        return self._max_batch_size

    def _infer(self, query: bytes, documents: list[bytes]) -> np.ndarray:
        rows = len(documents)
        query_input = grpcclient.InferInput("QUERY", [rows, 1], "BYTES")
        query_input.set_data_from_numpy(np.full((rows, 1), query, dtype=object))
        documents_input = grpcclient.InferInput("DOCUMENTS", [rows, 1], "BYTES")
        documents_input.set_data_from_numpy(np.array(documents, dtype=object).reshape(rows, 1))
        try:
            result = self._grpc.infer(
                self.model_name,
                [query_input, documents_input],
                outputs=[grpcclient.InferRequestedOutput("SCORES")],
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as error:
            raise _client_error(error) from None
        scores = result.as_numpy("SCORES")
        if scores is None or scores.size != rows:
            raise RerankError(f"server returned {0 if scores is None else scores.size} scores for {rows} documents")
        return scores.reshape(-1).astype(np.float32, copy=False)

    def _validate(self, query: str, documents: Sequence[str]) -> tuple[bytes, list[bytes]]:
        if not isinstance(query, str):
            raise InvalidRequestError(f"query must be a string, got {type(query).__name__}")
        if not query.strip():
            raise InvalidRequestError("query is empty or only whitespace")
        if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
            raise InvalidRequestError(f"documents must be a list of strings, got {type(documents).__name__}")
        if not documents:
            raise InvalidRequestError("documents is empty; send at least one product")
        if len(documents) > self.max_documents:
            raise InvalidRequestError(
                f"documents has {len(documents)} items, more than max_documents={self.max_documents}"
            )
        encoded = []
        for index, document in enumerate(documents):
            if not isinstance(document, str):
                raise InvalidRequestError(f"documents[{index}] must be a string, got {type(document).__name__}")
            if not document.strip():
                raise InvalidRequestError(f"documents[{index}] is empty or only whitespace")
            encoded.append(_utf8(document, f"documents[{index}]"))
        return _utf8(query, "query"), encoded

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._grpc.close()

    def __enter__(self) -> "RerankClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _utf8(text: str, field: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidRequestError(f"{field} is not valid Unicode ({error.reason} at position {error.start})") from None


def _client_error(error: InferenceServerException) -> RerankError:
    message = (error.message() or str(error)).strip().splitlines()[0]
    return error_for_status(error.status(), message)
