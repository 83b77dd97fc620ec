"""Graph rewrites after export: ONNX Runtime's transformer fusions and fp16 conversion.

Fusions use ONNX Runtime's offline transformer optimizer with the BERT rules and no
hardware-specific level (opt_level 0), so the graph runs on the CPU and CUDA providers
alike. On ModernBERT, LayerNorm (+ residual) and GELU fuse; its attention does not
(rotary embeddings and the local-window mask break the Attention pattern), so attention
stays as MatMul/Softmax. Fused contrib ops cannot go to TensorRT, whose path skips this.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx

# Normalisation and softmax keep fp32 arithmetic: their reductions lose the most in fp16.
FP16_KEPT_FP32 = [
    "LayerNormalization",
    "SkipLayerNormalization",
    "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "Softmax",
]


def fuse_for_onnxruntime(source: Path, output: Path) -> dict[str, int]:
    """Writes the fused graph; returns how many of each fused operator it holds."""
    from onnxruntime.transformers.optimizer import optimize_model

    with quiet_onnxruntime_tools():
        optimized = optimize_model(str(source), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
        fusions = {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}
        optimized.save_model_to_file(str(output))
    return fusions


def convert_to_fp16(source: Path, output: Path) -> dict:
    """fp16 weights and arithmetic, fp32 inputs/outputs and normalisation; returns what was kept."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(source)))
    with quiet_onnxruntime_tools():  # symbolic shapes: plain ONNX inference misses RoPE's types
        model.convert_float_to_float16(keep_io_types=True, op_block_list=FP16_KEPT_FP32, use_symbolic_shape_infer=True)
    model.save_model_to_file(str(output))
    return {"method": "fp16", "kept_fp32": FP16_KEPT_FP32, "io": "fp32"}


class quiet_onnxruntime_tools:
    """ONNX Runtime's optimizer and quantizer log every rule and untyped tensor they meet;
    the summary is ours to print."""

    def __enter__(self):
        self._previous = logging.root.manager.disable
        logging.disable(logging.WARNING)

    def __exit__(self, *exc):
        logging.disable(self._previous)
