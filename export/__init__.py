"""Checkpoint -> ONNX -> Triton model repository, with parity checks."""
