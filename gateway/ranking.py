"""What every route does with its lists: check the texts, apply the long-product policy, score
all pairs in one call to Triton, and rank."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from polyrank.gateway.backend import Limits, Pipeline, TritonBackend
from polyrank.gateway.errors import ApiError
from polyrank.gateway.long_documents import (
    DEFAULT_MAX_WINDOWS,
    DEFAULT_OVERLAP_TOKENS,
    DocumentWindows,
    WindowsCatalogue,
)
from polyrank.model_repository.text_rule import text_problem


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

    async def scores(self, model: str, lists: Sequence[TextList], policy: LengthPolicy, limits: Limits = Limits()) -> list[np.ndarray]:
        """The raw score (logit) of every product of every list, in their order; all pairs go to
        Triton at once, so several lists share one round trip."""
        pipeline = await self.backend.pipeline(model)
        total = sum(len(item.documents) for item in lists)
        if total > self.max_documents:
            raise ApiError(400, "invalid_request", f"{total} documents in one call, more than the {self.max_documents} allowed")
        for item in lists:
            _check_text(item.query, "query")
            for index, text in enumerate(item.documents):
                _check_text(text, f"{item.field}[{index}]")
        windows = await self._windows_if_needed(pipeline, policy)
        queries, texts, owners = [], [], []
        prepared = await asyncio.to_thread(self._prepare, lists, policy, windows)
        for list_number, (item, pieces) in enumerate(zip(lists, prepared)):
            for document_number, windows_of_one in enumerate(pieces):
                queries += [item.query.encode()] * len(windows_of_one)
                texts += [w.encode() for w in windows_of_one]
                owners += [(list_number, document_number)] * len(windows_of_one)
        flat = await self.backend.score(pipeline, queries, texts, limits)
        best = [np.full(len(item.documents), -np.inf, dtype=np.float32) for item in lists]
        for (list_number, document_number), score in zip(owners, flat):
            best[list_number][document_number] = max(best[list_number][document_number], score)
        return best

    def _prepare(self, lists: Sequence[TextList], policy: LengthPolicy, windows: Optional[DocumentWindows]) -> list[list[list[str]]]:
        """Per list, per product: the texts to score (one, or its windows)."""
        prepared = []
        for item in lists:
            documents = list(item.documents)
            if windows is None:
                prepared.append([[d] for d in documents])
                continue
            room = windows.room(item.query)
            if policy.max_tokens is not None:
                documents = windows.cut(documents, policy.max_tokens, policy.keep_end)
            if policy.long_documents == "chunks":
                prepared.append(windows.split(documents, room, self.overlap_tokens, policy.max_windows))
            else:
                if policy.keep_end:
                    documents = windows.cut(documents, room, keep_end=True)
                prepared.append([[d] for d in documents])
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


def _check_text(text: str, field: str) -> None:
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as error:  # JSON can carry a lone surrogate ("\ud800")
        raise ApiError(400, "invalid_request", f"{field} is not valid Unicode ({error.reason} at position {error.start})") from None
    problem = text_problem(text, len(encoded))
    if problem:
        raise ApiError(400, "invalid_request", f"{field} {problem}")
