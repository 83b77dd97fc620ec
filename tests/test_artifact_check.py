"""A model file that differs from its manifest.json is refused at load, with a message naming
the file; so is a config that lacks a parameter the model needs."""

import json
import shutil

import pytest

from polyrank.model_repository.artifacts import ArtifactError, ModelSetupError, checked_setup, verify_artifacts
from polyrank.server import EmbeddedTritonServer, ServerConfig, ServerError


@pytest.fixture
def repository_copy(tiny_repository, tmp_path):
    return shutil.copytree(tiny_repository, tmp_path / "repository")


def test_intact_repository_passes_the_check(repository_copy):
    for model in ("tokenizer", "scorer"):
        assert verify_artifacts(str(repository_copy / model / "1")) >= 3


@pytest.mark.parametrize(
    "model, artifact", [("scorer", "model.onnx"), ("tokenizer", "tokenizer.json"), ("scorer", "model.py")]
)
def test_tampered_file_is_named(repository_copy, model, artifact):
    path = repository_copy / model / "1" / artifact
    path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(ArtifactError, match=rf"{path} does not match manifest.json \(sha256 .*re-export"):
        verify_artifacts(str(path.parent))


def test_missing_file_is_named(repository_copy):
    path = repository_copy / "tokenizer" / "1" / "tokenizer.json"
    path.unlink()
    with pytest.raises(ArtifactError, match=rf"{path} is listed in manifest.json but missing"):
        verify_artifacts(str(path.parent))


def test_server_refuses_to_load_a_tampered_model(repository_copy, tmp_path):
    onnx = repository_copy / "scorer" / "1" / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside the weights
    onnx.write_bytes(bytes(data))
    config = ServerConfig(
        repository=repository_copy, grpc_port=0, http_port=0, metrics_port=0, startup_timeout_s=120,
        log_path=tmp_path / "tritonserver.log",
    )
    with pytest.raises(ServerError, match=r"scorer/1/model.onnx does not match manifest.json"):
        EmbeddedTritonServer(config).start()


def test_setup_check_returns_the_parameters_or_names_the_missing_ones(repository_copy):
    def args(parameters):
        config = {"parameters": {k: {"string_value": v} for k, v in parameters.items()}}
        return {"model_config": json.dumps(config), "model_repository": str(repository_copy / "tokenizer"),
                "model_version": "1"}

    config, parameters, version_dir = checked_setup(args({"max_length": "64", "pad_id": "0"}), "tokenizer",
                                                    ("max_length", "pad_id"))
    assert parameters == {"max_length": "64", "pad_id": "0"}
    assert version_dir == str(repository_copy / "tokenizer" / "1")
    with pytest.raises(ModelSetupError, match=r"tokenizer requires parameters \['pad_id'\] in config.pbtxt"):
        checked_setup(args({"max_length": "64"}), "tokenizer", ("max_length", "pad_id"))
    (repository_copy / "tokenizer" / "1" / "tokenizer.json").write_text("{}")
    with pytest.raises(ArtifactError, match="tokenizer.json does not match"):
        checked_setup(args({"max_length": "64", "pad_id": "0"}), "tokenizer", ("max_length", "pad_id"))
