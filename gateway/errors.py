"""The one error type of the HTTP API: a status, a kind for metrics and clients, one line."""

from __future__ import annotations

from typing import Optional


class ApiError(Exception):
    """An HTTP error answer.

    Args:
        status: HTTP status (400/422 bad input, 404 unknown model, 429 overloaded, 503 unavailable).
        kind: short machine-readable kind ("invalid_request", "model_not_found", "overloaded", ...).
        message: one line for a person, naming the field or the cause.
        retry_after_s: sent as Retry-After (429 and 503).
    """

    def __init__(self, status: int, kind: str, message: str, retry_after_s: Optional[int] = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.retry_after_s = status, kind, message, retry_after_s
