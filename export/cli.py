"""`polyrank export` and `polyrank build-shaped-model`."""

from __future__ import annotations

import argparse
from pathlib import Path

from polyrank.export.config import DEVICES, ENGINES, PRECISION_CHOICES, TARGETS, ExportConfig, ServingConfig
from polyrank.export.quality import GateThresholds


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="cross-encoder or two-tower checkpoint: local directory or hub id")
    parser.add_argument("--output", required=True, type=Path, help="Triton model repository to write")
    parser.add_argument("--max-length", type=int, help="longest pair in tokens (default: 256, or the checkpoint's limit if lower)")
    parser.add_argument("--target", choices=TARGETS, default="embedded", help="serving target (default embedded)")
    parser.add_argument("--length-buckets", type=_widths, default=None,
                        help="pad each request up to the narrowest of these widths, e.g. 16,32,64,128,256, or none "
                             "(default: those for --target triton-gpu, whose native backends merge only equal shapes; none for embedded)")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="embedded target: run the scorer on the CPU (default) or a CUDA GPU (fp32 or fp16; needs onnxruntime-gpu)")
    serving = ServingConfig()
    parser.add_argument("--max-batch-size", type=int, default=serving.max_batch_size,
                        help=f"most pairs per request ({serving.max_batch_size})")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32",
                        help="scorer precision (default fp32); auto: the fastest that passes the gate on this CPU")
    parser.add_argument("--allow-f32-fallback", action="store_true",
                        help="bf16 on a CPU without bf16 instructions: export OpenVINO f32 instead of refusing")
    parser.add_argument("--engine", choices=ENGINES, default="onnxruntime", help="scorer engine (default onnxruntime)")
    parser.add_argument("--profile-batch", type=_shape, help="TensorRT profile pairs MIN,OPT,MAX (1,32,max-batch-size)")
    parser.add_argument("--profile-length", type=_shape, help="TensorRT profile tokens MIN,OPT,MAX (1,64,max-length)")
    parser.add_argument("--calibration", type=Path, help="int8 calibration lists, JSONL {query, documents}")
    parser.add_argument("--eval", type=Path, help="quality-gate lists, JSONL {query, documents, labels?}")
    gate = GateThresholds()
    parser.add_argument("--tie-margin", type=float, default=gate.tie_margin,
                        help=f"gate: reference scores closer than this (logits) are a tie ({gate.tie_margin})")
    parser.add_argument("--min-top1", type=float, default=gate.min_top1_fidelity,
                        help=f"gate: least top-1 fidelity ({gate.min_top1_fidelity})")
    parser.add_argument("--min-top10", type=float, default=gate.min_top10_fidelity,
                        help=f"gate: least top-10 fidelity ({gate.min_top10_fidelity})")
    parser.add_argument("--min-concordance", type=float, default=gate.min_clear_pair_concordance,
                        help=f"gate: least clear-pair concordance ({gate.min_clear_pair_concordance})")
    parser.add_argument("--max-label-drop", type=float, default=gate.max_label_drop,
                        help=f"gate, labelled lists: largest drop in NDCG@10 and MRR@10 ({gate.max_label_drop})")
    parser.add_argument("--force", action="store_true", help="write the repository even if the gate fails")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing repository (with --add: its models of the same names)")
    parser.add_argument("--name", default="rerank", help="model name clients call (default rerank); its parts get it as prefix")
    parser.add_argument("--add", action="store_true", help="add the models to an existing repository, e.g. a student beside its teacher")
    parser.add_argument("--max-queue-size", type=int, default=serving.max_queue_size,
                        help=f"requests the scorer queues before rejecting ({serving.max_queue_size})")
    parser.add_argument("--queue-timeout", type=float, default=serving.queue_timeout_s,
                        help="default deadline of an interactive call that gives none, and the longest one may wait in a queue "
                             f"({serving.queue_timeout_s:g} s)")
    parser.add_argument("--batch-queue-timeout", type=float, default=serving.batch_queue_timeout_s,
                        help=f"the same for batch-priority calls ({serving.batch_queue_timeout_s:g} s)")
    parser.add_argument("--admission-control", action=argparse.BooleanOptionalAction, default=serving.admission_control,
                        help="reject an interactive call at once when the queued work would make it miss its deadline (on)")
    parser.add_argument("--admission-deadline-share", type=float, default=serving.admission_deadline_share,
                        help="admit a call only if the work ahead and its own fit in this share of its deadline: higher "
                             f"serves more, and more calls end past their deadline ({serving.admission_deadline_share:g})")
    parser.add_argument("--embedding-dim", type=int, help="two-tower: serve the first N embedding components (default: all)")


def _widths(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected positive widths separated by commas (or none), got {text!r}")
    return widths


def _shape(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX (three integers), got {text!r}")
    return values


def run_export(args: argparse.Namespace) -> int:
    from polyrank.export.build_repository import build_repository

    build_repository(config_from_arguments(args))
    return 0


def config_from_arguments(args: argparse.Namespace) -> ExportConfig:
    return ExportConfig(
        model=args.model,
        output=args.output,
        max_length=args.max_length,
        target=args.target,
        device=args.device,
        length_buckets=args.length_buckets,
        serving=ServingConfig(
            max_batch_size=args.max_batch_size, max_queue_size=args.max_queue_size, queue_timeout_s=args.queue_timeout,
            batch_queue_timeout_s=args.batch_queue_timeout, admission_control=args.admission_control,
            admission_deadline_share=args.admission_deadline_share,
        ),
        precision=args.precision,
        engine=args.engine,
        profile_batch=args.profile_batch,
        profile_length=args.profile_length,
        calibration=args.calibration,
        eval=args.eval,
        allow_f32_fallback=args.allow_f32_fallback,
        gate=GateThresholds(
            tie_margin=args.tie_margin,
            min_top1_fidelity=args.min_top1,
            min_top10_fidelity=args.min_top10,
            min_clear_pair_concordance=args.min_concordance,
            max_label_drop=args.max_label_drop,
        ),
        force=args.force,
        overwrite=args.overwrite,
        name=args.name,
        add=args.add,
        embedding_dim=args.embedding_dim,
    )


def add_shaped_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, type=Path, help="checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=0)


def run_build_shaped_model(args: argparse.Namespace, cache_dir: Path) -> int:
    from polyrank.export.assets import build_mmbert_small_shaped

    path = build_mmbert_small_shaped(args.output, cache_dir, seed=args.seed)
    print(f"wrote mmBERT-small-shaped cross-encoder (random weights) to {path}")
    return 0
