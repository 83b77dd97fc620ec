"""`polyrank gateway`: the HTTP API in front of any Triton serving a polyrank repository."""

from __future__ import annotations

import argparse
from pathlib import Path

API_OPTIONS_HELP = "the HTTP API (Cohere /v1/rerank, /v2/rerank; TEI /rerank)"


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    """What the API does, shared by `gateway` and `serve --api-port`."""
    parser.add_argument("--default-model", default="rerank", help="pipeline for requests that name none (default rerank)")
    parser.add_argument("--long-documents", choices=("truncate", "chunks"), default="truncate",
                        help="products longer than the window, when a request does not say: score the first "
                             "window (truncate, default) or the best of overlapping windows (chunks)")
    parser.add_argument("--max-documents", type=int, default=10_000, help="most products in one call")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="default deadline of a rerank request (a request's polyrank-deadline-ms header sets "
                             "its own); work still queued when it passes is dropped, the answer is 504")


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--triton-url", required=True, help="Triton's gRPC endpoint, host:port")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--repository", type=Path,
                        help="the model repository Triton serves (local copy): its tokenizers, for "
                             "long_documents=chunks, max_tokens_per_doc and truncating from the left")
    parser.add_argument("--models", help="comma-separated pipelines to offer (default: every ready one in "
                                         "Triton's index; needed when model control locks the index)")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="deadline of each call to Triton")
    parser.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    parser.add_argument("--tls-ca", help="PEM CA: mutual TLS, clients need a certificate it signed")
    parser.add_argument("--triton-tls-ca", help="PEM CA that signed Triton's gRPC certificate (TLS to Triton)")
    parser.add_argument("--triton-tls-cert", help="PEM client certificate for a Triton that requires mutual TLS")
    parser.add_argument("--triton-tls-key", help="PEM key of --triton-tls-cert")
    add_api_arguments(parser)


def api_settings(args: argparse.Namespace) -> dict:
    """The GatewaySettings fields that add_api_arguments reads, for `gateway` and `serve`."""
    return {
        "default_model": args.default_model,
        "long_documents": args.long_documents,
        "max_documents": args.max_documents,
        "deadline_s": args.deadline_s,
    }


def run_gateway(args: argparse.Namespace) -> int:
    from polyrank.gateway.app import GatewaySettings
    from polyrank.gateway.server import GatewayServer, Listener

    settings = GatewaySettings(
        triton_url=args.triton_url,
        repository=args.repository,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else None,
        timeout_s=args.timeout_s,
        tls_ca=args.triton_tls_ca,
        tls_cert=args.triton_tls_cert,
        tls_key=args.triton_tls_key,
        **api_settings(args),
    )
    api = GatewayServer(settings, Listener(host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca))
    print(f"HTTP API {api.url} -> Triton {args.triton_url} (Ctrl-C to stop)", flush=True)
    api.run()
    return 0
