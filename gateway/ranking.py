"""What every route does with its lists: check the texts, apply the long-product policy, score
all pairs in one call to Triton, and rank."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from polyrank.client.client import checked_utf8
from polyrank.client.types import CallLimits, InvalidRequestError
from polyrank.gateway.backend import Pipeline, TritonBackend
from polyrank.gateway.errors import ApiError
from polyrank.gateway.long_documents import (
    DEFAULT_MAX_WINDOWS,
    DEFAULT_OVERLAP_TOKENS,
    DocumentWindows,
    WindowsCatalogue,
)


@dataclass(frozen=True)
class TextList:
    """One query and its products, as sent; `field` names the products in error messages."""

    query: str
    documents: Sequence[str]
    field: str = "documents"


@dataclass(frozen=True)
class LengthPolicy:
    """What to do with products longer than the window.

    Attributes:
        long_documents: "truncate" (the server keeps the first window) or "chunks".
        max_tokens: cut every product to this many tokens first (Cohere's max_tokens_per_doc).
        keep_end: truncate from the left, keeping the end (TEI's truncation_direction "Left").
        max_windows: chunks: windows scored per product at most.
    """

    long_documents: str = "truncate"
    max_tokens: Optional[int] = None
    keep_end: bool = False
    max_windows: int = DEFAULT_MAX_WINDOWS


class Ranker:
    """Scores lists of products through a TritonBackend."""

    def __init__(self, backend: TritonBackend, repository: Optional[Path], max_documents: int, overlap_tokens: int = DEFAULT_OVERLAP_TOKENS):
        self.backend = backend
        self.windows = WindowsCatalogue(repository)
        self.max_documents = max_documents
        self.overlap_tokens = overlap_tokens

    async def scores(self, model: str, lists: Sequence[TextList], policy: LengthPolicy, limits: CallLimits = CallLimits()) -> list[np.ndarray]:
        """The raw score (logit) of every product of every list, in their order; all pairs go to
        Triton at once, so several lists share one round trip."""
        pipeline = await self.backend.pipeline(model)
        total = sum(len(item.documents) for item in lists)
        if total > self.max_documents:
            raise ApiError(400, "invalid_request", f"{total} documents in one call, more than the {self.max_documents} allowed")
        queries = [_checked(item.query, "query") for item in lists]
        documents = [[_checked(text, f"{item.field}[{i}]") for i, text in enumerate(item.documents)] for item in lists]
        windows = await self._windows_if_needed(pipeline, policy)
        if windows is None:  # one text per product, as sent
            pieces = [[[d] for d in encoded] for encoded in documents]
        else:
            pieces = await asyncio.to_thread(self._prepare, lists, policy, windows)
        pair_queries, pair_texts, owners, product = [], [], [], 0
        for query, products in zip(queries, pieces):
            for texts in products:
                pair_queries += [query] * len(texts)
                pair_texts += texts
                owners += [product] * len(texts)
                product += 1
        flat = await self.backend.score(pipeline, pair_queries, pair_texts, limits)
        best = np.full(product, -np.inf, dtype=np.float32)
        np.maximum.at(best, owners, flat)  # a product's score: its best window's
        return np.split(best, np.cumsum([len(item.documents) for item in lists])[:-1])

    def _prepare(self, lists: Sequence[TextList], policy: LengthPolicy, windows: DocumentWindows) -> list[list[list[bytes]]]:
        """Per list, per product: the UTF-8 texts to score (the product cut, or its windows)."""
        prepared = []
        for item in lists:
            documents = list(item.documents)
            room = windows.room(item.query)
            if policy.max_tokens is not None:
                documents = windows.cut(documents, policy.max_tokens, policy.keep_end)
            if policy.long_documents == "chunks":
                products = windows.split(documents, room, self.overlap_tokens, policy.max_windows)
            else:
                if policy.keep_end:
                    documents = windows.cut(documents, room, keep_end=True)
                products = [[d] for d in documents]
            prepared.append([[text.encode() for text in texts] for texts in products])  # valid: cut from checked texts
        return prepared

    async def _windows_if_needed(self, pipeline: Pipeline, policy: LengthPolicy) -> Optional[DocumentWindows]:
        """The pipeline's tokenizer when the policy needs one, or a 400 saying why there is none.
        max_tokens_per_doc at or above the window needs nothing: the server truncates there."""
        max_length = pipeline.max_length
        wanted = [
            name
            for name, needed in (
                ('long_documents="chunks"', policy.long_documents == "chunks"),
                (f"max_tokens_per_doc={policy.max_tokens}", policy.max_tokens is not None and (max_length is None or policy.max_tokens < max_length)),
                ('truncation_direction="Left"', policy.keep_end),
            )
            if needed
        ]
        if not wanted:
            return None
        if max_length is None:
            raise ApiError(400, "invalid_request", f"{wanted[0]} works with cross-encoder pipelines; {pipeline.name!r} is a two-tower model")
        if self.windows.repository is None:
            raise ApiError(400, "invalid_request", f"{wanted[0]} needs the model's tokenizer: start the gateway with --repository")
        try:
            return await asyncio.to_thread(self.windows.get, pipeline.tokenizer_model, max_length)
        except OSError as error:
            raise ApiError(400, "invalid_request", f"{wanted[0]}: cannot read the tokenizer of {pipeline.name!r}: {error}") from None


def relevance(logits: np.ndarray) -> np.ndarray:
    """Scores in [0, 1], as Cohere's relevance_score: the sigmoid of the model's logit."""
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def best_first(scores: np.ndarray, top_n: Optional[int]) -> list[int]:
    """Indices of the top_n (all when None) highest scores; ties keep the input order."""
    return [int(i) for i in np.argsort(-scores, kind="stable")[:top_n]]


def _checked(text: str, field: str) -> bytes:
    """The text as UTF-8, by the client's one text check; its refusal as a 400."""
    try:
        return checked_utf8(text, field)
    except InvalidRequestError as error:
        raise ApiError(400, "invalid_request", str(error)) from None
