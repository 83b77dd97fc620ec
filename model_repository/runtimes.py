"""The scorer's runtimes: what turns a batch of token ids into the graph's one output.

The scorer's loop (pool every queued request's pairs, sort by length, token-capped runs,
scatter back) is written once, in scorer/model.py; a runtime is the small part it calls per
run. Export, its quality gate and the benchmarks open the very same runtimes, so what the
gate judges is what the server runs.

- onnxruntime: ONNX Runtime's CPU provider on `model.onnx` (fp32, fp16, int8 graphs).
- openvino: OpenVINO on `model.xml` / `model.bin`, with an inference precision hint: "bf16"
  (AVX-512 BF16 or AMX CPUs) or "f32". A bf16 request on a CPU that cannot run it fails in
  one line unless a fallback to f32 was allowed at export: never a silent downgrade.
- int8 models quantized and gated on a CPU with VNNI (or Arm) fail in one line on an x86 CPU
  without it, where their int8 kernels can saturate: the gate did not judge what would run.

Copied next to the scorer's model.py when a repository is built; numpy and the runtime's own
library only.
"""

import collections

import numpy as np

RUNTIMES = ("onnxruntime", "openvino")
MODEL_FILES = {"onnxruntime": "model.onnx", "openvino": "model.xml"}
OPENVINO_PRECISIONS = ("bf16", "f32")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # u8 x s8 sums in 32 bits


class RuntimeSetupError(RuntimeError):
    """The runtime cannot run the model as the repository asks (library, provider, CPU)."""


def cpu_flags() -> set:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def instruction_set(flags=None) -> str:
    """The widest vector / matrix instructions inference can use here, e.g.
    'AVX-512 VNNI + AVX-512 BF16', 'AMX', 'AVX2'. Benchmarks and manifests record it."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "AMX (bf16, int8) + AVX-512"
    if "avx512f" in flags:
        extras = [name for flag, name in (("avx512_vnni", "VNNI"), ("avx512_bf16", "BF16")) if flag in flags]
        return "AVX-512" + "".join(f" + AVX-512 {name}" for name in extras)
    if "avx2" in flags:
        return "AVX2" + (" + AVX-VNNI" if "avx_vnni" in flags else "")
    if {"asimd", "neon"} & flags:
        return "Arm NEON" + (" + BF16" if "bf16" in flags else "")
    return "baseline"


def has_bf16(flags=None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def int8_saturates(flags=None) -> bool:
    """Whether int8 kernels with full-range (8-bit) weights can saturate on this CPU: x86
    without VNNI or AMX, whose VPMADDUBSW adds two u8 x s8 products into 16 bits."""
    flags = cpu_flags() if flags is None else flags
    return "sse2" in flags and not any(flag in flags for flag in INT8_DOT_PRODUCT_FLAGS)


def open_runtime(runtime: str, model_path: str, *, threads: int, int8_needs_vnni: bool = False, **options):
    """The runtime named by a repository's config, loaded on `model_path`.

    Options: onnxruntime takes `providers` (a list, tried in order, all required);
    openvino takes `precision` ("bf16" or "f32") and `allow_f32_fallback`; either takes
    `int8_needs_vnni` (an int8 model quantized and gated on a CPU with VNNI or Arm).
    """
    if int8_needs_vnni and int8_saturates():
        raise RuntimeSetupError(
            f"this int8 model was quantized and gated on a CPU with VNNI (or Arm); on this one ({instruction_set()}) "
            "its int8 kernels can saturate, so its scores are not what the gate judged: re-export it on this CPU"
        )
    if runtime == "onnxruntime":
        return OnnxRuntime(model_path, threads=threads, **options)
    if runtime == "openvino":
        return OpenVino(model_path, threads=threads, **options)
    raise RuntimeSetupError(f"scorer requires runtime one of {', '.join(RUNTIMES)}, got {runtime!r}")


class OnnxRuntime:
    def __init__(self, model_path: str, *, threads: int, providers=("CPUExecutionProvider",)):
        import onnxruntime as ort

        available = ort.get_available_providers()
        unavailable = [p for p in providers if p not in available]
        if unavailable:
            raise RuntimeSetupError(
                f"scorer requires execution providers {unavailable}, got only {available} in this onnxruntime build"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model_path, options, providers=list(providers))
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name
        self.version = ort.__version__

    def run(self, feed: dict) -> np.ndarray:
        return self.session.run([self.output_name], feed)[0]

    def describe(self) -> dict:
        return {"runtime": "onnxruntime", "version": self.version, "providers": self.session.get_providers()}


class OpenVino:
    def __init__(self, model_path: str, *, threads: int, precision: str = "f32", allow_f32_fallback: bool = False):
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeSetupError(
                "scorer requires the openvino package for runtime openvino; pip install 'polyrank[openvino]'"
            ) from None
        if precision not in OPENVINO_PRECISIONS:
            raise RuntimeSetupError(f"scorer requires inference_precision one of {OPENVINO_PRECISIONS}, got {precision!r}")
        self.requested_precision = precision
        self.compiled = ov.Core().compile_model(
            model_path,
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": precision,
                "INFERENCE_NUM_THREADS": threads,
                "NUM_STREAMS": 1,  # one run at a time uses every thread: latency, not streams
                "PERFORMANCE_HINT": "LATENCY",
            },
        )
        self.precision = _precision_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        if precision == "bf16" and self.precision != "bf16" and not allow_f32_fallback:
            raise RuntimeSetupError(
                f"bf16 inference needs a CPU with AVX-512 BF16 or AMX; this one ({instruction_set()}) runs "
                f"OpenVINO in {self.precision}; re-export with --precision fp32, or with --allow-f32-fallback"
            )
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output = self.compiled.outputs[0]
        self.version = ov.get_version()

    def run(self, feed: dict) -> np.ndarray:
        result = self.request.infer(feed, share_outputs=False)
        return np.asarray(result[self.output], dtype=np.float32)

    def describe(self) -> dict:
        """What the compiled model really runs: its precision and, per layer type, how many
        layers run in which precision (e.g. {"FullyConnected": {"bf16": 44}})."""
        layers = collections.defaultdict(collections.Counter)
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            layers[info["layerType"].astype(str)][info["runtimePrecision"].astype(str)] += 1
        matmuls = {kind: dict(layers[kind]) for kind in ("FullyConnected", "MatMul") if kind in layers}
        return {
            "runtime": "openvino",
            "version": self.version,
            "requested_precision": self.requested_precision,
            "inference_precision": self.precision,
            "matmul_layers_by_precision": matmuls,
        }


def _precision_name(element_type) -> str:
    """OpenVINO's element type as the hint spells it ("bf16", "f32", "f16")."""
    return element_type.to_string()
