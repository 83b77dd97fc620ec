"""`polyrank export` and `polyrank build-shaped-model`."""

from __future__ import annotations

import argparse
from pathlib import Path

from polyrank.export.config import TARGETS, ExportConfig


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="cross-encoder checkpoint: local directory or hub id")
    parser.add_argument("--output", required=True, type=Path, help="Triton model repository to write")
    parser.add_argument("--max-length", type=int, default=256, help="longest pair in tokens (default 256)")
    parser.add_argument("--target", choices=TARGETS, default="embedded", help="serving target (default embedded)")
    parser.add_argument("--max-batch-size", type=int, default=256, help="most pairs per request (default 256)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing repository")


def run_export(args: argparse.Namespace) -> int:
    from polyrank.export.build_repository import build_repository

    config = ExportConfig(
        model=args.model,
        output=args.output,
        max_length=args.max_length,
        target=args.target,
        max_batch_size=args.max_batch_size,
        overwrite=args.overwrite,
    )
    build_repository(config)
    return 0


def add_shaped_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, type=Path, help="checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=0)


def run_build_shaped_model(args: argparse.Namespace, cache_dir: Path) -> int:
    from polyrank.export.assets import build_mmbert_small_shaped

    path = build_mmbert_small_shaped(args.output, cache_dir, seed=args.seed)
    print(f"wrote mmBERT-small-shaped cross-encoder (random weights) to {path}")
    return 0
