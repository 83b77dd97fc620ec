"""Settings of one export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

PRECISIONS = ("fp32", "int8-dynamic", "int8-static")
TARGETS = ("embedded", "triton-gpu")


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """What `polyrank export` builds.

    Attributes:
        model: local checkpoint directory or hub id of a sequence-classification
            cross-encoder with one output logit.
        output: model repository directory to write.
        max_length: longest (query, product) pair in tokens; longer products are truncated.
        target: "embedded" (Python-backend ONNX Runtime scorer for the pip-shipped server)
            or "triton-gpu" (native onnxruntime backend for the NGC container).
        max_batch_size: most pairs in one request to `rerank`; clients split longer lists.
        merge_requests: how many full-size requests the tokenizer's and scorer's dynamic
            batchers may merge into one execution (their max_batch_size is this multiple).
        parity_tolerance: largest allowed |ONNX - PyTorch| score difference.
        precision: "fp32", "int8-dynamic" (CPU) or "int8-static" (QDQ, calibrated).
        calibration: JSONL of {"query", "documents"} pairs for int8-static calibration
            (default: the built-in multilingual sample).
        eval: JSONL of {"query", "documents", "labels"?} for the quality gate (default:
            the built-in multilingual sample).
        min_mean_spearman, min_reference_ndcg_at_10: quality-gate thresholds.
        force: write the repository even if the quality gate fails.
        overwrite: replace an existing repository at `output`.
    """

    model: str
    output: Path
    max_length: int = 256
    target: str = "embedded"
    max_batch_size: int = 256
    merge_requests: int = 4
    opset: int = 18
    parity_tolerance: float = 1e-4
    tokenizer_queue_delay_us: int = 500
    scorer_queue_delay_us: int = 2000
    tokenizer_instances: int = 1
    scorer_instances: int = 1
    intra_op_threads: int = 2
    max_pairs_per_run: int = 16
    max_tokens_per_run: int = 8192
    precision: str = "fp32"
    calibration: Optional[Path] = None
    eval: Optional[Path] = None
    min_mean_spearman: float = 0.99
    min_reference_ndcg_at_10: float = 0.99
    force: bool = False
    overwrite: bool = False

    def __post_init__(self):
        object.__setattr__(self, "output", Path(self.output))
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for path in (self.calibration, self.eval):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{path} does not exist or is not a file")
        if self.calibration is not None and self.precision != "int8-static":
            raise ValueError(f"--calibration applies to int8-static only, got precision {self.precision}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        for name in (
            "max_length",
            "max_batch_size",
            "merge_requests",
            "opset",
            "tokenizer_instances",
            "scorer_instances",
            "intra_op_threads",
            "max_pairs_per_run",
            "max_tokens_per_run",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_tokens_per_run < self.max_length:
            raise ValueError(
                f"max_tokens_per_run must be at least max_length ({self.max_length}), "
                f"got {self.max_tokens_per_run}"
            )
