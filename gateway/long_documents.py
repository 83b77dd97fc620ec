"""Products longer than the model's window: cut them to a number of tokens, or split them into
overlapping windows that are scored one by one (the best window's score is the product's).

Both need the pipeline's own tokenizer, which the gateway reads from the model repository
(`--repository`); Triton only ever sees the resulting texts, so its answers stay the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from tokenizers import Tokenizer

from polyrank.model_repository.pair_encoding import PairEncoder

DEFAULT_OVERLAP_TOKENS = 32
DEFAULT_MAX_WINDOWS = 10  # per product, as Cohere's max_chunks_per_doc


class DocumentWindows:
    """A pipeline's tokenizer and window (max_length tokens for query and product together)."""

    def __init__(self, tokenizer: Tokenizer, max_length: int):
        self.encoder = PairEncoder(tokenizer, max_length, pad_id=0)
        self.tokenizer = self.encoder.tokenizer

    @classmethod
    def from_repository(cls, repository: Path, tokenizer_model: str, max_length: int) -> "DocumentWindows":
        path = Path(repository) / tokenizer_model / "1" / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer at {path}")
        return cls(Tokenizer.from_file(str(path)), max_length)

    def room(self, query: str) -> int:
        """Tokens left for the product next to this query (the server truncates to this)."""
        query_tokens = min(len(self.tokenizer.encode(query, add_special_tokens=False).ids), self.encoder.max_query_tokens)
        return self.encoder.max_length - self.encoder.special_tokens - query_tokens

    def cut(self, texts: Sequence[str], tokens: int, keep_end: bool = False) -> list[str]:
        """Each text cut to its first (or, keep_end, last) `tokens` tokens."""
        cut = []
        for text, encoding in zip(texts, self.tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            offsets = encoding.offsets
            if len(offsets) <= tokens:
                cut.append(text)
            elif keep_end:
                cut.append(text[offsets[-tokens][0] :])
            else:
                cut.append(text[: offsets[tokens - 1][1]])
        return cut

    def split(self, texts: Sequence[str], window: int, overlap: int, max_windows: int) -> list[list[str]]:
        """Each text as windows of `window` tokens, each starting `window - overlap` tokens after
        the previous, at most max_windows of them (a short text is its own one window)."""
        stride = max(1, window - min(overlap, window // 2))
        split = []
        for text, encoding in zip(texts, self.tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            offsets = encoding.offsets
            if len(offsets) <= window:
                split.append([text])
                continue
            starts = range(0, max(1, len(offsets) - overlap), stride)[:max_windows]
            split.append([text[offsets[s][0] : offsets[min(s + window, len(offsets)) - 1][1]] for s in starts])
        return split


class WindowsCatalogue:
    """DocumentWindows per pipeline, loaded on first use from the repository (None: no
    repository given, so requests that need a tokenizer are refused with a clear message)."""

    def __init__(self, repository: Optional[Path]):
        self.repository = repository
        self._loaded: dict[str, DocumentWindows] = {}

    def get(self, tokenizer_model: str, max_length: int) -> DocumentWindows:
        if tokenizer_model not in self._loaded:
            self._loaded[tokenizer_model] = DocumentWindows.from_repository(self.repository, tokenizer_model, max_length)
        return self._loaded[tokenizer_model]
