"""Unlabeled (query, product list) data for distillation, drawn from ../shared/data.

Queries are WDC offer titles (offer A of a pair) and ProMap product names (name1); each
list holds the products they were paired with (WDC offer B, ProMap name2) topped up with
the titles of the pool that share the most words with the query (hard candidates, like a
first-stage retriever's; random titles would all be easy negatives the teacher scores
alike, so they teach a student nothing). Labels are dropped: the teacher supplies the
targets. Titles of a held-out evaluation set are left out so the students never see them.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from polyrank.training.similar_titles import word_overlap_index
from polyrank.training.wdc import read_pairs


def promap_pairs(path: Path) -> Iterable[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as stream:
        for row in csv.DictReader(stream):
            left, right = " ".join(row["name1"].split()), " ".join(row["name2"].split())
            if left and right:
                yield left, right


def write_unlabeled_lists(
    output: Path,
    wdc_files: Iterable[Path],
    promap_files: Iterable[Path] = (),
    held_out: Iterable[str] = (),
    list_size: int = 8,
    max_lists: int | None = None,
    seed: int = 0,
) -> dict:
    """Writes {"query", "documents"} lines (at most `max_lists`, a random sample); returns counts
    {"lists", "pairs", "wdc_files", "promap_files"}."""
    excluded = set(held_out)
    groups: dict[str, list[str]] = defaultdict(list)
    wdc_files, promap_files = list(wdc_files), list(promap_files)
    for path in wdc_files:
        for query, document, _ in read_pairs(path):
            groups[query].append(document)
    for path in promap_files:
        for query, document in promap_pairs(path):
            groups[query].append(document)
    pool = sorted({t for q, docs in groups.items() for t in (q, *docs)} - excluded)
    rng = random.Random(seed)
    similar = word_overlap_index(pool)
    queries = [q for q in sorted(groups) if q not in excluded]
    if max_lists is not None and len(queries) > max_lists:
        queries = rng.sample(queries, max_lists)  # random order: any prefix is a random subset
    lists = pairs = 0
    with open(output, "w", encoding="utf-8") as stream:
        for query in queries:
            documents = list(dict.fromkeys(d for d in groups[query] if d not in excluded and d != query))
            for candidate in similar(query, list_size * 2):
                if len(documents) >= list_size:
                    break
                if candidate != query and candidate not in documents:
                    documents.append(candidate)
            while len(documents) < list_size:
                filler = rng.choice(pool)
                if filler != query and filler not in documents:
                    documents.append(filler)
            documents = documents[:list_size]
            rng.shuffle(documents)
            stream.write(json.dumps({"query": query, "documents": documents}, ensure_ascii=False) + "\n")
            lists, pairs = lists + 1, pairs + len(documents)
    return {"lists": lists, "pairs": pairs, "wdc_files": len(wdc_files), "promap_files": len(promap_files)}
