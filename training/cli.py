"""`polyrank train` and `polyrank distill`: their arguments (light: no torch until they run)."""

from __future__ import annotations

import argparse
from pathlib import Path

STUDENTS = ("shallow", "two-tower")
LISTWISE_LOSS_NAMES = ("listnet", "listmle", "approx-ndcg", "lambdaloss")  # training/losses.py defines them


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="local pretrained encoder (or cross-encoder) directory")
    parser.add_argument("--train", required=True, type=Path, help='JSONL {"query", "document", "label" in [0, 1]}')
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)


def run_train(args: argparse.Namespace) -> int:
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


def add_distill_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--loss", choices=LISTWISE_LOSS_NAMES, default="lambdaloss", help="listwise loss (default lambdaloss)")
    parser.add_argument("--temperature", type=float, default=1.0, help="teacher-score temperature (default 1)")
    parser.add_argument("--distill-weight", type=float, default=1.0, help="weight of the pointwise score loss")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lists-per-batch", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)


def run_distill(args: argparse.Namespace) -> int:
    from polyrank.training.distill import DistillConfig, distill

    settings = {k: v for k, v in vars(args).items() if k not in ("command", "handler", "parts")}
    distill(DistillConfig(**settings), log=lambda line: print(line, flush=True))
    return 0
