"""gRPC client for the polyrank `rerank` pipeline."""

from polyrank.client.client import RerankClient
from polyrank.client.endpoints import replicas_of
from polyrank.client.types import (
    BackendError,
    DeadlineExceededError,
    InvalidRequestError,
    OverloadedError,
    RankedDocument,
    RerankError,
    ServerUnavailableError,
)

__all__ = [
    "RerankClient",
    "replicas_of",
    "RankedDocument",
    "RerankError",
    "InvalidRequestError",
    "OverloadedError",
    "DeadlineExceededError",
    "ServerUnavailableError",
    "BackendError",
]
