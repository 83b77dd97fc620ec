"""`pip install polyrank` is a light client: it validates and sends requests without torch,
tokenizers, ONNX Runtime or OpenVINO, and a command that needs them says which extra to install."""

import subprocess
import sys

HEAVY = ("torch", "tokenizers", "transformers", "onnx", "onnxruntime", "openvino", "nncf", "pytriton")

PROGRAM = f"""
import sys
for name in {HEAVY!r}:
    sys.modules[name] = None  # importing any of them now fails, as on a light install
from polyrank.client import InvalidRequestError, RerankClient
with RerankClient("127.0.0.1:1") as client:
    try:
        client.rerank("shoes", ["ok", "bad\\x00"])
    except InvalidRequestError as error:
        print("refused:", error)
from polyrank.cli import main
sys.exit(main(["export", "--model", "m", "--output", "out"]))
"""


def test_the_client_needs_no_model_libraries_and_export_names_its_extra():
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "refused: documents[1] contains a NUL character", result.stderr
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "polyrank export: error: this command needs torch, transformers, tokenizers, onnx, onnxruntime, openvino, "
        "nncf: pip install 'polyrank[export]'"
    ]
