"""The scorer precisions polyrank exports, the runtime that runs each (runtimes.py), and the
conversion of the exported fp32 graph into that precision's files."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from polyrank.export.errors import PrecisionUnavailable
from polyrank.model_repository import runtimes

if TYPE_CHECKING:
    from polyrank.model_repository.pair_encoding import PairEncoder


@dataclass(frozen=True)
class Precision:
    name: str
    runtime: str  # a runtime of runtimes.py
    summary: str


PRECISIONS = {
    p.name: p
    for p in (
        Precision("fp32", "onnxruntime", "fp32 graph with ONNX Runtime's fusions"),
        Precision("fp16", "onnxruntime", "fp16 weights and arithmetic, fp32 normalisation (a GPU format)"),
        Precision("bf16", "openvino", "OpenVINO, bf16 inference (CPUs with AVX-512 BF16 or AMX)"),
        Precision("int8-mixed", "openvino", "OpenVINO int8 (NNCF), feed-forward down-projections in bf16 or f32"),
        Precision("int8-dynamic", "onnxruntime", "ONNX Runtime int8 MatMuls, activations quantized per run"),
        Precision("int8-static", "onnxruntime", "int8 QDQ graph, calibrated (the layout TensorRT reads)"),
    )
}
AUTO = "auto"
# What `--precision auto` tries: the CPU formats (fp16 and int8-static are GPU / TensorRT formats).
AUTO_CANDIDATES = ("fp32", "bf16", "int8-mixed", "int8-dynamic")
CALIBRATION_BATCH = 8


@dataclass(frozen=True)
class ScorerFiles:
    """One precision's scorer: its files and how the runtime is to open them."""

    precision: str
    runtime: str
    runtime_options: dict
    files: dict  # file name in the version folder -> its path now
    conversion: Optional[dict]

    @property
    def model_path(self) -> Path:
        return self.files[runtimes.MODEL_FILES[self.runtime]]

    def open(self, threads: int):
        return runtimes.open_runtime(self.runtime, str(self.model_path), threads=threads, **self.runtime_options)


def auto_candidates(flags: Optional[set] = None) -> list[str]:
    """The precisions `auto` compares on this CPU (bf16 only where the CPU has it)."""
    return [p for p in AUTO_CANDIDATES if p != "bf16" or runtimes.has_bf16(flags)]


def openvino_options(precision: str, allow_f32_fallback: bool, log=print) -> dict:
    """The OpenVINO runtime's options for bf16 or int8-mixed on this CPU.

    Raises:
        PrecisionUnavailable: bf16 on a CPU without bf16 instructions, with no fallback allowed.
    """
    if runtimes.has_bf16():
        return {"precision": "bf16"}
    if precision == "int8-mixed":  # the int8 layers are the point; the rest runs f32 here
        log(f"int8-mixed: this CPU ({runtimes.instruction_set()}) has no bf16; its unquantized layers run f32")
        return {"precision": "f32"}
    if not allow_f32_fallback:
        raise PrecisionUnavailable(
            f"--precision bf16 needs a CPU with AVX-512 BF16 or AMX, this one has {runtimes.instruction_set()}; "
            "pass --allow-f32-fallback to export OpenVINO f32 instead, or use --precision fp32"
        )
    log(f"bf16: this CPU ({runtimes.instruction_set()}) has no bf16; exporting OpenVINO f32 (--allow-f32-fallback)")
    return {"precision": "f32"}


def build_scorer_files(
    precision: str,
    fp32_path: Path,
    fused_path: Path,
    folder: Path,
    encoder: "PairEncoder",
    calibration: tuple[Sequence[str], Sequence[str]],
    intermediate_size: Optional[int],
    allow_f32_fallback: bool = False,
    log=print,
) -> ScorerFiles:
    """Writes one precision's scorer files into `folder`.

    `fused_path` is the graph with ONNX Runtime's fusions (what ONNX Runtime serves);
    int8-static and OpenVINO start from the plain `fp32_path` (TensorRT reads the former,
    and OpenVINO fuses by itself).
    """
    from polyrank.export.openvino import convert_to_ir, quantize_int8_mixed
    from polyrank.export.optimize import convert_to_fp16
    from polyrank.export.quantize import quantize_int8_dynamic, quantize_int8_static

    folder.mkdir(parents=True, exist_ok=True)
    runtime = PRECISIONS[precision].runtime
    feeds = lambda: calibration_feeds(encoder, *calibration, input_names=_input_names(fp32_path))  # noqa: E731
    if runtime == "openvino":
        options = openvino_options(precision, allow_f32_fallback, log)
        xml = folder / "model.xml"
        if precision == "bf16":
            convert_to_ir(fp32_path, xml)
            conversion = {"method": "OpenVINO IR, fp32 weights; bf16 is the inference hint"}
        else:
            ir = folder / "fp32" / "model.xml"
            ir.parent.mkdir()
            convert_to_ir(fp32_path, ir)
            conversion = quantize_int8_mixed(ir, xml, feeds(), intermediate_size)
            shutil.rmtree(ir.parent)
        files = {"model.xml": xml, "model.bin": xml.with_suffix(".bin")}
    else:
        options = {"providers": ["CPUExecutionProvider"]}
        onnx_path = folder / "model.onnx"
        if precision == "fp32":
            shutil.copyfile(fused_path, onnx_path)
            conversion = None
        elif precision == "fp16":
            conversion = convert_to_fp16(fused_path, onnx_path)
        elif precision == "int8-dynamic":
            conversion = quantize_int8_dynamic(fused_path, onnx_path)
        else:
            conversion = quantize_int8_static(fp32_path, onnx_path, feeds())
        files = {"model.onnx": onnx_path}
    if precision in ("int8-mixed", "int8-dynamic"):
        # Both keep 8-bit weights where int8 does not saturate (VNNI, Arm); gated there, they are
        # refused where it does (runtimes.py).
        needs_vnni = not runtimes.int8_saturates()
        conversion = {**conversion, "int8_needs_vnni": needs_vnni}
        if needs_vnni:
            options = {**options, "int8_needs_vnni": True}
    if conversion:
        log(f"converted to {precision}: {json.dumps(conversion)}")
    return ScorerFiles(precision, runtime, options, files, conversion)


def calibration_feeds(encoder: "PairEncoder", queries, documents, input_names) -> list[dict]:
    """Calibration pairs as runtime feeds: length-sorted batches of 8."""
    encodings = sorted(encoder.encode(list(queries), list(documents)), key=lambda e: len(e.ids))
    return [
        encoder.pad(encodings[start : start + CALIBRATION_BATCH]).feed(input_names)
        for start in range(0, len(encodings), CALIBRATION_BATCH)
    ]


def _input_names(onnx_path: Path) -> list[str]:
    import onnx

    return [i.name for i in onnx.load(str(onnx_path), load_external_data=False).graph.input]
