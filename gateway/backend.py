"""The gateway's side of Triton: which rerank pipelines a server has, and their scores.

One asyncio gRPC channel (tritonclient.grpc.aio) serves every HTTP request. A rerank pipeline
is any ready model that takes QUERY and DOCUMENTS (BYTES) and returns SCORES: the teacher's
ensemble, a shallow student's, a two-tower student's. Lists longer than a model's
max_batch_size go as several requests at once, so Triton's dynamic batcher runs them together.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import tritonclient.grpc.aio as grpc_aio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from polyrank.client.types import (
    CallLimits,
    DeadlineExceededError,
    InvalidRequestError,
    OverloadedError,
    ServerUnavailableError,
    classify,
    retry_after_s,
)
from polyrank.gateway.errors import ApiError

PIPELINE_INPUTS = {"QUERY", "DOCUMENTS"}
MODELS_REFRESH_S = 10.0  # how long the list of served models is trusted before it is asked again
# Requests of one call in flight at once, as the gRPC client's default: enough for the dynamic
# batcher to merge them, few enough that one long list cannot fill the scorer's queue alone.
CHUNKS_IN_FLIGHT = 4


@dataclass(frozen=True)
class Pipeline:
    """A rerank pipeline Triton serves: its name, the most pairs one request may hold, and the
    tokenizer model in front of it with its window in tokens (an ensemble's first step; None for
    a two-tower model)."""

    name: str
    max_batch_size: int
    tokenizer_model: Optional[str] = None
    max_length: Optional[int] = None


class TritonBackend:
    """Scores (query, product) pairs on a Triton server that serves polyrank pipelines.

    Args:
        url: Triton's gRPC endpoint, "host:port".
        timeout_s: deadline of each call to Triton.
        tls_ca, tls_cert, tls_key: PEM files for a Triton that speaks TLS (as for RerankClient).
        models: the pipelines to offer; by default every ready one in Triton's repository index
            (which `polyrank serve --model-control` locks: then name them here).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        tls_ca: Optional[str] = None,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        models: Optional[Sequence[str]] = None,
    ):
        self.url = url
        self.timeout_s = timeout_s
        self._tls = {"ssl": True, "root_certificates": tls_ca, "certificate_chain": tls_cert, "private_key": tls_key} if tls_ca else {}
        self._named_models = tuple(models) if models else None
        self._grpc: Optional[grpc_aio.InferenceServerClient] = None
        self._pipelines: dict[str, Pipeline] = {}
        self._pipelines_read_at = -float("inf")
        self._lock: Optional[asyncio.Lock] = None

    async def start(self) -> None:
        """Opens the channel; call inside the event loop that will use it (gRPC aio binds to it)."""
        self._grpc = grpc_aio.InferenceServerClient(self.url, **self._tls)
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._grpc is not None:
            await self._grpc.close()

    async def ready(self) -> bool:
        try:
            return bool(await self._grpc.is_server_ready(client_timeout=self.timeout_s))
        except InferenceServerException:
            return False

    async def pipelines(self, refresh: bool = False) -> dict[str, Pipeline]:
        """{name: Pipeline} of the rerank pipelines ready now (asked at most every 10 s)."""
        async with self._lock:
            if refresh or time.monotonic() - self._pipelines_read_at > MODELS_REFRESH_S:
                self._pipelines = await self._read_pipelines()
                self._pipelines_read_at = time.monotonic()
            return self._pipelines

    async def pipeline(self, name: str) -> Pipeline:
        """The named pipeline; an unknown name is a 404 that lists the ones served."""
        served = await self.pipelines()
        if name not in served:
            served = await self.pipelines(refresh=True)  # loaded since we last asked?
        if name not in served:
            raise ApiError(404, "model_not_found", f"model {name!r} is not served here; served: {', '.join(sorted(served)) or 'none'}")
        return served[name]

    async def score(self, pipeline: Pipeline, queries: Sequence[bytes], documents: Sequence[bytes], limits: CallLimits = CallLimits()) -> np.ndarray:
        """Raw scores (logits) of the pairs (queries[i], documents[i]), in their order. Pairs of
        several queries may share one call: QUERY is a per-row tensor."""
        size, in_flight = pipeline.max_batch_size, asyncio.Semaphore(CHUNKS_IN_FLIGHT)

        async def chunk(start: int) -> np.ndarray:
            async with in_flight:
                return await self._score_chunk(pipeline.name, queries[start : start + size], documents[start : start + size], limits)

        return np.concatenate(await asyncio.gather(*(chunk(start) for start in range(0, len(documents), size))))

    async def _score_chunk(self, model: str, queries: Sequence[bytes], documents: Sequence[bytes], limits: CallLimits) -> np.ndarray:
        inputs = [_bytes_input("QUERY", queries), _bytes_input("DOCUMENTS", documents)]
        timeout_s, remaining = self.timeout_s, limits.remaining_s()
        if remaining is not None:
            if remaining <= 0:
                raise ApiError(504, "deadline_exceeded", "the request's deadline passed before it was sent to Triton")
            timeout_s = min(timeout_s, remaining)
        result = await self._call(
            lambda: self._grpc.infer(model, inputs, outputs=[InferRequestedOutput("SCORES")], **limits.infer_options(timeout_s)),
            deadline_given=limits.deadline is not None,
        )
        scores = result.as_numpy("SCORES")
        if scores is None or scores.size != len(documents):
            raise ApiError(502, "backend_error", f"Triton returned {0 if scores is None else scores.size} scores for {len(documents)} documents")
        return scores.reshape(-1).astype(np.float32, copy=False)

    async def _read_pipelines(self) -> dict[str, Pipeline]:
        names = self._named_models
        if names is None:
            try:
                index = await self._grpc.get_model_repository_index(as_json=True, client_timeout=self.timeout_s)
            except InferenceServerException as error:
                if "restricted" in (error.message() or ""):
                    raise ApiError(503, "unavailable", "Triton's repository index is locked (model control): start the gateway with --models") from None
                raise _api_error(error) from None
            names = [m["name"] for m in index.get("models", []) if m.get("state") == "READY"]
        found = await asyncio.gather(*(self._pipeline_or_none(name) for name in names))
        return {p.name: p for p in found if p is not None}

    async def _pipeline_or_none(self, name: str) -> Optional[Pipeline]:
        try:
            metadata = await self._grpc.get_model_metadata(name, as_json=True, client_timeout=self.timeout_s)
            inputs = {i["name"] for i in metadata.get("inputs", [])}
            outputs = {o["name"] for o in metadata.get("outputs", [])}
            if not PIPELINE_INPUTS <= inputs or "SCORES" not in outputs:
                return None
            config = await self._config(name)
            steps = config.get("ensemble_scheduling", {}).get("step", [])
            if not steps:
                return Pipeline(name, int(config.get("max_batch_size", 0)) or 1)
            tokenizer = steps[0]["model_name"]
            max_length = (await self._config(tokenizer)).get("parameters", {}).get("max_length", {}).get("string_value")
            return Pipeline(name, int(config.get("max_batch_size", 0)) or 1, tokenizer, int(max_length) if max_length else None)
        except InferenceServerException:
            return None  # unloaded meanwhile, or not ready: not offered

    async def _config(self, model: str) -> dict:
        return (await self._grpc.get_model_config(model, as_json=True, client_timeout=self.timeout_s))["config"]

    async def _call(self, call, deadline_given: bool = False):
        """Awaits one Triton call; its error becomes the HTTP error it means."""
        try:
            return await call()
        except InferenceServerException as error:
            raise _api_error(error, deadline_given) from None


def _bytes_input(name: str, values: Sequence[bytes]) -> InferInput:
    tensor = InferInput(name, [len(values), 1], "BYTES")
    tensor.set_data_from_numpy(np.array(values, dtype=object).reshape(-1, 1))
    return tensor


def _api_error(error: InferenceServerException, deadline_given: bool = False) -> ApiError:
    """Triton's error as polyrank's HTTP error, by the client's one classification rule."""
    message = (error.message() or str(error)).strip().splitlines()[0]
    kind, _ = classify(error.status(), message, deadline_given)
    if kind is DeadlineExceededError:
        return ApiError(504, "deadline_exceeded", f"the deadline passed before Triton answered (the request is not scored): {message}")
    if kind is OverloadedError:
        # Retry-After takes whole seconds: admission control's estimate rounded up, else 1.
        wait_s = retry_after_s(message)
        return ApiError(429, "overloaded", f"server at capacity, request rejected: {message}",
                        retry_after_s=max(1, math.ceil(wait_s)) if wait_s is not None else 1)
    if kind is ServerUnavailableError:
        return ApiError(503, "unavailable", f"Triton is unavailable: {message}", retry_after_s=1)
    if kind is InvalidRequestError:
        return ApiError(400, "invalid_request", message)
    return ApiError(502, "backend_error", message)
