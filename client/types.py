"""What the client returns and raises, and the one rule that classifies a Triton error.

Triton's answers map onto polyrank's errors: INVALID_ARGUMENT / NOT_FOUND -> invalid request;
a full scorer queue (which Triton 2.51 reports as UNAVAILABLE "Exceeds maximum queue size"),
a request admission control turned away (UNAVAILABLE "admission control: ... retry after N s")
and RESOURCE_EXHAUSTED -> overloaded; a request that waited out its time in a queue ("Request
timeout expired") -> deadline exceeded when the call gave a deadline (the server dropped it
unscored), overloaded when it met the server's own queue timeout; DEADLINE_EXCEEDED (the gRPC
deadline) -> deadline exceeded; UNAVAILABLE and a model that is loading, unloading or whose
process died -> server unavailable; anything else -> backend error.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Optional, TypedDict

# Triton priorities: 0 is the model's default level (1: interactive); batch work waits behind
# every interactive request in the tokenizer's and scorer's queues (two priority levels).
PRIORITIES = {"interactive": 0, "batch": 2}


@dataclass(frozen=True)
class CallLimits:
    """One call's deadline (a time.monotonic() value, or None) and Triton priority: what the
    gRPC client and the HTTP gateway tell Triton about a request."""

    deadline: Optional[float] = None
    priority: int = 0

    def remaining_s(self) -> Optional[float]:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def infer_options(self, timeout_s: float) -> dict:
        """tritonclient `infer` keywords for one attempt of `timeout_s` seconds: its gRPC deadline,
        the priority and, with a deadline, Triton's timeout (µs), after which Triton drops the
        request from its queues. Batch priority also travels as a request parameter, the only
        way the tokenizer's admission control (a Python model) can tell it from interactive."""
        options = {"client_timeout": timeout_s, "priority": self.priority}
        if self.deadline is not None:
            options["timeout"] = max(1, int(timeout_s * 1e6))
        if self.priority == PRIORITIES["batch"]:
            options["parameters"] = {"polyrank_priority": "batch"}
        return options


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
    """The server is at capacity and rejected the request (RESOURCE_EXHAUSTED), unscored.

    Attributes:
        retry_after_s: when admission control rejected it, the seconds after which the server
            expects to admit it (its queued work will have drained); None otherwise.
    """

    def __init__(self, message: str, retry_after_s: Optional[float] = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServerUnavailableError(RerankError):
    """The server cannot be reached (UNAVAILABLE), or is loading or restarting the model."""


class DeadlineExceededError(RerankError):
    """The call's deadline passed before the answer came: in the server's queue (where the
    request is then dropped without being scored) or on the way (DEADLINE_EXCEEDED)."""


class BackendError(RerankError):
    """The server failed while serving a valid request (INTERNAL and other codes)."""


_BY_STATUS = {
    "StatusCode.INVALID_ARGUMENT": InvalidRequestError,
    "StatusCode.NOT_FOUND": InvalidRequestError,
    "StatusCode.RESOURCE_EXHAUSTED": OverloadedError,
    "StatusCode.UNAVAILABLE": ServerUnavailableError,
    "StatusCode.DEADLINE_EXCEEDED": DeadlineExceededError,
}
# A full scorer queue, or admission control's refusal (model_repository/admission.py): Triton
# says UNAVAILABLE, but retrying at once would only add load.
ADMISSION_MESSAGE = "admission control:"
OVERLOAD_MESSAGES = ("Exceeds maximum queue size", ADMISSION_MESSAGE)
_RETRY_AFTER = re.compile(r"retry after ([0-9]+(?:\.[0-9]+)?) s")
# A request that waited in a queue longer than its timeout (the call's deadline, or the
# model's default queue timeout when the call gave none).
QUEUE_TIMEOUT_MESSAGE = "Request timeout expired"
# While Triton starts or stops, a known model answers with one of these instead of UNAVAILABLE;
# "is not healthy": a model's Python process died (polyrank serve restarts the server).
TRANSIENT_MESSAGES = ("has no available versions", "is not ready", "is not healthy")


def retry_after_s(message: str) -> Optional[float]:
    """The seconds admission control asked the caller to wait before retrying, if it said."""
    found = _RETRY_AFTER.search(message or "")
    return float(found.group(1)) if found else None


def classify(status: str | None, message: str, deadline_given: bool = False) -> tuple[type[RerankError], bool]:
    """(the error type for a Triton error, whether a retry may succeed) from its gRPC status
    string (e.g. 'StatusCode.UNAVAILABLE') and message. Only an unavailable server is worth
    a retry: scoring is idempotent, and an overloaded one would only get more load."""
    message = message or ""
    if QUEUE_TIMEOUT_MESSAGE in message:
        return (DeadlineExceededError if deadline_given else OverloadedError), False
    if any(m in message for m in OVERLOAD_MESSAGES):
        return OverloadedError, False
    if any(m in message for m in TRANSIENT_MESSAGES):
        return ServerUnavailableError, True
    kind = _BY_STATUS.get(status or "", BackendError)
    return kind, status == "StatusCode.UNAVAILABLE"
