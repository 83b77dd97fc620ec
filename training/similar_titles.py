"""Titles that share the most words with a query: the hard candidates a first-stage
retriever would return (used to fill distillation lists and evaluation lists)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


def word_overlap_index(titles: list[str], max_document_frequency: int = 200):
    """A function (query, k) -> the k titles sharing the most words with the query (words in
    more than `max_document_frequency` titles are too common to tell products apart)."""
    index: dict[str, list[int]] = defaultdict(list)
    for number, title in enumerate(titles):
        for word in _words(title):
            index[word].append(number)

    def similar(query: str, k: int) -> list[str]:
        shared = Counter()
        for word in sorted(_words(query)):  # a fixed order: most_common breaks ties by insertion
            postings = index.get(word, ())
            if len(postings) <= max_document_frequency:
                shared.update(postings)
        return [titles[number] for number, _ in shared.most_common(k)]

    return similar
