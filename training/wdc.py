"""WDC product-matching pairs (../shared/data/wdc) as training pairs and rerank evaluation sets.

A line is `COL title VAL <offer A>` TAB `COL title VAL <offer B>` TAB `0|1`. For reranking,
offer A is the query and the offers B paired with it are its candidates.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Iterator

from polyrank.training.similar_titles import word_overlap_index

PREFIX = "COL title VAL"


def read_pairs(path: Path) -> Iterator[tuple[str, str, float]]:
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3:
                raise ValueError(f"{path}:{number}: expected 3 tab-separated fields, got {len(fields)}")
            left, right, label = fields
            yield _title(left), _title(right), float(label)


def _title(field: str) -> str:
    text = field[len(PREFIX):] if field.startswith(PREFIX) else field
    return " ".join(text.replace('"', " ").split())


def write_training_jsonl(source: Path, output: Path) -> int:
    """{"query", "document", "label"} lines; returns how many."""
    count = 0
    with open(output, "w", encoding="utf-8") as stream:
        for query, document, label in read_pairs(source):
            stream.write(json.dumps({"query": query, "document": document, "label": label}, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_rerank_jsonl(
    source: Path,
    output: Path,
    min_candidates: int = 5,
    limit: int | None = None,
    list_size: int | None = None,
    pool_files: Iterable[Path] = (),
    seed: int = 0,
) -> int:
    """{"query", "documents", "labels"} lines for queries with at least `min_candidates`
    candidates and both a match and a non-match; returns how many.

    With `list_size`, each list is topped up to that many candidates, as a first-stage
    retriever would hand them over: half the titles of `pool_files` sharing the most words
    with the query (hard candidates), half random ones; they are labelled 0 (not a match).
    """
    groups: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for query, document, label in read_pairs(source):
        groups[query].append((document, label))
    pool = sorted({title for path in pool_files for pair in read_pairs(path) for title in pair[:2]})
    if list_size is not None and len(pool) < list_size:
        raise ValueError(f"topping lists up to {list_size} candidates needs a pool of titles at least that big, got {len(pool)}")
    similar = word_overlap_index(pool) if list_size else None
    rng = random.Random(seed)
    count = 0
    with open(output, "w", encoding="utf-8") as stream:
        for query, candidates in groups.items():
            labels = [label for _, label in candidates]
            if len(candidates) < min_candidates or not 0 < sum(labels) < len(labels):
                continue
            documents = [d for d, _ in candidates]
            if list_size is not None and len(documents) < list_size:
                added = _top_up(query, documents, list_size, similar, pool, rng)
                documents, labels = documents + added, labels + [0.0] * len(added)
            record = {"query": query, "documents": documents, "labels": labels}
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
            if limit is not None and count >= limit:
                break
    return count


def _top_up(query: str, documents: list[str], size: int, similar, pool: list[str], rng: random.Random) -> list[str]:
    taken = set(documents) | {query}
    added = []
    hard_wanted = (size - len(documents)) // 2
    for title in similar(query, hard_wanted + len(taken)):
        if len(added) >= hard_wanted:
            break
        if title not in taken:
            added.append(title)
            taken.add(title)
    while len(documents) + len(added) < size:
        title = rng.choice(pool)
        if title not in taken:
            added.append(title)
            taken.add(title)
    return added
