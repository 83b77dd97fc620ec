"""A fixed-seed multilingual rerank workload: queries of 2-8 words, 100 product texts each.

Product lengths follow a long-tailed distribution (most 8-60 tokens, a few up to ~256),
built from per-language product vocabulary (export/samples.py) so that every script
(Latin, Cyrillic, CJK, Arabic) is tokenized as real text would be.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from polyrank.export.samples import LANGUAGES, WORDS, join_words, synthetic_product


@dataclass(frozen=True)
class RerankRequest:
    language: str
    query: str
    products: tuple[str, ...]


def make_workload(queries: int = 40, candidates: int = 100, seed: int = 0) -> list[RerankRequest]:
    rng = random.Random(seed)
    requests = []
    for number in range(queries):
        language = LANGUAGES[number % len(LANGUAGES)]
        query = join_words(language, rng.sample(WORDS[language], rng.randint(2, 8)))
        products = [synthetic_product(language, rng) for _ in range(candidates)]
        requests.append(RerankRequest(language, query, tuple(products)))
    return requests
