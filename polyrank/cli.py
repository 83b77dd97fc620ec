"""The `polyrank` command: export, serve, rerank, train, distill, evaluate, demo, build-shaped-model.

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="polyrank", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    export_cli.add_export_arguments(commands.add_parser("export", help="checkpoint -> Triton model repository"))
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
    rerank_cli.add_arguments(commands.add_parser("rerank", help="rerank products through a running server"))
    demo = commands.add_parser("demo", help="export, serve and rerank multilingual sample queries")
    demo.add_argument("--model", default=None, help="checkpoint (default: mmBERT-small-shaped, random weights)")
    demo.add_argument("--workdir", type=Path, default=Path("build/demo"))
    train = commands.add_parser("train", help="fine-tune a cross-encoder on JSONL pairs")
    train.add_argument("--base", required=True, help="local pretrained encoder (or cross-encoder) directory")
    train.add_argument("--train", required=True, type=Path, help='JSONL {"query", "document", "label" in [0, 1]}')
    train.add_argument("--output", required=True, type=Path)
    train.add_argument("--epochs", type=int, default=1)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--learning-rate", type=float, default=5e-5)
    train.add_argument("--max-length", type=int, default=128)
    train.add_argument("--seed", type=int, default=0)
    _add_distill_arguments(commands.add_parser("distill", help="distil a student from a cross-encoder teacher"))
    evaluate = commands.add_parser("evaluate", help="NDCG@10, MRR@10, MAP, Pearson, Spearman on labelled lists")
    evaluate.add_argument("--model", required=True, help="cross-encoder or two-tower checkpoint directory")
    evaluate.add_argument("--data", required=True, type=Path, help='JSONL {"query", "documents", "labels"}')
    evaluate.add_argument("--max-length", type=int, default=256)
    evaluate.add_argument("--dim", type=int, help="two-tower: score with the first DIM components (e.g. the reduced size)")
    export_cli.add_shaped_model_arguments(
        commands.add_parser("build-shaped-model", help="write the mmBERT-small-shaped random-weight checkpoint")
    )

    args = parser.parse_args(argv)
    # polyrank logs its own progress lines; Hugging Face's per-file progress bars only clutter them.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from polyrank.export.assets import cache_dir_from

    cache_dir = cache_dir_from(os.environ)
    try:
        if args.command == "export":
            return export_cli.run_export(args)
        if args.command == "serve":
            admin_key = os.environ.get("POLYRANK_ADMIN_KEY") if args.model_control else None
            if args.model_control and not admin_key:
                raise ValueError("--model-control needs the admin key in POLYRANK_ADMIN_KEY (16 characters or more)")
            return _serve(args, admin_key)
        if args.command == "rerank":
            return rerank_cli.run(args)
        if args.command == "train":
            from polyrank.training.train import TrainConfig, train_cross_encoder

            train_cross_encoder(
                TrainConfig(
                    base=args.base, train=args.train, output=args.output, epochs=args.epochs,
                    batch_size=args.batch_size, learning_rate=args.learning_rate,
                    max_length=args.max_length, seed=args.seed,
                ),
                log=lambda line: print(line, flush=True),
            )
            return 0
        if args.command == "distill":
            return _distill(args)
        if args.command == "evaluate":
            import json

            from polyrank.evaluate import evaluate_model

            print(json.dumps(evaluate_model(args.model, args.data, args.max_length, args.dim), indent=2))
            return 0
        if args.command == "demo":
            from polyrank.demo import run_demo

            return run_demo(args.model, args.workdir, cache_dir)
        return export_cli.run_build_shaped_model(args, cache_dir)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # one line for the user; the traceback helps nobody here
        if os.environ.get("POLYRANK_DEBUG"):
            raise
        message = str(error).strip() or type(error).__name__
        print(f"polyrank {args.command}: error: {message}", file=sys.stderr)
        return 1


def _add_distill_arguments(parser: argparse.ArgumentParser) -> None:
    from polyrank.training.distill import STUDENTS
    from polyrank.training.losses import LISTWISE_LOSSES

    parser.add_argument("--teacher", required=True, help="cross-encoder checkpoint directory")
    parser.add_argument("--student", required=True, choices=STUDENTS)
    parser.add_argument("--data", required=True, type=Path, help='unlabeled lists, JSONL {"query", "documents"}')
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--layers", type=int, help="teacher layers to keep (shallow: required; two-tower: all)")
    parser.add_argument("--layer-choice", choices=("spread", "bottom"), default="spread",
                        help="which teacher layers: evenly spaced, first and last kept (default), or the first K")
    parser.add_argument("--dim", type=int, default=128, help="two-tower embedding size (default 128)")
    parser.add_argument("--reduced-dim", type=int, help="two-tower: also train the first N components alone")
    parser.add_argument("--separate-towers", action="store_true", help="two-tower: query and product weights apart")
    parser.add_argument("--loss", choices=LISTWISE_LOSSES, default="lambdaloss", help="listwise loss (default lambdaloss)")
    parser.add_argument("--temperature", type=float, default=1.0, help="teacher-score temperature (default 1)")
    parser.add_argument("--distill-weight", type=float, default=1.0, help="weight of the pointwise score loss")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lists-per-batch", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)


def _distill(args: argparse.Namespace) -> int:
    from polyrank.training.distill import DistillConfig, distill

    settings = {k: v for k, v in vars(args).items() if k != "command"}
    distill(DistillConfig(**settings), log=lambda line: print(line, flush=True))
    return 0


def _serve(args: argparse.Namespace, admin_key: str | None) -> int:
    from polyrank.server import EmbeddedTritonServer, ServerConfig, supervise

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
    )
    # SIGTERM ends the wait like Ctrl-C does, so the server is always stopped. SIGINT is set
    # too: a process started in the background by a non-interactive shell inherits it ignored.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server = EmbeddedTritonServer(config)
    try:
        server.start()
        print(f"serving {args.repository} (pid {server.pid})")
        print(f"  gRPC     {server.grpc_url}" + (" (TLS)" if args.tls_cert else ""))
        print(f"  metrics  {server.metrics_url}")
        print("Ctrl-C to stop", flush=True)
        supervise(server, stop=lambda: False, log=lambda line: print(line, flush=True))
        return 0
    except KeyboardInterrupt:
        print("stopping")
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
