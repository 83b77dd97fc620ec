"""What the client returns and raises.

Errors map onto gRPC status codes: validation -> INVALID_ARGUMENT, overload ->
RESOURCE_EXHAUSTED, server not reachable -> UNAVAILABLE / DEADLINE_EXCEEDED, anything
else from the backend -> INTERNAL.
"""

from __future__ import annotations

from typing import TypedDict


class RankedDocument(TypedDict, total=False):
    """One reranked product: its index in the caller's list, its score, and (on request) its text."""

    index: int
    score: float
    document: str


class RerankError(Exception):
    """Base class of every error the client raises."""


class InvalidRequestError(RerankError, ValueError):
    """The request is malformed (raised before any network call, or INVALID_ARGUMENT)."""


class OverloadedError(RerankError):
    """The server is at capacity and rejected the request (RESOURCE_EXHAUSTED)."""


class ServerUnavailableError(RerankError):
    """The server cannot be reached or did not answer in time (UNAVAILABLE, DEADLINE_EXCEEDED)."""


class BackendError(RerankError):
    """The server failed while serving a valid request (INTERNAL and other codes)."""


_BY_STATUS = {
    "StatusCode.INVALID_ARGUMENT": InvalidRequestError,
    "StatusCode.NOT_FOUND": InvalidRequestError,
    "StatusCode.RESOURCE_EXHAUSTED": OverloadedError,
    "StatusCode.UNAVAILABLE": ServerUnavailableError,
    "StatusCode.DEADLINE_EXCEEDED": ServerUnavailableError,
}


def error_for_status(status: str | None, message: str) -> RerankError:
    """The client error for a gRPC status string such as 'StatusCode.INVALID_ARGUMENT'."""
    return _BY_STATUS.get(status or "", BackendError)(message)
