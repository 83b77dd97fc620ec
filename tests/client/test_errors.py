"""One rule classifies Triton's errors: each message Triton 2.51 sends (as seen in this
project's end-to-end tests and README) maps to one polyrank error, and only an unavailable
server is retried."""

import pytest

from polyrank.client.types import (
    BackendError,
    DeadlineExceededError,
    InvalidRequestError,
    OverloadedError,
    ServerUnavailableError,
    classify,
)


@pytest.mark.parametrize(
    "status, message, kind, retry",
    [
        ("StatusCode.INVALID_ARGUMENT", "DOCUMENTS[0] is empty or only whitespace", InvalidRequestError, False),
        ("StatusCode.INVALID_ARGUMENT", "inference request batch-size must be <= 256 for 'rerank'", InvalidRequestError, False),
        ("StatusCode.NOT_FOUND", "Request for unknown model: 'no_such_model' is not found", InvalidRequestError, False),
        ("StatusCode.UNAVAILABLE", "Exceeds maximum queue size", OverloadedError, False),
        ("StatusCode.UNAVAILABLE", "Request timeout expired", OverloadedError, False),
        ("StatusCode.RESOURCE_EXHAUSTED", "queue is full", OverloadedError, False),
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", ServerUnavailableError, True),
        ("StatusCode.UNAVAILABLE", "This protocol is restricted, expecting header 'polyrank-admin-key'", ServerUnavailableError, True),
        ("StatusCode.INTERNAL", "Request for unknown model: 'rerank' has no available versions", ServerUnavailableError, True),
        ("StatusCode.INTERNAL", "Request for unknown model: 'rerank' is not ready", ServerUnavailableError, True),
        ("StatusCode.INTERNAL", "Stub process 'tokenizer_0_0' is not healthy.", ServerUnavailableError, True),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", DeadlineExceededError, False),
        ("StatusCode.INTERNAL", "scorer failed: out of memory", BackendError, False),
        (None, "Socket closed", BackendError, False),
    ],
)
def test_each_triton_error_has_one_kind_and_retry_rule(status, message, kind, retry):
    assert classify(status, message) == (kind, retry)


def test_a_queue_timeout_is_the_calls_deadline_when_it_gave_one():
    assert classify("StatusCode.UNAVAILABLE", "Request timeout expired", deadline_given=True) == (DeadlineExceededError, False)
    assert classify("StatusCode.UNAVAILABLE", "Exceeds maximum queue size", deadline_given=True) == (OverloadedError, False)
