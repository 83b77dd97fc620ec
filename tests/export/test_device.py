"""`polyrank export --device cuda`: the embedded server's scorer on a GPU (KIND_GPU instances,
ONNX Runtime's CUDA provider), the same pooling, sorting and token-capped runs as on the CPU.
Without a GPU and onnxruntime-gpu it must fail loudly, never fall back to the CPU; with one
(tests marked gpu) it must score like PyTorch within fp16's tolerance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polyrank.export.build_repository import build_repository
from polyrank.export.config import ExportConfig
from polyrank.export.errors import ExportSettingsError
from polyrank.server import EmbeddedTritonServer, ServerConfig, ServerError


def has_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.fixture(scope="module")
def cuda_repository(tiny_modernbert_dir, tmp_path_factory):
    config = ExportConfig(model=str(tiny_modernbert_dir), output=tmp_path_factory.mktemp("cuda") / "repository",
                          max_length=128, device="cuda", precision="fp16")
    return build_repository(config, log=lambda _: None)


def test_a_cuda_repository_asks_for_gpu_instances_and_the_cuda_provider_only(cuda_repository):
    config = (cuda_repository / "scorer" / "config.pbtxt").read_text()
    assert "kind: KIND_GPU" in config
    options = json.loads(config.split('key: "runtime_options" value: { string_value: \'')[1].split("'")[0])
    assert options["providers"] == ["CUDAExecutionProvider"]
    manifest = json.loads((cuda_repository / "scorer" / "1" / "manifest.json").read_text())
    assert (manifest["device"], manifest["precision"]) == ("cuda", "fp16")
    assert "kind: KIND_CPU" in (cuda_repository / "tokenizer" / "config.pbtxt").read_text()


@pytest.mark.skipif(has_cuda(), reason="this machine has a GPU and onnxruntime-gpu: the gpu test serves it")
def test_without_a_gpu_the_server_refuses_it_in_one_line_instead_of_using_the_cpu(cuda_repository, tmp_path):
    config = ServerConfig(repository=cuda_repository, grpc_port=0, http_port=0, metrics_port=0,
                          log_path=tmp_path / "tritonserver.log", startup_timeout_s=120)
    with pytest.raises(ServerError, match="GPU|CUDA") as refused:
        EmbeddedTritonServer(config).start()
    assert "scorer" in str(refused.value)


@pytest.mark.parametrize("settings, message", [
    ({"precision": "bf16"}, "--device cuda runs ONNX Runtime's CUDA provider: --precision fp32 or fp16, got bf16"),
    ({"target": "triton-gpu", "precision": "fp16"}, "--device applies to --target embedded"),
    ({"device": "tpu"}, "device must be one of cpu, cuda, got 'tpu'"),
])
def test_bad_device_settings_are_refused_in_one_line(settings, message, tmp_path):
    with pytest.raises(ExportSettingsError, match=message):
        ExportConfig(**{"model": "m", "output": tmp_path, "device": "cuda", **settings})


@pytest.mark.gpu
@pytest.mark.skipif(not has_cuda(), reason="needs an NVIDIA GPU and onnxruntime-gpu")
def test_on_a_gpu_it_scores_like_pytorch(cuda_repository, tiny_checkpoint):
    from polyrank.checkpoint import torch_scores
    from polyrank.client import RerankClient
    from polyrank.export.samples import SAMPLE_QUERIES
    from polyrank.model_repository.pair_encoding import PairEncoder

    encoder = PairEncoder(tiny_checkpoint.tokenizer, 128, tiny_checkpoint.pad_id)
    config = ServerConfig(repository=cuda_repository, grpc_port=0, http_port=0, metrics_port=0)
    with EmbeddedTritonServer(config) as server, RerankClient(server.grpc_url) as client:
        for request in SAMPLE_QUERIES:
            expected = torch_scores(tiny_checkpoint, encoder, [request.query] * len(request.products), list(request.products))
            assert np.abs(client.score(request.query, list(request.products)) - expected).max() < 2e-2
