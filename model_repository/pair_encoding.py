"""How a (query, product) pair becomes model input: the one definition of it.

Export, parity checks, the Triton tokenizer model and the tests all import this module.
It depends on `tokenizers` and numpy only (no Triton, no torch), and it is copied next
to the tokenizer model in a generated repository (with text_rule.py, the rule for a valid
text, which the light client shares) so that the repository is self-contained.

Encoding rule: the checkpoint's own pair template (mmBERT: `<bos> query <eos> product <eos>`,
BERT: `[CLS] query [SEP] product [SEP]`), truncating only the product side to `max_length`.
Unlike Hugging Face's `truncation="only_second"`, a query too long to leave room for the
product is cut to half of `max_length` instead of failing the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from tokenizers import Encoding, Tokenizer

if __package__:  # polyrank.model_repository.pair_encoding
    from .text_rule import decode_text, text_problem  # noqa: F401 (the models import them from here)
else:  # a copy next to a Triton model, text_rule.py beside it on the path
    from text_rule import decode_text, text_problem  # noqa: F401


@dataclass(frozen=True)
class PaddedBatch:
    """Right-padded model inputs for a run of pairs (int64, shape [pairs, longest])."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    @property
    def real_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def feed(self, names) -> dict[str, np.ndarray]:
        """The arrays for the named graph inputs (INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS)."""
        by_name = {
            "INPUT_IDS": self.input_ids,
            "ATTENTION_MASK": self.attention_mask,
            "TOKEN_TYPE_IDS": self.token_type_ids,
        }
        return {name: by_name[name] for name in names}


class PairEncoder:
    """Encodes (query, product) pairs with a checkpoint's tokenizer and pair template."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, pad_id: Optional[int] = None):
        self.special_tokens = tokenizer.num_special_tokens_to_add(True)
        if max_length < self.special_tokens + 2:
            raise ValueError(
                f"max_length must leave room for a query and a product token, "
                f"got {max_length} with {self.special_tokens} special tokens"
            )
        # Truncation and padding are done here, explicitly; a tokenizer.json that carries
        # its own settings must not apply them a second time.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_query_tokens = max_length // 2
        self.pad_id = _pad_token_id(tokenizer) if pad_id is None else pad_id

    @classmethod
    def from_file(
        cls, tokenizer_json: str, max_length: int, pad_id: Optional[int] = None
    ) -> "PairEncoder":
        return cls(Tokenizer.from_file(str(tokenizer_json)), max_length, pad_id)

    def encode(self, queries: Sequence[str], documents: Sequence[str]) -> list[Encoding]:
        """Encodes pairs (queries[i], documents[i]) in one batch call of the tokenizer.

        Each distinct query is tokenized once, however many products it is paired with.
        """
        if len(queries) != len(documents):
            raise ValueError(f"got {len(queries)} queries for {len(documents)} documents")
        distinct_queries = list(dict.fromkeys(queries))
        encoded = self.tokenizer.encode_batch(
            distinct_queries + list(documents), add_special_tokens=False
        )
        query_encodings = dict(zip(distinct_queries, encoded[: len(distinct_queries)]))
        for query_encoding in query_encodings.values():
            if len(query_encoding.ids) > self.max_query_tokens:
                query_encoding.truncate(self.max_query_tokens)

        pairs = []
        for query, document_encoding in zip(queries, encoded[len(distinct_queries) :]):
            query_encoding = query_encodings[query]
            room = self.max_length - self.special_tokens - len(query_encoding.ids)
            if len(document_encoding.ids) > room:
                document_encoding.truncate(room)
            pairs.append(self.tokenizer.post_process(query_encoding, document_encoding))
        return pairs

    def encode_texts(self, texts: Sequence[str]) -> list[Encoding]:
        """Encodes single texts (a two-tower model's queries or products) with the checkpoint's
        single-sequence template, e.g. `[CLS] text [SEP]`, truncated to max_length."""
        room = self.max_length - self.tokenizer.num_special_tokens_to_add(False)
        encodings = []
        for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=False):
            if len(encoding.ids) > room:
                encoding.truncate(room)
            encodings.append(self.tokenizer.post_process(encoding))
        return encodings

    def pad(self, encodings: Sequence[Encoding], buckets: Sequence[int] = ()) -> PaddedBatch:
        """Right-pads encodings to the longest of them (not to max_length), or, with `buckets`
        (ascending widths), to the narrowest bucket that holds the longest: requests padded
        alike have one shape, which is what Triton's native backends need to merge them."""
        longest = max(len(encoding.ids) for encoding in encodings)
        width = next((bucket for bucket in buckets if bucket >= longest), longest)
        shape = (len(encodings), width)
        input_ids = np.full(shape, self.pad_id, dtype=np.int64)
        attention_mask = np.zeros(shape, dtype=np.int64)
        token_type_ids = np.zeros(shape, dtype=np.int64)
        for row, encoding in enumerate(encodings):
            length = len(encoding.ids)
            input_ids[row, :length] = encoding.ids
            attention_mask[row, :length] = 1
            token_type_ids[row, :length] = encoding.type_ids
        return PaddedBatch(input_ids, attention_mask, token_type_ids)

    def encode_padded(self, queries: Sequence[str], documents: Sequence[str]) -> PaddedBatch:
        return self.pad(self.encode(queries, documents))

    def encode_texts_padded(self, texts: Sequence[str]) -> PaddedBatch:
        return self.pad(self.encode_texts(texts))


def _pad_token_id(tokenizer: Tokenizer) -> int:
    for token in ("<pad>", "[PAD]", "<|pad|>"):
        token_id: Optional[int] = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    return 0
