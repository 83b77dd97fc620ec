"""Settings of one export."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from polyrank.export.precisions import AUTO, PRECISIONS
from polyrank.export.quality import GateThresholds

PRECISION_CHOICES = (*PRECISIONS, AUTO)
CALIBRATED = ("int8-static", "int8-mixed", AUTO)
OPENVINO_ONLY = ("bf16", "int8-mixed", AUTO)
TARGETS = ("embedded", "triton-gpu")
DEFAULT_MAX_LENGTH = 256  # or the checkpoint's position limit, if lower
ENGINES = ("onnxruntime", "tensorrt")


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """What `polyrank export` builds.

    Attributes:
        model: local checkpoint directory or hub id of a sequence-classification
            cross-encoder with one output logit.
        output: model repository directory to write.
        max_length: longest (query, product) pair in tokens; longer products are truncated.
            None: min(256, the checkpoint's position limit); above that limit is refused.
        target: "embedded" (Python-backend ONNX Runtime scorer for the pip-shipped server)
            or "triton-gpu" (native onnxruntime backend for the NGC container).
        max_batch_size: most pairs in one request to `rerank`; clients split longer lists.
        merge_requests: how many full-size requests the tokenizer's and scorer's dynamic
            batchers may merge into one execution (their max_batch_size is this multiple).
        parity_tolerance: largest allowed |ONNX - PyTorch| score difference.
        precision: one of export/precisions.py ("fp32", "fp16" for GPUs, "bf16" and "int8-mixed"
            through OpenVINO on CPUs, "int8-dynamic", "int8-static" QDQ), or "auto": the fastest
            CPU precision that passes the quality gate on this machine.
        allow_f32_fallback: bf16 on a CPU without bf16 instructions exports OpenVINO f32 (and
            says so) instead of refusing.
        engine: "onnxruntime" (fused ONNX graph) or "tensorrt" (a TensorRT plan; triton-gpu only,
            built on a GPU).
        profile_batch, profile_length: the TensorRT optimisation profile, (min, opt, max) pairs
            per execution and tokens per pair; by default (1, 32, max_batch_size) and
            (1, 64, max_length).
        calibration: JSONL of {"query", "documents"} lists to calibrate int8-static and
            int8-mixed on (default: the built-in multilingual calibration lists).
        eval: JSONL of {"query", "documents", "labels"?} for the quality gate (default:
            the built-in multilingual lists, 100 candidates each).
        gate: the quality gate's thresholds.
        force: write the repository even if the quality gate fails.
        overwrite: replace an existing repository at `output` (with `add`: replace only the
            models of the same names).
        name: the model clients call (default "rerank"); the models behind it are named
            `<name>_tokenizer`, `<name>_scorer`, ... (plain `tokenizer`, `scorer` for "rerank").
        add: add the models to the existing repository at `output`, beside the ones there
            (e.g. a student next to its teacher).
        embedding_dim: two-tower models: serve the first N embedding components (the full
            size by default; the reduced size the student was trained with).
        max_queue_size: requests the scoring model's queue holds; more are rejected at once.
        queue_timeout_s: longest a request waits in that queue before it is rejected (keep
            it below the clients' deadline, so the server drops work nobody waits for).
    """

    model: str
    output: Path
    max_length: Optional[int] = None
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
    engine: str = "onnxruntime"
    profile_batch: Optional[tuple[int, int, int]] = None
    profile_length: Optional[tuple[int, int, int]] = None
    calibration: Optional[Path] = None
    eval: Optional[Path] = None
    allow_f32_fallback: bool = False
    gate: GateThresholds = field(default_factory=GateThresholds)
    force: bool = False
    overwrite: bool = False
    name: str = "rerank"
    add: bool = False
    embedding_dim: Optional[int] = None
    max_queue_size: int = 32
    queue_timeout_s: float = 20.0

    def __post_init__(self):
        object.__setattr__(self, "output", Path(self.output))
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", self.name):
            raise ValueError(f"name must be a letter then letters, digits, _ or - (64 at most), got {self.name!r}")
        if self.queue_timeout_s <= 0:
            raise ValueError(f"queue_timeout_s must be positive, got {self.queue_timeout_s!r}")
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive integer, got {self.embedding_dim!r}")
        if self.precision not in PRECISION_CHOICES:
            raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}")
        for path in (self.calibration, self.eval):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{path} does not exist or is not a file")
        if self.calibration is not None and self.precision not in CALIBRATED:
            raise ValueError(f"--calibration applies to {', '.join(CALIBRATED)}, got precision {self.precision}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.target != "embedded" and self.precision in OPENVINO_ONLY:
            raise ValueError(
                f"--precision {self.precision} runs through OpenVINO in the embedded server's scorer; "
                f"use --target embedded (GPUs take fp16 or int8-static)"
            )
        self._check_engine()
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 1):
            raise ValueError(f"max_length must be a positive integer, got {self.max_length!r}")
        for name in (
            "max_batch_size",
            "merge_requests",
            "opset",
            "tokenizer_instances",
            "scorer_instances",
            "intra_op_threads",
            "max_pairs_per_run",
            "max_tokens_per_run",
            "max_queue_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_tokens_per_run < (self.max_length or DEFAULT_MAX_LENGTH):
            raise ValueError(
                f"max_tokens_per_run must be at least max_length ({self.max_length or DEFAULT_MAX_LENGTH}), "
                f"got {self.max_tokens_per_run}"
            )

    def _check_engine(self):
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "onnxruntime":
            if self.profile_batch or self.profile_length:
                raise ValueError("--profile-batch/--profile-length apply to --engine tensorrt only")
            return
        if self.target != "triton-gpu":
            raise ValueError("--engine tensorrt needs --target triton-gpu (the embedded server has no TensorRT)")
        if self.precision == "int8-dynamic":
            raise ValueError("int8-dynamic is ONNX Runtime's CPU format; TensorRT takes int8-static (QDQ)")
        batch = self.profile_batch or (1, min(32, self.max_batch_size), self.max_batch_size)
        max_length = self.max_length or DEFAULT_MAX_LENGTH  # the default covers any checkpoint's
        length = self.profile_length or (1, min(64, max_length), max_length)
        for name, shape in (("profile_batch", batch), ("profile_length", length)):
            if len(shape) != 3 or not all(isinstance(v, int) and v >= 1 for v in shape) or sorted(shape) != list(shape):
                raise ValueError(f"{name} must be three positive integers min <= opt <= max, got {shape!r}")
        if batch[2] < self.max_batch_size:
            raise ValueError(f"profile_batch max ({batch[2]}) must hold a full request of max_batch_size ({self.max_batch_size})")
        if length[2] < max_length:
            raise ValueError(f"profile_length max ({length[2]}) must be at least max_length ({max_length})")
        object.__setattr__(self, "profile_batch", tuple(batch))
        object.__setattr__(self, "profile_length", tuple(length))
