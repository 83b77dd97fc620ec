"""fp32 ONNX -> OpenVINO IR for the embedded scorer's OpenVINO runtime.

- bf16: the fp32 IR (weights stay fp32); bf16 is a run-time hint (runtimes.py), so the
  same files run f32 where a fallback was allowed.
- int8-mixed: NNCF post-training quantization with its transformer preset (SmoothQuant,
  asymmetric activations, fast bias correction), calibrated on product pairs, with the
  feed-forward down-projections left out: they read the activation function's outputs,
  whose outliers int8 cannot hold. Measured on a trained product cross-encoder (README,
  "Precision"): quantizing them too changed the first product on 2 of 120 queries, keeping
  them on 0, at 11% of the speed-up. The unquantized layers run in bf16 where the CPU
  has it, f32 elsewhere. NNCF's overflow fix stays its default (7-bit weights in the first
  layer only), also on x86 without VNNI, where int8 kernels can saturate: 7-bit weights in
  every layer failed the gate on the trained MiniLM on AVX2 (top-1 fidelity 0.975) where the
  default passed as on VNNI (1.000; README "int8 methods").

The IR is converted from the plain export (ONNX Runtime's fused graph holds contrib ops
OpenVINO does not need: it fuses by itself).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Sequence

from polyrank.export.errors import ExportSettingsError

QUANTIZED_METHOD = "NNCF post-training quantization, transformer preset (SmoothQuant, fast bias correction)"


def convert_to_ir(onnx_path: Path, xml_path: Path) -> None:
    """Writes model.xml / model.bin beside each other, weights kept fp32."""
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)


def ffn_down_projections(model, intermediate_size: int) -> list[str]:
    """Names of the MatMuls that read `intermediate_size` features: the feed-forward
    down-projections (BERT's output.dense, ModernBERT's mlp.Wo)."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        features = op.input_value(0).get_partial_shape()
        last = features[features.rank.get_length() - 1] if features.rank.is_static else None
        if last is not None and last.is_static and last.get_length() == intermediate_size:
            names.append(op.get_friendly_name())
    return names


def quantize_int8_mixed(
    ir_path: Path, output_xml: Path, calibration_feeds: Sequence[dict], intermediate_size: int
) -> dict:
    """Writes the int8 IR; returns how it was quantized."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(ir_path))
    kept = ffn_down_projections(model, intermediate_size)
    if not kept:
        raise ExportSettingsError(
            f"int8-mixed requires feed-forward layers reading intermediate_size={intermediate_size} features, "
            "found none in the graph"
        )
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws progress bars; polyrank logs the summary
        quantized = nncf.quantize(
            model,
            nncf.Dataset(list(calibration_feeds)),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration_feeds),
            ignored_scope=nncf.IgnoredScope(names=kept),
        )
    ov.save_model(quantized, str(output_xml), compress_to_fp16=False)
    fake_quantized = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    return {
        "method": QUANTIZED_METHOD,
        "nncf": nncf.__version__,
        "calibration_batches": len(calibration_feeds),
        "quantizers": fake_quantized,
        "kept_in_float": {"rule": f"MatMuls reading intermediate_size ({intermediate_size}) features", "layers": len(kept)},
        "overflow_fix": "first_layer_only",
    }
