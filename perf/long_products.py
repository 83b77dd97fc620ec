"""What scoring long products by their best window (long_documents="chunks") changes, against
truncating them at the model's window, on ProMap's long product descriptions.

Data: ../shared/data/promap/promapen-test_data.csv. Each query is a product's name (`name1`);
its candidates are the ProMap products paired with it (text: name, then long description),
graded match 1.0 / close_nonmatch 0.1 / medium_nonmatch 0, plus 20 other ProMap products as
distractors (gain 0, fixed seed). Queries with a "match" candidate only. Model: the MiniLM
cross-encoder fine-tuned on WDC product matching (perf/trained_teacher.py), fp32, max length
256, served by the embedded Triton behind the HTTP API (`/v2/rerank`).

    .venv/bin/python perf/long_products.py [--distractors 20]

Writes perf/results/long_products.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyrank.export.assets import cache_dir_from  # noqa: E402
from polyrank.export.build_repository import build_repository_unless_current  # noqa: E402
from polyrank.export.config import ExportConfig  # noqa: E402
from polyrank.gateway.app import GatewaySettings  # noqa: E402
from polyrank.gateway.long_documents import DocumentWindows  # noqa: E402
from polyrank.gateway.server import GatewayServer, Listener  # noqa: E402

from perf.run_facts import run_facts  # noqa: E402
from perf.trained_teacher import trained_minilm  # noqa: E402
from polyrank.ranking import mrr_at_k, ndcg_at_k  # noqa: E402
from polyrank.server import EmbeddedTritonServer, ServerConfig  # noqa: E402

PROMAP = ROOT.parent / "shared" / "data" / "promap" / "promapen-test_data.csv"
GAINS = {"match": 1.0, "close_nonmatch": 0.1, "medium_nonmatch": 0.0}
MAX_LENGTH = 256


def promap_lists(distractors: int, seed: int = 0) -> list[dict]:
    rows = list(csv.DictReader(open(PROMAP, encoding="utf-8")))
    text = lambda row: f"{row['name2']}. {row['long_description2']}".strip()  # noqa: E731
    by_query = defaultdict(list)
    for row in rows:
        by_query[row["name1"]].append((text(row), GAINS[row["match_type"]]))
    all_products = sorted({text(row) for row in rows})
    rng = random.Random(seed)
    lists = []
    for query, candidates in sorted(by_query.items()):
        if not any(gain == 1.0 for _, gain in candidates):
            continue
        own = {t for t, _ in candidates}
        others = rng.sample([p for p in all_products if p not in own], distractors)
        lists.append({"query": query, "documents": [t for t, _ in candidates] + others,
                      "gains": [g for _, g in candidates] + [0.0] * distractors})
    return lists


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distractors", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench-long")
    args = parser.parse_args()
    if not PROMAP.exists():
        raise SystemExit(f"{PROMAP} is absent: this measurement needs ProMap in ../shared/data")

    model, _ = trained_minilm(cache_dir_from(os.environ))
    repository = build_repository_unless_current(ExportConfig(model=str(model), output=args.workdir / "repository", max_length=MAX_LENGTH))
    lists = promap_lists(args.distractors)
    windows = DocumentWindows.from_repository(repository, "tokenizer", MAX_LENGTH)
    rooms = [windows.room(item["query"]) for item in lists]
    lengths = [len(e.ids) for item in lists for e in windows.tokenizer.encode_batch(item["documents"], add_special_tokens=False)]
    room_per_product = [room for item, room in zip(lists, rooms) for _ in item["documents"]]
    longer = float(np.mean([length > room for length, room in zip(lengths, room_per_product)]))
    pieces = sum(len(w) for item, room in zip(lists, rooms) for w in windows.split(item["documents"], room, 32, 10))

    results = {}
    server = EmbeddedTritonServer(ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0))
    with server, GatewayServer(GatewaySettings(triton_url=server.grpc_url, repository=repository), Listener(port=0)) as api:
        session = requests.Session()
        for policy in ("truncate", "chunks"):
            ndcgs, mrrs, started = [], [], time.perf_counter()
            for item in lists:
                body = {"model": "rerank", "query": item["query"], "documents": item["documents"], "long_documents": policy}
                answer = session.post(f"{api.url}/v2/rerank", json=body, timeout=600)
                answer.raise_for_status()
                scores = np.zeros(len(item["documents"]))
                for result in answer.json()["results"]:
                    scores[result["index"]] = result["relevance_score"]
                gains = np.array(item["gains"])
                ndcgs.append(ndcg_at_k(gains, scores))
                mrrs.append(mrr_at_k((gains == 1.0).astype(float), scores))
            wall = time.perf_counter() - started
            products = sum(len(item["documents"]) for item in lists)
            results[policy] = {"ndcg_at_10": round(float(np.mean(ndcgs)), 4), "mrr_at_10": round(float(np.mean(mrrs)), 4),
                               "products_per_s": round(products / wall, 1)}
            print(policy, results[policy], flush=True)

    result = {
        "benchmark": 'long products: long_documents="chunks" (best of overlapping windows) vs "truncate"',
        **run_facts(),
        "model": f"all-MiniLM-L6-v2 cross-encoder fine-tuned on WDC (perf/trained_teacher.py), fp32, max length {MAX_LENGTH}",
        "data": f"ProMap EN test: {len(lists)} queries (product names) with a match, their ProMap candidates "
                f"(name + long description; match 1.0 / close 0.1 / medium 0) + {args.distractors} distractors each",
        "products_longer_than_the_window": round(longer, 3),
        "median_product_tokens": int(np.median(lengths)),
        "windows_per_product_with_chunks": round(pieces / len(lengths), 2),
        "results": results,
        "chunks_vs_truncate": {
            "ndcg_at_10_change": round(results["chunks"]["ndcg_at_10"] - results["truncate"]["ndcg_at_10"], 4),
            "mrr_at_10_change": round(results["chunks"]["mrr_at_10"] - results["truncate"]["mrr_at_10"], 4),
            "speed_ratio": round(results["chunks"]["products_per_s"] / results["truncate"]["products_per_s"], 2),
        },
    }
    out = ROOT / "perf" / "results" / "long_products.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["chunks_vs_truncate"], indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
