"""RerankClient: send a query and its candidate products to the `rerank` ensemble over gRPC."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, Sequence, TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from polyrank.client.endpoints import Endpoints
from polyrank.client.types import (
    PRIORITIES,
    CallLimits,
    DeadlineExceededError,
    InvalidRequestError,
    OverloadedError,
    RankedDocument,
    RerankError,
    ServerUnavailableError,
    classify,
    retry_after_s,
)
from polyrank.model_repository.text_rule import text_problem

T = TypeVar("T")


class RerankClient:
    """Reranks products for a query through a polyrank Triton server.

    Lists longer than the server model's max batch size are split into several requests,
    sent concurrently (so the server's dynamic batcher can run them together), and merged.

    Args:
        url: gRPC endpoint, "host:port"; or several (a list, or one string separated by commas),
            the replicas of one deployment: calls go round robin to those in rotation, and one
            that answers UNAVAILABLE is taken out, its call sent on to the next, and health-
            checked before it gets calls again (endpoints.py). Only UNAVAILABLE and a model
            that is loading or stopping are retried, answers Triton gives before it runs a
            request; a call that may have been scored (deadline passed, internal error) is not.
        model_name: the ensemble to call.
        timeout_s: deadline of each gRPC call.
        max_documents: longest list accepted in one `rerank` call.
        max_concurrent_requests: chunks of one call in flight at once.
        retry_deadline_s: how long a request that meets UNAVAILABLE (server restarting or
            unreachable) is retried, with exponential backoff from `backoff_s` capped at
            `max_backoff_s`; then ServerUnavailableError. Scoring is idempotent, so a retry
            never double-counts. 0 turns retries off.
        tls_ca: PEM CA certificate to verify a TLS server with (TLS is on when given).
        tls_cert, tls_key: PEM client certificate and key, for a server that requires
            mutual TLS.
        deadline_s: default deadline of each call (None: only timeout_s). It travels to Triton
            as the request's timeout, so a request still queued when it passes is dropped
            unscored, and the call raises DeadlineExceededError. Retries stay within it.
        priority: default priority, "interactive" or "batch" (batch requests wait behind every
            interactive one in the scorer's queue: catalogue re-scoring, evaluations).

    Example:
        >>> client = RerankClient("localhost:8001")
        >>> client.rerank("running shoes", ["Nike Pegasus 40", "Coffee grinder"], top_k=1)
        [{'index': 0, 'score': 3.2}]
    """

    def __init__(
        self,
        url: str | Sequence[str] = "localhost:8001",
        *,
        model_name: str = "rerank",
        timeout_s: float = 30.0,
        max_documents: int = 10_000,
        max_concurrent_requests: int = 4,
        retry_deadline_s: float = 30.0,
        backoff_s: float = 0.1,
        max_backoff_s: float = 2.0,
        tls_ca: Optional[str] = None,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        deadline_s: Optional[float] = None,
        priority: str = "interactive",
    ):
        _call_options(deadline_s, priority)  # checked now, not at the first call
        self.deadline_s, self.priority = deadline_s, priority
        if retry_deadline_s < 0 or backoff_s <= 0 or max_backoff_s < backoff_s:
            raise ValueError(
                f"need retry_deadline_s >= 0 and 0 < backoff_s <= max_backoff_s, got "
                f"{retry_deadline_s}, {backoff_s}, {max_backoff_s}"
            )
        self.retry_deadline_s, self.backoff_s, self.max_backoff_s = retry_deadline_s, backoff_s, max_backoff_s
        urls = [u.strip() for u in url.split(",")] if isinstance(url, str) else list(url)
        self.url = ",".join(urls)
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.max_documents = max_documents
        tls = _tls_options(tls_ca, tls_cert, tls_key)
        self.endpoints = Endpoints(urls, lambda one: grpcclient.InferenceServerClient(one, **tls))
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent_requests, thread_name_prefix="rerank")
        self._batch_sizes: dict[str, int] = {}  # model -> max_batch_size, read once each

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: Optional[int] = None,
        return_documents: bool = False,
        *,
        deadline_s: Optional[float] = None,
        priority: Optional[str] = None,
    ) -> list[RankedDocument]:
        """Scores every document against the query and returns them best first.

        Args:
            query: the shopper's query.
            documents: candidate product texts.
            top_k: keep only the best k (all when None).
            return_documents: include each document's text in the result.
            deadline_s, priority: this call's, instead of the client's defaults.

        Returns:
            `[{"index": i, "score": s, "document"?: text}, ...]` sorted by score, descending;
            `index` points into `documents`.

        Raises:
            InvalidRequestError: bad input (before any network call) or INVALID_ARGUMENT.
            DeadlineExceededError, OverloadedError, ServerUnavailableError, BackendError: see
                polyrank.client.types.

        Example:
            >>> client.rerank("炊飯器 5合", ["象印 IH炊飯器 5.5合", "電気ケトル"], return_documents=True)
            [{'index': 0, 'score': 2.9, 'document': '象印 IH炊飯器 5.5合'}, {'index': 1, ...}]
        """
        _check_top_k(top_k)
        scores = self.score(query, documents, deadline_s=deadline_s, priority=priority)
        return _best_first(scores, top_k, documents if return_documents else None)

    def rerank_many(
        self,
        lists: Sequence[tuple[str, Sequence[str]]],
        top_k: Optional[int] = None,
        return_documents: bool = False,
        *,
        deadline_s: Optional[float] = None,
        priority: Optional[str] = None,
    ) -> list[list[RankedDocument]]:
        """`rerank` for several (query, documents) lists at once: their pairs share requests
        (each row carries its own query), so ten lists of 20 products take one round trip.

        Example:
            >>> client.rerank_many([("running shoes", ["Nike Pegasus 40", "Coffee grinder"]),
            ...                     ("炊飯器", ["象印 IH炊飯器", "電気ケトル"])], top_k=1)
            [[{'index': 0, 'score': 3.2}], [{'index': 0, 'score': 2.9}]]
        """
        _check_top_k(top_k)
        all_scores = self.score_many(lists, deadline_s=deadline_s, priority=priority)
        return [
            _best_first(scores, top_k, documents if return_documents else None)
            for (_, documents), scores in zip(lists, all_scores)
        ]

    def score_many(
        self, lists: Sequence[tuple[str, Sequence[str]]], *, deadline_s: Optional[float] = None, priority: Optional[str] = None
    ) -> list[np.ndarray]:
        """Raw scores of several (query, documents) lists, each in the order of its documents."""
        call = self._call(deadline_s, priority)
        if isinstance(lists, (str, bytes)) or not isinstance(lists, Sequence) or not lists:
            raise InvalidRequestError("lists must be a non-empty list of (query, documents) pairs")
        queries, rows = [], []
        for number, item in enumerate(lists):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise InvalidRequestError(f"lists[{number}] must be a (query, documents) pair")
            try:
                query, documents = self._validate(*item)
            except InvalidRequestError as error:
                raise InvalidRequestError(f"lists[{number}]: {error}") from None
            queries += [query] * len(documents)
            rows += documents
        if len(rows) > self.max_documents:
            raise InvalidRequestError(f"lists hold {len(rows)} documents, more than max_documents={self.max_documents}")
        flat = self._in_chunks(
            lambda pairs: self._score_pairs(call, *zip(*pairs)), list(zip(queries, rows)), self._batch_size_of(self.model_name)
        )
        return np.split(flat, np.cumsum([len(documents) for _, documents in lists])[:-1])

    def score(
        self, query: str, documents: Sequence[str], *, deadline_s: Optional[float] = None, priority: Optional[str] = None
    ) -> np.ndarray:
        """Raw relevance scores (float32), in the order of `documents`."""
        call = self._call(deadline_s, priority)
        encoded_query, encoded_documents = self._validate(query, documents)
        return self._in_chunks(
            lambda rows: self._score_pairs(call, [encoded_query] * len(rows), rows), encoded_documents, self._batch_size_of(self.model_name)
        )

    def embed(self, texts: Sequence[str], model_name: Optional[str] = None) -> np.ndarray:
        """Product embeddings from a two-tower student's embed model, to store ahead of time.

        Args:
            texts: product texts.
            model_name: the embed model (default: `<model_name>_embed`).

        Returns:
            float32 array [len(texts), dim], each row L2-normalised.

        Example:
            >>> client = RerankClient("localhost:8001", model_name="two_tower")
            >>> catalogue = client.embed(["Nike Pegasus 40", "Coffee grinder"])
            >>> client.rerank_embeddings("running shoes", catalogue, top_k=1)
            [{'index': 0, 'score': 7.1}]
        """
        model = model_name or f"{self.model_name}_embed"
        call = self._call()
        encoded = self._validate_texts(texts, "texts")
        return self._in_chunks(lambda rows: self._infer_embeddings(call, model, rows), encoded, self._batch_size_of(model))

    def rerank_embeddings(
        self, query: str, embeddings: np.ndarray, top_k: Optional[int] = None
    ) -> list[RankedDocument]:
        """Like `rerank`, against product embeddings from `embed` (two-tower students only):
        only the query is encoded on the server."""
        _check_top_k(top_k)
        try:
            embeddings = np.asarray(embeddings, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise InvalidRequestError(f"embeddings must be a [documents, dim] array of numbers: {error}") from None
        if embeddings.ndim != 2 or not len(embeddings):
            raise InvalidRequestError(f"embeddings must be a non-empty [documents, dim] array, got shape {list(embeddings.shape)}")
        if len(embeddings) > self.max_documents:
            raise InvalidRequestError(
                f"embeddings has {len(embeddings)} rows, more than max_documents={self.max_documents}"
            )
        if not np.isfinite(embeddings).all():
            raise InvalidRequestError("embeddings holds NaN or infinite values")
        encoded_query = self._validate_query(query)
        call = self._call()
        scores = self._in_chunks(
            lambda rows: self._score_embeddings(call, encoded_query, rows), embeddings, self._batch_size_of(self.model_name)
        )
        return _best_first(scores, top_k)

    def _in_chunks(self, run: Callable[[Sequence], np.ndarray], rows: Sequence, chunk: int) -> np.ndarray:
        """run() on consecutive chunks of at most `chunk` rows (the model's max_batch_size), in
        flight at once on the pool; the results joined in row order."""
        futures = [self._pool.submit(run, rows[start : start + chunk]) for start in range(0, len(rows), chunk)]
        return np.concatenate([future.result() for future in futures])

    def _batch_size_of(self, model: str) -> int:
        """Most rows the model accepts in one request: asked of the server once per model (with
        retries, like any call), then remembered."""
        if model not in self._batch_sizes:
            config = self._with_retries(
                lambda grpc, timeout: grpc.get_model_config(model, as_json=True, client_timeout=timeout), CallLimits()
            )
            self._batch_sizes[model] = int(config["config"].get("max_batch_size", 0)) or 1
        return self._batch_sizes[model]

    def _call(self, deadline_s: Optional[float] = None, priority: Optional[str] = None) -> CallLimits:
        """A call's options, from now: its own deadline and priority, or the client's defaults."""
        return _call_options(self.deadline_s if deadline_s is None else deadline_s, priority or self.priority)

    def _with_retries(self, send: Callable[[Any, float], T], call: CallLimits) -> T:
        """Runs `send(grpc_client, timeout)` on the next replica; while replicas answer
        UNAVAILABLE (down, starting or stopping) tries the next one at once, and when none is
        left in rotation waits with capped exponential backoff, for `retry_deadline_s` at most
        and never past the call's deadline (so a call ends within retry_deadline_s + timeout_s,
        or by its deadline). Every other error is raised at once."""
        give_up = time.monotonic() + self.retry_deadline_s
        if call.deadline is not None:
            give_up = min(give_up, call.deadline)
        delay, attempts = self.backoff_s, 0
        while True:
            remaining = call.remaining_s()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceededError(f"the call's deadline passed after {attempts} attempts, before the server answered")
            attempts += 1
            replica = self.endpoints.pick()
            try:
                result = send(replica.grpc, self.timeout_s if remaining is None else min(self.timeout_s, remaining))
            except InferenceServerException as error:
                kind, retryable = classify(error.status(), error.message(), deadline_given=call.deadline is not None)
                if not retryable:
                    raise _client_error(kind, error) from None
                self.endpoints.unavailable(replica)
                left = give_up - time.monotonic()
                if left <= 0:
                    where = f" on {len(self.endpoints.replicas)} replicas" if len(self.endpoints.replicas) > 1 else ""
                    raise ServerUnavailableError(
                        f"{_first_line(error)} (gave up after {attempts} attempts{where} over {self.retry_deadline_s:g} s)"
                    ) from None
                if not self.endpoints.in_rotation():
                    time.sleep(min(delay, left))  # then try again: scoring is idempotent
                    delay = min(2 * delay, self.max_backoff_s)
                continue
            self.endpoints.answered(replica)
            return result

    def _infer_embeddings(self, call: CallLimits, model: str, texts: list[bytes]) -> np.ndarray:
        texts_input = grpcclient.InferInput("TEXTS", [len(texts), 1], "BYTES")
        texts_input.set_data_from_numpy(np.array(texts, dtype=object).reshape(-1, 1))
        result = self._with_retries(
            lambda grpc, timeout: grpc.infer(
                model, [texts_input], outputs=[grpcclient.InferRequestedOutput("EMBEDDINGS")],
                **call.infer_options(timeout),
            ),
            call,
        )
        embeddings = result.as_numpy("EMBEDDINGS")
        if embeddings is None or len(embeddings) != len(texts):
            raise RerankError(f"server returned {0 if embeddings is None else len(embeddings)} embeddings for {len(texts)} texts")
        return embeddings.astype(np.float32, copy=False)

    def _score_pairs(self, call: CallLimits, queries: Sequence[bytes], documents: Sequence[bytes]) -> np.ndarray:
        texts = grpcclient.InferInput("DOCUMENTS", [len(documents), 1], "BYTES")
        texts.set_data_from_numpy(np.array(documents, dtype=object).reshape(-1, 1))
        return self._infer_scores(call, queries, texts, len(documents))

    def _score_embeddings(self, call: CallLimits, query: bytes, embeddings: np.ndarray) -> np.ndarray:
        vectors = grpcclient.InferInput("DOCUMENT_EMBEDDINGS", list(embeddings.shape), "FP32")
        vectors.set_data_from_numpy(np.ascontiguousarray(embeddings))
        return self._infer_scores(call, [query] * len(embeddings), vectors, len(embeddings))

    def _infer_scores(self, call: CallLimits, queries: Sequence[bytes], documents: grpcclient.InferInput, rows: int) -> np.ndarray:
        """SCORES for `rows` products (as texts or embeddings), row i against queries[i]."""
        query_input = grpcclient.InferInput("QUERY", [rows, 1], "BYTES")
        query_input.set_data_from_numpy(np.array(queries, dtype=object).reshape(-1, 1))
        result = self._with_retries(
            lambda grpc, timeout: grpc.infer(
                self.model_name,
                [query_input, documents],
                outputs=[grpcclient.InferRequestedOutput("SCORES")],
                **call.infer_options(timeout),
            ),
            call,
        )
        scores = result.as_numpy("SCORES")
        if scores is None or scores.size != rows:
            raise RerankError(f"server returned {0 if scores is None else scores.size} scores for {rows} documents")
        return scores.reshape(-1).astype(np.float32, copy=False)

    def _validate(self, query: str, documents: Sequence[str]) -> tuple[bytes, list[bytes]]:
        return self._validate_query(query), self._validate_texts(documents, "documents")

    @staticmethod
    def _validate_query(query: str) -> bytes:
        if not isinstance(query, str):
            raise InvalidRequestError(f"query must be a string, got {type(query).__name__}")
        return checked_utf8(query, "query")

    def _validate_texts(self, texts: Sequence[str], field: str) -> list[bytes]:
        if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
            raise InvalidRequestError(f"{field} must be a list of strings, got {type(texts).__name__}")
        if not texts:
            raise InvalidRequestError(f"{field} is empty; send at least one product")
        if len(texts) > self.max_documents:
            raise InvalidRequestError(f"{field} has {len(texts)} items, more than max_documents={self.max_documents}")
        encoded = []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidRequestError(f"{field}[{index}] must be a string, got {type(text).__name__}")
            encoded.append(checked_utf8(text, f"{field}[{index}]"))
        return encoded

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.endpoints.close()

    def __enter__(self) -> "RerankClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def checked_utf8(text: str, field: str) -> bytes:
    """The text as UTF-8, checked by the same rule the server applies (InvalidRequestError
    naming `field` otherwise). The HTTP gateway checks its texts with it too."""
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidRequestError(f"{field} is not valid Unicode ({error.reason} at position {error.start})") from None
    problem = text_problem(text, len(encoded))
    if problem:
        raise InvalidRequestError(f"{field} {problem}")
    return encoded


def _best_first(scores: np.ndarray, top_k: Optional[int], documents: Optional[Sequence[str]] = None) -> list[RankedDocument]:
    """The top_k (all when None) indices and scores, best first, ties in input order; with
    `documents`, each result carries its text."""
    ranked = [{"index": int(i), "score": float(scores[i])} for i in np.argsort(-scores, kind="stable")[:top_k]]
    if documents is not None:
        for item in ranked:
            item["document"] = documents[item["index"]]
    return ranked


def _call_options(deadline_s: Optional[float], priority: str) -> CallLimits:
    if deadline_s is not None and (isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float)) or not deadline_s > 0):
        raise InvalidRequestError(f"deadline_s must be a positive number of seconds or None, got {deadline_s!r}")
    if priority not in PRIORITIES:
        raise InvalidRequestError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    return CallLimits(None if deadline_s is None else time.monotonic() + deadline_s, PRIORITIES[priority])


def _check_top_k(top_k) -> None:
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise InvalidRequestError(f"top_k must be a positive integer or None, got {top_k!r}")


def _tls_options(ca: Optional[str], cert: Optional[str], key: Optional[str]) -> dict:
    if ca is None:
        if cert is not None or key is not None:
            raise ValueError("a client certificate needs tls_ca (the CA that signed the server's certificate)")
        return {}
    if (cert is None) != (key is None):
        raise ValueError("mutual TLS needs both tls_cert and tls_key")
    return {"ssl": True, "root_certificates": ca, "certificate_chain": cert, "private_key": key}


def _first_line(error: InferenceServerException) -> str:
    return (error.message() or str(error)).strip().splitlines()[0]


def _client_error(kind: type, error: InferenceServerException) -> RerankError:
    if kind is OverloadedError:
        message = _first_line(error)
        return OverloadedError(f"server at capacity, request rejected: {message}", retry_after_s(message))
    return kind(_first_line(error))
