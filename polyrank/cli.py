"""The `polyrank` command: export, serve, gateway, rerank, train, distill, evaluate, demo, build-shaped-model.

This is the one place that reads the environment (POLYRANK_CACHE).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from polyrank.client import cli as rerank_cli
from polyrank.export import cli as export_cli
from polyrank.extras import require
from polyrank.gateway import cli as gateway_cli
from polyrank.server import ALLOCATORS
from polyrank.training import cli as training_cli


def build_parser() -> argparse.ArgumentParser:
    """The `polyrank` command and its subcommands (the Helm chart's container args are checked against it)."""
    parser = argparse.ArgumentParser(prog="polyrank", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser("export", help="checkpoint -> Triton model repository")
    export_cli.add_export_arguments(export)
    export.set_defaults(handler=lambda args, cache: export_cli.run_export(args), parts=("export",))
    serve = commands.add_parser("serve", help="run the embedded Triton server on a repository")
    serve.add_argument("--repository", required=True, type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument("--tls-cert", type=Path, help="PEM server certificate: gRPC over TLS only")
    serve.add_argument("--tls-key", type=Path, help="PEM server key")
    serve.add_argument("--tls-ca", type=Path, help="PEM CA: mutual TLS, clients need a certificate it signed")
    serve.add_argument("--model-control", action="store_true",
                       help="open the load/unload API, only to calls with the admin key header "
                            "set to $POLYRANK_ADMIN_KEY (closed by default)")
    serve.add_argument("--response-cache-mb", type=int, default=0,
                       help="answer repeated identical requests from a cache of this size (default 0: off)")
    serve.add_argument("--allocator", choices=ALLOCATORS, default="system",
                       help="memory allocator of the server's processes: system (glibc's malloc), or jemalloc / "
                            "tcmalloc from the system's package (default system)")
    serve.add_argument("--api-port", type=int, help=f"also serve {gateway_cli.API_OPTIONS_HELP} on this port")
    gateway_cli.add_api_arguments(serve)
    serve.set_defaults(handler=_serve, parts=("serve",))
    gateway = commands.add_parser("gateway", help=f"serve {gateway_cli.API_OPTIONS_HELP} in front of a Triton")
    gateway_cli.add_gateway_arguments(gateway)
    gateway.set_defaults(handler=lambda args, cache: gateway_cli.run_gateway(args), parts=("gateway",))
    rerank = commands.add_parser("rerank", help="rerank products through a running server")
    rerank_cli.add_arguments(rerank)
    rerank.set_defaults(handler=lambda args, cache: rerank_cli.run(args))
    demo = commands.add_parser("demo", help="export, serve and rerank multilingual sample queries")
    demo.add_argument("--model", default=None, help="checkpoint (default: mmBERT-small-shaped, random weights)")
    demo.add_argument("--workdir", type=Path, default=Path("build/demo"))
    demo.add_argument("--precision", default="fp32",
                      help="scorer precision, as for export (default fp32; auto: the fastest that passes the gate)")
    demo.set_defaults(handler=_demo, parts=("export", "serve"))
    train = commands.add_parser("train", help="fine-tune a cross-encoder on JSONL pairs")
    training_cli.add_train_arguments(train)
    train.set_defaults(handler=lambda args, cache: training_cli.run_train(args), parts=("export",))
    distill = commands.add_parser("distill", help="distil a student from a cross-encoder teacher")
    training_cli.add_distill_arguments(distill)
    distill.set_defaults(handler=lambda args, cache: training_cli.run_distill(args), parts=("export",))
    evaluate = commands.add_parser("evaluate", help="NDCG@10, MRR@10, MAP, Pearson, Spearman on labelled lists")
    evaluate.add_argument("--model", required=True, help="cross-encoder or two-tower checkpoint directory")
    evaluate.add_argument("--data", required=True, type=Path, help='JSONL {"query", "documents", "labels"}')
    evaluate.add_argument("--max-length", type=int, default=256)
    evaluate.add_argument("--dim", type=int, help="two-tower: score with the first DIM components (e.g. the reduced size)")
    evaluate.set_defaults(handler=_evaluate, parts=("export",))
    shaped = commands.add_parser("build-shaped-model", help="write the mmBERT-small-shaped random-weight checkpoint")
    export_cli.add_shaped_model_arguments(shaped)
    shaped.set_defaults(handler=export_cli.run_build_shaped_model, parts=("export",))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # polyrank logs its own progress lines; Hugging Face's per-file progress bars only clutter them.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from polyrank.export.assets import cache_dir_from

    try:
        require(*getattr(args, "parts", ()))
        return args.handler(args, cache_dir_from(os.environ))
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # one line for the user; the traceback helps nobody here
        if os.environ.get("POLYRANK_DEBUG"):
            raise
        message = str(error).strip() or type(error).__name__
        print(f"polyrank {args.command}: error: {message}", file=sys.stderr)
        return 1


def _evaluate(args: argparse.Namespace, cache_dir: Path) -> int:
    import json

    from polyrank.evaluate import evaluate_model

    print(json.dumps(evaluate_model(args.model, args.data, args.max_length, args.dim), indent=2))
    return 0


def _demo(args: argparse.Namespace, cache_dir: Path) -> int:
    from polyrank.demo import run_demo

    return run_demo(args.model, args.workdir, cache_dir, args.precision)


def _serve(args: argparse.Namespace, cache_dir: Path) -> int:
    from polyrank.server import EmbeddedTritonServer, ServerConfig
    from polyrank.supervisor import supervise

    admin_key = os.environ.get("POLYRANK_ADMIN_KEY") if args.model_control else None
    if args.model_control and not admin_key:
        raise ValueError("--model-control needs the admin key in POLYRANK_ADMIN_KEY (16 characters or more)")
    if args.api_port is not None:
        require("gateway")
        if args.tls_cert:
            raise ValueError("--api-port serves plain HTTP beside a TLS Triton; run `polyrank gateway` with --tls-cert and --triton-tls-ca instead")
    config = ServerConfig(
        repository=args.repository,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_ca=args.tls_ca,
        admin_key=admin_key,
        response_cache_mb=args.response_cache_mb,
        allocator=args.allocator,
    )
    # SIGTERM ends the wait like Ctrl-C does, so the server is always stopped. SIGINT is set
    # too: a process started in the background by a non-interactive shell inherits it ignored.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server, api = EmbeddedTritonServer(config), None
    try:
        server.start()
        if args.api_port is not None:
            api = _start_api(args, server.grpc_url, locked_index=admin_key is not None)
        print(f"serving {args.repository} (pid {server.pid})")
        print(f"  gRPC     {server.grpc_url}" + (" (TLS)" if args.tls_cert else ""))
        if api is not None:
            print(f"  HTTP API {api.url}  (Cohere /v1/rerank, /v2/rerank; TEI /rerank)")
        print(f"  metrics  {server.metrics_url}")
        print("Ctrl-C to stop", flush=True)
        supervise(server, stop=lambda: False, log=lambda line: print(line, flush=True))
        return 0
    except KeyboardInterrupt:
        print("stopping")
        return 0
    finally:
        if api is not None:
            api.stop()  # first: lets its requests in flight finish while Triton still runs
        server.stop()


def _start_api(args: argparse.Namespace, triton_url: str, locked_index: bool):
    from polyrank.gateway.app import GatewaySettings
    from polyrank.gateway.server import GatewayServer, Listener

    # Model control locks Triton's repository index: offer the repository's models instead.
    models = tuple(sorted(p.parent.name for p in args.repository.glob("*/config.pbtxt"))) if locked_index else None
    settings = GatewaySettings(triton_url=triton_url, repository=args.repository, models=models, **gateway_cli.api_settings(args))
    return GatewayServer(settings, Listener(host=args.host, port=args.api_port)).start()


if __name__ == "__main__":
    sys.exit(main())
