"""gRPC client for the polyrank `rerank` pipeline."""

from polyrank.client.client import RerankClient
from polyrank.client.types import (
    BackendError,
    InvalidRequestError,
    OverloadedError,
    RankedDocument,
    RerankError,
    ServerUnavailableError,
)

__all__ = [
    "RerankClient",
    "RankedDocument",
    "RerankError",
    "InvalidRequestError",
    "OverloadedError",
    "ServerUnavailableError",
    "BackendError",
]
