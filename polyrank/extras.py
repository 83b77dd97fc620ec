"""Which optional parts of polyrank are installed. `pip install polyrank` is the light client
(tritonclient and numpy); `polyrank[export]` adds what exports and trains models (torch,
transformers, ONNX, OpenVINO), `polyrank[serve]` what runs the embedded server,
`polyrank[gateway]` the HTTP API, `polyrank[all]` all three. A command whose part is missing says so in one line."""

from __future__ import annotations

import importlib

PARTS = {
    "export": ("torch", "transformers", "tokenizers", "onnx", "onnxruntime", "openvino", "nncf"),
    "serve": ("pytriton", "tokenizers", "onnxruntime", "openvino"),
    "gateway": ("fastapi", "uvicorn", "prometheus_client", "tokenizers"),
}


class MissingExtra(RuntimeError):
    """A command needs an optional part of polyrank that is not installed."""


def require(*parts: str) -> None:
    for part in parts:
        missing = []
        for module in PARTS[part]:
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(module)
        if missing:
            raise MissingExtra(f"this command needs {', '.join(missing)}: pip install 'polyrank[{part}]'")
