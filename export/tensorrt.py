"""TensorRT plans for the triton-gpu target, with explicit optimisation profiles.

TensorRT 11 networks are strongly typed: precision comes from the ONNX graph itself
(fp32, the fp16 graph, or the int8-static QDQ graph), not from builder flags.
This path needs an NVIDIA GPU and the `tensorrt` wheel; without them it stops with one line.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from polyrank.export.errors import TensorRTUnavailable


def require_tensorrt():
    """Returns the tensorrt module, or raises TensorRTUnavailable saying what is missing."""
    gpus = cuda_device_count()
    if gpus == 0:
        raise TensorRTUnavailable(
            "--engine tensorrt needs an NVIDIA GPU and none was found (no CUDA driver or no device); "
            "build on a GPU machine, or use --engine onnxruntime"
        )
    try:
        import tensorrt
    except ImportError:
        raise TensorRTUnavailable(
            f"--engine tensorrt needs the TensorRT Python wheel ({gpus} GPU(s) found): pip install tensorrt"
        ) from None
    return tensorrt


def build_plan(onnx_path: Path, plan_path: Path, input_names, batch: tuple, length: tuple) -> dict:
    """Builds a serialized engine with one profile: (min, opt, max) pairs x (min, opt, max) tokens."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name in input_names:
        profile.set_shape(name, *[(b, n) for b, n in zip(batch, length)])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    plan_path.write_bytes(bytes(plan))
    return {"tensorrt": trt.__version__, "profile_batch": list(batch), "profile_length": list(length)}


def cuda_device_count() -> int:
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value
