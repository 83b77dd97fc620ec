"""fp32 ONNX -> int8 ONNX (ONNX Runtime quantization), with the format picked for this CPU.

- int8-dynamic: weights int8 ahead of time, activations uint8 quantized per run (CPU).
- int8-static: QDQ graph with symmetric int8 activations calibrated on product pairs,
  the layout TensorRT and ONNX Runtime both read.
(OpenVINO's int8, int8-mixed, is in openvino.py.)
Only MatMul nodes (the transformer's linear layers) are quantized; embeddings, LayerNorm,
softmax and the classifier stay in fp32.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Sequence

import onnx
from onnxruntime.quantization import CalibrationDataReader

from polyrank.export.optimize import quiet_onnxruntime_tools
from polyrank.model_repository.runtimes import INT8_DOT_PRODUCT_FLAGS, cpu_flags

QUANTIZED_OPS = ["MatMul"]


def int8_weight_format(machine: str | None = None, flags: set[str] | None = None) -> dict:
    """The dynamic-quantization weight format for this CPU, and why.

    ONNX Runtime runs uint8 activations x int8 weights (U8S8) fastest on x86 and Arm. On
    x86 without VNNI, the U8S8 kernel (VPMADDUBSW) can saturate, so weights keep 7 bits
    (reduce_range); with AVX-512 VNNI or AVX-VNNI the full 8 bits are safe.
    """
    machine = (machine or platform.machine()).lower()
    flags = cpu_flags() if flags is None else flags
    if machine in ("aarch64", "arm64"):
        return {"weight_type": "QInt8", "reduce_range": False, "instruction_set": "Arm64", "format": "U8S8"}
    if set(INT8_DOT_PRODUCT_FLAGS) & flags:
        isa = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-VNNI"
        return {"weight_type": "QInt8", "reduce_range": False, "instruction_set": isa, "format": "U8S8"}
    if "avx2" in flags:
        return {"weight_type": "QInt8", "reduce_range": True, "instruction_set": "AVX2 (no VNNI)", "format": "U8S8, 7-bit weights"}
    return {"weight_type": "QUInt8", "reduce_range": False, "instruction_set": "baseline x86/other", "format": "U8U8"}


def quantize_int8_dynamic(fp32_path: Path, output: Path) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    chosen = int8_weight_format()
    with quiet_onnxruntime_tools():
        quantize_dynamic(
            str(fp32_path),
            str(output),
            op_types_to_quantize=QUANTIZED_OPS,
            per_channel=True,
            reduce_range=chosen["reduce_range"],
            weight_type=getattr(QuantType, chosen["weight_type"]),
            # the fused graph's contrib ops have no ONNX type inference; their outputs are fp32
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return {"method": "dynamic", "ops": QUANTIZED_OPS, "per_channel": True, **chosen}


def quantize_int8_static(fp32_path: Path, output: Path, calibration_feeds: Sequence[dict]) -> dict:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with quiet_onnxruntime_tools():
        quantize_static(
            str(fp32_path),
            str(output),
            calibration_data_reader=_CalibrationReader(calibration_feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
    return {
        "method": "static QDQ",
        "ops": QUANTIZED_OPS,
        "per_channel": True,
        "activations": "int8 symmetric",
        "weights": "int8 symmetric",
        "calibration": "MinMax",
        "calibration_batches": len(calibration_feeds),
    }


class _CalibrationReader(CalibrationDataReader):
    """Hands ONNX Runtime's calibrator the calibration batches, once (MinMax needs one pass)."""

    def __init__(self, feeds: Sequence[dict]):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)

    def rewind(self):
        pass
