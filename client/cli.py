"""`polyrank rerank`: rerank products read from a file or stdin."""

from __future__ import annotations

import argparse
import json
import sys
import time

from polyrank.client.client import RerankClient
from polyrank.client.types import InvalidRequestError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--query", required=True, help="the search query")
    parser.add_argument("--documents", required=True, help="file with one product per line, or - for stdin")
    parser.add_argument("--url", default="localhost:8001",
                        help="gRPC endpoint, or several replicas separated by commas (default localhost:8001)")
    parser.add_argument("--model-name", default="rerank", help="ensemble to call (default rerank)")
    parser.add_argument("--top-k", type=int, default=None, help="print only the best k")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per gRPC call (default 30)")
    parser.add_argument("--retry-deadline", type=float, default=5.0,
                        help="seconds to keep retrying while the server is unavailable (default 5; 0: no retries)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds the call may take in all; still queued then, it is dropped unscored")
    parser.add_argument("--priority", choices=("interactive", "batch"), default="interactive",
                        help="batch waits behind every interactive request (default interactive)")
    parser.add_argument("--tls-ca", help="PEM CA certificate: talk TLS to a server it signed")
    parser.add_argument("--tls-cert", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-key", help="PEM client key (mutual TLS)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    documents = read_documents(args.documents)
    with RerankClient(
        args.url, model_name=args.model_name, timeout_s=args.timeout, retry_deadline_s=args.retry_deadline,
        tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key, deadline_s=args.deadline, priority=args.priority,
    ) as client:
        started = time.perf_counter()
        ranked = client.rerank(args.query, documents, top_k=args.top_k, return_documents=True)
        elapsed_ms = (time.perf_counter() - started) * 1000
    if args.json:
        print(json.dumps(ranked, ensure_ascii=False))
    else:
        print(format_ranking(args.query, ranked))
        print(f"{len(documents)} products reranked in {elapsed_ms:.1f} ms")
    return 0


def read_documents(source: str) -> list[str]:
    """One product per line; blank lines are skipped."""
    try:
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as stream:
                text = stream.read()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidRequestError(f"cannot read documents from {source}: {error}") from None
    documents = [line.strip() for line in text.splitlines() if line.strip()]
    if not documents:
        raise InvalidRequestError(f"no documents in {source}: expected one product per line")
    return documents


def format_ranking(query: str, ranked: list) -> str:
    lines = [f"query: {query}"]
    for rank, item in enumerate(ranked, start=1):
        lines.append(f"{rank:>4}. {item['score']:+.4f}  [{item['index']}] {item.get('document', '')}")
    return "\n".join(lines)
