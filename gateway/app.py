"""The HTTP routes: Cohere's /v1/rerank and /v2/rerank, TEI's /rerank, polyrank's
/v1/rerank/batch, /health, /v1/models and Prometheus /metrics.

Scores: Cohere's `relevance_score` and TEI's `score` are the sigmoid of the model's logit, in
[0, 1] and in the same order as the logits; TEI's `raw_scores: true` returns the logits (what
the gRPC client returns). Errors: JSON with one line naming the field or the cause: Cohere
routes `{"message", "error_type"}`, TEI's route `{"error", "error_type"}`.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from polyrank.client.types import PRIORITIES, CallLimits
from polyrank.gateway.backend import TritonBackend
from polyrank.gateway.errors import ApiError
from polyrank.gateway.ranking import (
    LengthPolicy,
    Ranker,
    TextList,
    best_first,
    relevance,
)
from polyrank.gateway.schemas import (
    BatchRequest,
    CohereV1Request,
    CohereV2Request,
    TeiRequest,
)

log = logging.getLogger("polyrank.gateway")
TEI_ROUTE = "/rerank"
DEADLINE_HEADER = "polyrank-deadline-ms"


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """How the HTTP API serves.

    Attributes:
        triton_url: Triton's gRPC endpoint.
        default_model: the pipeline for requests that name none (TEI, Cohere v1 without model).
        repository: the model repository Triton serves, for the tokenizers that long-product
            handling needs (chunks, max_tokens_per_doc, truncating from the left).
        models: the pipelines to offer; by default every ready one in Triton's index.
        long_documents: default for requests that do not say: "truncate" or "chunks".
        max_documents: most products in one call.
        timeout_s: longest wait for Triton on any request.
        deadline_s: default deadline of a rerank request (None: timeout_s only); a request's
            `polyrank-deadline-ms` header sets its own. It travels to Triton as the request's
            timeout, so work still queued when it passes is dropped unscored (504).
        tls_ca, tls_cert, tls_key: PEM files for a Triton that speaks TLS.
    """

    triton_url: str
    default_model: str = "rerank"
    repository: Optional[Path] = None
    models: Optional[tuple[str, ...]] = None
    long_documents: str = "truncate"
    max_documents: int = 10_000
    timeout_s: float = 30.0
    deadline_s: Optional[float] = None
    tls_ca: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None

    def __post_init__(self):
        if self.long_documents not in ("truncate", "chunks"):
            raise ValueError(f'long_documents must be "truncate" or "chunks", got {self.long_documents!r}')
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise ValueError(f"deadline_s must be positive, got {self.deadline_s}")
        if self.max_documents < 1 or self.timeout_s <= 0:
            raise ValueError(f"max_documents and timeout_s must be positive, got {self.max_documents}, {self.timeout_s}")
        if (self.tls_cert is None) != (self.tls_key is None) or (self.tls_cert is not None and self.tls_ca is None):
            raise ValueError("TLS to Triton needs its CA (--triton-tls-ca), and a client certificate needs its key")


class HttpMetrics:
    """The HTTP layer's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("polyrank_http_requests", "HTTP requests answered", ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "polyrank_http_request_duration_seconds", "time from request to response", ["route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self.errors = Counter("polyrank_http_errors", "HTTP error answers by kind", ["route", "kind"], registry=self.registry)
        self.documents = Counter("polyrank_http_documents", "products scored", ["route"], registry=self.registry)
        self.in_deadline = Counter(
            "polyrank_http_documents_in_deadline", "products scored and answered within their request's deadline (goodput)",
            ["route"], registry=self.registry,
        )

    def answered(self, route: str, documents: int, limits: CallLimits) -> None:
        self.documents.labels(route).inc(documents)
        if limits.deadline is None or time.monotonic() <= limits.deadline:
            self.in_deadline.labels(route).inc(documents)


def create_app(settings: GatewaySettings) -> FastAPI:
    backend = TritonBackend(
        settings.triton_url, timeout_s=settings.timeout_s, models=settings.models,
        tls_ca=settings.tls_ca, tls_cert=settings.tls_cert, tls_key=settings.tls_key,
    )
    ranker = Ranker(backend, settings.repository, settings.max_documents)
    metrics = HttpMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await backend.start()  # the aio channel belongs to this event loop
        yield
        await backend.close()

    app = FastAPI(title="polyrank", summary="multilingual product reranking: Cohere- and TEI-compatible", lifespan=lifespan)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        request.state.started_at = time.monotonic()  # a deadline counts from arrival
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return _error_response(request, metrics, error)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError):
        return _error_response(request, metrics, ApiError(422, "invalid_request", _first_problem(error)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):  # unknown route, body not UTF-8, ...
        message = "body: not valid UTF-8 JSON" if error.detail == "There was an error parsing the body" else str(error.detail)
        kind = "invalid_request" if error.status_code < 500 else "internal_error"
        return _error_response(request, metrics, ApiError(error.status_code, kind, message))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return _error_response(request, metrics, ApiError(500, "internal_error", f"internal error: {type(error).__name__}: {error}"))

    def policy_of(body, **extra) -> LengthPolicy:
        return LengthPolicy(long_documents=body.long_documents or settings.long_documents, **extra)

    def limits_of(request: Request, body) -> CallLimits:
        """The request's deadline (its header, or the gateway's default) and priority."""
        deadline_s = settings.deadline_s
        header = request.headers.get(DEADLINE_HEADER)
        if header is not None:
            try:
                deadline_s = float(header) / 1000
            except ValueError:
                deadline_s = -1.0
            if not deadline_s > 0:
                raise ApiError(400, "invalid_request", f"{DEADLINE_HEADER} must be a positive number of milliseconds, got {header!r}")
        return CallLimits(
            deadline=None if deadline_s is None else started_at(request) + deadline_s,
            priority=PRIORITIES["batch" if body.priority else "interactive"],
        )

    @app.post("/v2/rerank")
    async def rerank_v2(body: CohereV2Request, request: Request):
        limits = limits_of(request, body)
        logits = await ranker.scores(
            body.model, [TextList(body.query, body.documents)], policy_of(body, max_tokens=body.max_tokens_per_doc), limits
        )
        metrics.answered("/v2/rerank", len(body.documents), limits)
        documents = [{"text": d} for d in body.documents] if body.return_documents else None
        return _cohere_response(logits[0], body.top_n, documents, version="2")

    @app.post("/v1/rerank")
    async def rerank_v1(body: CohereV1Request, request: Request):
        texts = [_v1_text(document, index, body.rank_fields) for index, document in enumerate(body.documents)]
        policy = policy_of(body, **({"max_windows": body.max_chunks_per_doc} if body.max_chunks_per_doc else {}))
        limits = limits_of(request, body)
        logits = await ranker.scores(body.model or settings.default_model, [TextList(body.query, texts)], policy, limits)
        metrics.answered("/v1/rerank", len(texts), limits)
        documents = [d if isinstance(d, dict) else {"text": d} for d in body.documents] if body.return_documents else None
        return _cohere_response(logits[0], body.top_n, documents, version="1")

    @app.post("/v1/rerank/batch")
    async def rerank_batch(body: BatchRequest, request: Request):
        lists = [TextList(item.query, item.documents, field=f"requests[{n}].documents") for n, item in enumerate(body.requests)]
        limits = limits_of(request, body)
        logits = await ranker.scores(body.model or settings.default_model, lists, policy_of(body), limits)
        metrics.answered("/v1/rerank/batch", sum(len(item.documents) for item in lists), limits)
        rankings = [
            _cohere_response(scores, item.top_n, [{"text": d} for d in item.documents] if body.return_documents else None, "2")
            for scores, item in zip(logits, body.requests)
        ]
        return {"id": str(uuid.uuid4()), "rankings": [{"results": r["results"]} for r in rankings], "meta": _meta("2", len(rankings))}

    @app.post(TEI_ROUTE)
    async def rerank_tei(body: TeiRequest, request: Request):
        policy = policy_of(body, keep_end=body.truncation_direction == "Left")
        lists = [TextList(body.query, body.texts, field="texts")]
        limits = limits_of(request, body)
        logits = (await ranker.scores(body.model or settings.default_model, lists, policy, limits))[0]
        metrics.answered(TEI_ROUTE, len(body.texts), limits)
        scores = logits if body.raw_scores else relevance(logits)
        return [
            {"index": i, "score": float(scores[i]), **({"text": body.texts[i]} if body.return_text else {})}
            for i in best_first(logits, None)
        ]

    @app.get("/health")
    async def health():
        if await backend.ready():
            return {"status": "ok"}
        raise ApiError(503, "unavailable", f"Triton at {settings.triton_url} is not ready", retry_after_s=1)

    @app.get("/v1/models")
    async def models():
        served = await backend.pipelines()
        return {
            "object": "list",
            "data": [
                {"id": p.name, "object": "model", "owned_by": "polyrank", "endpoints": ["rerank"], "max_tokens": p.max_length}
                for p in sorted(served.values(), key=lambda p: p.name)
            ],
        }

    @app.get("/metrics")
    async def prometheus_metrics():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def started_at(request: Request) -> float:
    return getattr(request.state, "started_at", time.monotonic())


def _cohere_response(logits, top_n: Optional[int], documents: Optional[list], version: str) -> dict:
    scores = relevance(logits)
    results = [
        {"index": i, "relevance_score": float(scores[i]), **({"document": documents[i]} if documents is not None else {})}
        for i in best_first(logits, top_n)
    ]
    return {"id": str(uuid.uuid4()), "results": results, "meta": _meta(version, 1)}


def _meta(version: str, lists: int) -> dict:
    return {"api_version": {"version": version}, "billed_units": {"search_units": lists}}


def _v1_text(document, index: int, rank_fields: Optional[list[str]]) -> str:
    """A v1 document's text: the string itself, its "text" field, or its rank_fields as
    "field: value" lines (in the order given)."""
    if isinstance(document, str):
        return document
    if rank_fields:
        lines = [f"{field}: {document[field]}" for field in rank_fields if document.get(field) is not None]
        if not lines:
            raise ApiError(400, "invalid_request", f"documents[{index}] has none of the rank_fields {rank_fields}")
        return "\n".join(lines)
    text = document.get("text")
    if not isinstance(text, str):
        raise ApiError(400, "invalid_request", f'documents[{index}] needs a "text" string (or name its fields in rank_fields)')
    return text


def _first_problem(error: RequestValidationError) -> str:
    """The first validation problem as one line naming the field, e.g. 'documents[2]: Input
    should be a valid string'."""
    problems = error.errors()
    first = problems[0]
    if first.get("type") == "json_invalid":
        return f"body: JSON decode error ({first.get('ctx', {}).get('error', 'not JSON')} at position {first['loc'][-1]})"
    location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first.get("loc", ()) if part != "body")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{location.lstrip('.') or 'body'}: {first.get('msg', 'invalid')}{more}"


def _error_response(request: Request, metrics: HttpMetrics, error: ApiError) -> JSONResponse:
    route = getattr(request.scope.get("route"), "path", request.url.path)
    metrics.errors.labels(route, error.kind).inc()
    text_key = "error" if request.url.path == TEI_ROUTE else "message"
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
    return JSONResponse({text_key: error.message, "error_type": error.kind}, status_code=error.status, headers=headers)
