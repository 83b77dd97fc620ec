"""WDC product-matching pairs (../shared/data/wdc) as training pairs and rerank evaluation sets.

A line is `COL title VAL <offer A>` TAB `COL title VAL <offer B>` TAB `0|1`. For reranking,
offer A is the query and the offers B paired with it are its candidates.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Iterator

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


def write_rerank_jsonl(source: Path, output: Path, min_candidates: int = 5, limit: int | None = None) -> int:
    """{"query", "documents", "labels"} lines for queries with at least `min_candidates`
    candidates and both a match and a non-match; returns how many."""
    groups: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for query, document, label in read_pairs(source):
        groups[query].append((document, label))
    count = 0
    with open(output, "w", encoding="utf-8") as stream:
        for query, candidates in groups.items():
            labels = [label for _, label in candidates]
            if len(candidates) < min_candidates or not 0 < sum(labels) < len(labels):
                continue
            record = {"query": query, "documents": [d for d, _ in candidates], "labels": labels}
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
            if limit is not None and count >= limit:
                break
    return count
