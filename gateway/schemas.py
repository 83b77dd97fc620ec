"""The request bodies the HTTP API accepts: Cohere v1 and v2, text-embeddings-inference (TEI),
and polyrank's own batch of several lists.

Numbers and booleans must be JSON numbers and booleans (`"top_n": true` or `"3"` is refused,
not read as 1 or 3). Fields other clients send and polyrank has no use for are ignored (Cohere's SDK sends some as
null), so a client written for either API works unchanged. The README's field table says what
polyrank does with each field.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
)

LongDocuments = Literal["truncate", "chunks"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    long_documents: Optional[LongDocuments] = Field(
        None, description='"truncate" (score the first window) or "chunks" (score every window, keep the best)'
    )
    priority: Optional[StrictInt] = Field(None, ge=0, description="as Cohere's: 0 (default) interactive, 1 or more batch work")


class CohereV2Request(_Request):
    model: str
    query: str
    documents: list[str] = Field(min_length=1)
    top_n: Optional[StrictInt] = Field(None, ge=1)
    return_documents: Optional[StrictBool] = None
    max_tokens_per_doc: Optional[StrictInt] = Field(None, ge=1)


class CohereV1Request(_Request):
    model: Optional[str] = None
    query: str
    documents: list[Union[str, dict[str, Any]]] = Field(min_length=1)
    top_n: Optional[StrictInt] = Field(None, ge=1)
    return_documents: Optional[StrictBool] = None
    rank_fields: Optional[list[str]] = Field(None, min_length=1)
    max_chunks_per_doc: Optional[StrictInt] = Field(None, ge=1)


class TeiRequest(_Request):
    model: Optional[str] = None  # not in TEI (one model per server): polyrank's default pipeline
    query: str
    texts: list[str] = Field(min_length=1)
    raw_scores: StrictBool = False
    return_text: StrictBool = False
    truncate: Optional[StrictBool] = None
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"

    @field_validator("truncation_direction")
    @classmethod
    def _capitalised(cls, value: str) -> str:
        return value.capitalize()


class RerankList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: str
    documents: list[str] = Field(min_length=1)
    top_n: Optional[StrictInt] = Field(None, ge=1)


class BatchRequest(_Request):
    model: Optional[str] = None
    requests: list[RerankList] = Field(min_length=1)
    return_documents: Optional[StrictBool] = None
