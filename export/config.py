"""Settings of one export."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from polyrank.checkpoint import DEFAULT_MAX_LENGTH
from polyrank.export.errors import ExportSettingsError
from polyrank.export.precisions import AUTO, PRECISIONS
from polyrank.export.quality import GateThresholds

PRECISION_CHOICES = (*PRECISIONS, AUTO)
CALIBRATED = ("int8-static", "int8-mixed", AUTO)
OPENVINO_ONLY = ("bf16", "int8-mixed", AUTO)
TARGETS = ("embedded", "triton-gpu")
DEVICES = ("cpu", "cuda")
# Native backends merge only requests of one shape: triton-gpu tokenizers pad up to these widths.
GPU_LENGTH_BUCKETS = (16, 32, 64, 128, 256)
CUDA_PRECISIONS = ("fp32", "fp16")  # ONNX Runtime's CUDA provider on the plain or fp16 graph
ENGINES = ("onnxruntime", "tensorrt")


@dataclass(frozen=True, kw_only=True)
class ServingConfig:
    """How the repository's models serve. Each field is a config.pbtxt template field of the
    same name (template_fields), so a new setting is added here and used in a template.

    Attributes:
        max_batch_size: most pairs in one request to `rerank`; clients split longer lists.
        merge_requests: how many full-size requests the tokenizer's and scorer's dynamic
            batchers may merge into one execution (their max_batch_size is this multiple).
        tokenizer_queue_delay_us, scorer_queue_delay_us: how long each dynamic batcher waits
            for more requests to join an execution.
        tokenizer_instances, scorer_instances, two_tower_instances: model instances (processes)
            of each (two-tower: the model that fans a request out to its embed models).
        intra_op_threads: threads of one scorer run.
        max_pairs_per_run, max_tokens_per_run: caps on one scorer run (pairs, padded tokens).
        max_pairs_per_wave: the scorer answers the requests of one execution in waves of at
            most this many pairs, so early requests are not held until the last is scored.
        max_queue_size: requests the scorer's queue holds per priority; more are rejected at once.
        queue_timeout_s: the default deadline of an interactive call that gives none: it waits
            no longer in a queue, and admission control judges it by this deadline. A call's
            own deadline may only be shorter (Triton's rule).
        batch_queue_timeout_s: the same for batch-priority calls, which wait behind interactive ones.
        admission_control: the tokenizer rejects an interactive request at once when the work
            admitted ahead of it and its own would not be done within admission_deadline_share
            of its deadline (measured pipeline speed, with a margin for its recent variation; the
            rest of the deadline covers the time outside the scorer: README "Overload").
            Off: requests queue until their deadline.
    """

    max_batch_size: int = 256
    merge_requests: int = 4
    tokenizer_queue_delay_us: int = 500
    scorer_queue_delay_us: int = 2000
    tokenizer_instances: int = 1
    scorer_instances: int = 1
    two_tower_instances: int = 2  # while one waits on its embed calls, the other takes a request
    intra_op_threads: int = 2
    max_pairs_per_run: int = 16
    max_tokens_per_run: int = 8192
    max_pairs_per_wave: int = 128
    max_queue_size: int = 32
    queue_timeout_s: float = 2.0
    batch_queue_timeout_s: float = 60.0
    admission_control: bool = True
    admission_deadline_share: float = 0.9

    def __post_init__(self):
        for name, value in asdict(self).items():
            if name.endswith("_timeout_s"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                    raise ExportSettingsError(f"{name} must be positive, got {value!r}")
            elif name == "admission_control":
                if not isinstance(value, bool):
                    raise ExportSettingsError(f"admission_control must be True or False, got {value!r}")
            elif name == "admission_deadline_share":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                    raise ExportSettingsError(f"admission_deadline_share must lie in (0, 1], got {value!r}")
            elif name.endswith("_delay_us"):
                if not isinstance(value, int) or value < 0:
                    raise ExportSettingsError(f"{name} must be 0 or a positive integer, got {value!r}")
            elif not isinstance(value, int) or value < 1:
                raise ExportSettingsError(f"{name} must be a positive integer, got {value!r}")

    def template_fields(self) -> dict:
        """Every setting by its name, plus the two the templates need derived."""
        return {
            **asdict(self),
            "merged_batch_size": self.max_batch_size * self.merge_requests,
            "queue_timeout_us": int(self.queue_timeout_s * 1e6),
            "batch_queue_timeout_us": int(self.batch_queue_timeout_s * 1e6),
            "admission_control": "true" if self.admission_control else "false",
        }


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """What `polyrank export` builds.

    Attributes:
        model: local checkpoint directory or hub id of a sequence-classification
            cross-encoder with one output logit.
        output: model repository directory to write.
        max_length: longest (query, product) pair in tokens; longer products are truncated.
            None: min(256, the checkpoint's position limit); above that limit is refused.
        target: "embedded" (Python-backend scorer for the pip-shipped server) or "triton-gpu"
            (native onnxruntime or tensorrt backend for the NGC container).
        serving: how the models serve (batching, instances, run caps, queue bounds).
        parity_tolerance: largest allowed |ONNX - PyTorch| score difference.
        precision: one of export/precisions.py ("fp32", "fp16" for GPUs, "bf16" and "int8-mixed"
            through OpenVINO on CPUs, "int8-dynamic", "int8-static" QDQ), or "auto": the fastest
            CPU precision that passes the quality gate on this machine.
        allow_f32_fallback: bf16 on a CPU without bf16 instructions exports OpenVINO f32 (and
            says so) instead of refusing.
        device: where the embedded server's scorer runs: "cpu", or "cuda" (KIND_GPU instances,
            ONNX Runtime's CUDA provider, fp32 or fp16; the server then needs onnxruntime-gpu and
            fails loudly without it or a GPU, never falling back to the CPU).
        length_buckets: widths the tokenizer pads each request up to (the narrowest that holds
            its longest pair), so that requests of similar lengths share a shape and Triton's
            native backends can merge them. None: GPU_LENGTH_BUCKETS for triton-gpu, none for
            the embedded scorer (which trims every run to its own longest pair anyway); () none.
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
    """

    model: str
    output: Path
    max_length: Optional[int] = None
    target: str = "embedded"
    device: str = "cpu"
    length_buckets: Optional[tuple[int, ...]] = None
    serving: ServingConfig = field(default_factory=ServingConfig)
    opset: int = 18
    parity_tolerance: float = 1e-4
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

    def __post_init__(self):
        object.__setattr__(self, "output", Path(self.output))
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", self.name):
            raise ExportSettingsError(f"name must be a letter then letters, digits, _ or - (64 at most), got {self.name!r}")
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise ExportSettingsError(f"embedding_dim must be a positive integer, got {self.embedding_dim!r}")
        if self.precision not in PRECISION_CHOICES:
            raise ExportSettingsError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}")
        for path in (self.calibration, self.eval):
            if path is not None and not Path(path).is_file():
                raise ExportSettingsError(f"{path} does not exist or is not a file")
        if self.calibration is not None and self.precision not in CALIBRATED:
            raise ExportSettingsError(f"--calibration applies to {', '.join(CALIBRATED)}, got precision {self.precision}")
        if self.target not in TARGETS:
            raise ExportSettingsError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.target != "embedded" and self.precision in OPENVINO_ONLY:
            raise ExportSettingsError(
                f"--precision {self.precision} runs through OpenVINO in the embedded server's scorer; "
                f"use --target embedded (GPUs take fp16 or int8-static)"
            )
        self._check_engine()
        self._check_device()
        if self.length_buckets is not None and not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in self.length_buckets):
            raise ExportSettingsError(f"length_buckets must be positive integers, got {self.length_buckets!r}")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 1):
            raise ExportSettingsError(f"max_length must be a positive integer, got {self.max_length!r}")
        if not isinstance(self.opset, int) or self.opset < 1:
            raise ExportSettingsError(f"opset must be a positive integer, got {self.opset!r}")
        longest = self.max_length or DEFAULT_MAX_LENGTH
        if self.serving.max_tokens_per_run < longest:  # a run must hold one pair of the longest kind
            raise ExportSettingsError(
                f"max_tokens_per_run must be at least max_length ({longest}), got {self.serving.max_tokens_per_run}"
            )

    def padding_buckets(self) -> tuple[int, ...]:
        """The widths the tokenizer pads requests up to, ending at max_length (empty: none)."""
        if self.length_buckets is None and self.target != "triton-gpu":
            return ()
        chosen = GPU_LENGTH_BUCKETS if self.length_buckets is None else self.length_buckets
        if not chosen:
            return ()
        longest = self.max_length or DEFAULT_MAX_LENGTH
        return tuple(sorted({width for width in chosen if width < longest} | {longest}))

    def _check_device(self):
        if self.device not in DEVICES:
            raise ExportSettingsError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.device == "cuda":
            if self.target != "embedded":
                raise ExportSettingsError("--device applies to --target embedded (triton-gpu repositories run on GPUs already)")
            if self.precision not in CUDA_PRECISIONS:
                raise ExportSettingsError(
                    f"--device cuda runs ONNX Runtime's CUDA provider: --precision {' or '.join(CUDA_PRECISIONS)}, got {self.precision}"
                )

    def _check_engine(self):
        if self.engine not in ENGINES:
            raise ExportSettingsError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "onnxruntime":
            if self.profile_batch or self.profile_length:
                raise ExportSettingsError("--profile-batch/--profile-length apply to --engine tensorrt only")
            return
        if self.target != "triton-gpu":
            raise ExportSettingsError("--engine tensorrt needs --target triton-gpu (the embedded server has no TensorRT)")
        if self.precision == "int8-dynamic":
            raise ExportSettingsError("int8-dynamic is ONNX Runtime's CPU format; TensorRT takes int8-static (QDQ)")
        max_batch = self.serving.max_batch_size
        batch = self.profile_batch or (1, min(32, max_batch), max_batch)
        max_length = self.max_length or DEFAULT_MAX_LENGTH  # the default covers any checkpoint's
        length = self.profile_length or (1, min(64, max_length), max_length)
        for name, shape in (("profile_batch", batch), ("profile_length", length)):
            if len(shape) != 3 or not all(isinstance(v, int) and v >= 1 for v in shape) or sorted(shape) != list(shape):
                raise ExportSettingsError(f"{name} must be three positive integers min <= opt <= max, got {shape!r}")
        if batch[2] < max_batch:
            raise ExportSettingsError(f"profile_batch max ({batch[2]}) must hold a full request of max_batch_size ({max_batch})")
        if length[2] < max_length:
            raise ExportSettingsError(f"profile_length max ({length[2]}) must be at least max_length ({max_length})")
        object.__setattr__(self, "profile_batch", tuple(batch))
        object.__setattr__(self, "profile_length", tuple(length))
