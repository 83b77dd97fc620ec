import hashlib
import json
import subprocess
import sys

import pytest

from polyrank.export.build_repository import build_repository
from polyrank.export.config import ExportConfig
from polyrank.export.parity import ParityError, check_onnx_parity
from polyrank.export.samples import parity_pairs
from polyrank.export.tensorrt import cuda_device_count
from polyrank.export.to_onnx import load_checkpoint
from polyrank.model_repository.pair_encoding import PairEncoder
from tests.tiny_models import build_tiny_modernbert

from tests.conftest import TEST_MAX_BATCH_SIZE, TEST_MAX_LENGTH


def quiet(_):
    pass


def test_repository_holds_tokenizer_scorer_and_ensemble(tiny_repository):
    for model in ("tokenizer", "scorer", "rerank"):
        assert (tiny_repository / model / "config.pbtxt").exists()
        assert (tiny_repository / model / "1").is_dir()
    assert (tiny_repository / "scorer" / "1" / "model.onnx").exists()
    assert (tiny_repository / "tokenizer" / "1" / "pair_encoding.py").exists()
    scorer_config = (tiny_repository / "scorer" / "config.pbtxt").read_text()
    assert "dynamic_batching" in scorer_config
    assert scorer_config.count("allow_ragged_batch: true") == 2
    assert f"max_batch_size: {TEST_MAX_BATCH_SIZE}" in (tiny_repository / "rerank" / "config.pbtxt").read_text()
    assert f"max_batch_size: {4 * TEST_MAX_BATCH_SIZE} " in scorer_config
    assert "${" not in scorer_config + (tiny_repository / "rerank" / "config.pbtxt").read_text()
    assert "TOKEN_TYPE_IDS" not in scorer_config  # ModernBERT takes no token types


@pytest.mark.parametrize("model", ["scorer", "tokenizer"])
def test_manifest_records_source_hashes_and_parity(tiny_repository, tiny_modernbert_dir, model):
    version = tiny_repository / model / "1"
    manifest = json.loads((version / "manifest.json").read_text())

    assert manifest["source"]["model"] == str(tiny_modernbert_dir)
    assert manifest["source"]["architecture"] == "ModernBertForSequenceClassification"
    assert manifest["precision"] == "fp32"
    assert manifest["max_length"] == TEST_MAX_LENGTH
    assert manifest["tokenizer_template"] == "<bos> {query} <eos> {product} <eos>"
    assert manifest["parity"]["passed"] is True
    assert manifest["parity"]["max_abs_diff"] <= 1e-4
    files = {p.name for p in version.iterdir() if p.is_file() and p.name != "manifest.json"}
    assert set(manifest["artifacts"]) == files
    for name, digest in manifest["artifacts"].items():
        assert hashlib.sha256((version / name).read_bytes()).hexdigest() == digest


def test_bert_family_checkpoint_exports_with_token_type_ids(tiny_bert_dir, tmp_path):
    repository = build_repository(ExportConfig(model=str(tiny_bert_dir), output=tmp_path / "bert"), log=quiet)
    manifest = json.loads((repository / "scorer" / "1" / "manifest.json").read_text())
    assert manifest["inputs"] == ["INPUT_IDS", "ATTENTION_MASK", "TOKEN_TYPE_IDS"]
    assert manifest["tokenizer_template"] == "[CLS] {query} [SEP] {product} [SEP]"
    assert manifest["parity"]["max_abs_diff"] <= 1e-4
    assert "TOKEN_TYPE_IDS" in (repository / "rerank" / "config.pbtxt").read_text()
    assert (repository / "scorer" / "warmup" / "TOKEN_TYPE_IDS").exists()


def test_triton_gpu_target_uses_the_native_onnxruntime_backend(tiny_modernbert_dir, tmp_path):
    config = ExportConfig(model=str(tiny_modernbert_dir), output=tmp_path / "gpu", target="triton-gpu")
    repository = build_repository(config, log=quiet)
    scorer_config = (repository / "scorer" / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in scorer_config
    assert "KIND_GPU" in scorer_config
    assert not (repository / "scorer" / "1" / "model.py").exists()
    assert (repository / "scorer" / "1" / "model.onnx").exists()


def test_parity_gate_rejects_a_graph_from_other_weights(tiny_repository, tmp_path):
    other = load_checkpoint(str(build_tiny_modernbert(tmp_path / "other", seed=1)))
    encoder = PairEncoder(other.tokenizer, TEST_MAX_LENGTH)
    queries, documents = parity_pairs()
    with pytest.raises(ParityError, match="differs from PyTorch"):
        check_onnx_parity(other, encoder, tiny_repository / "scorer" / "1" / "model.onnx", queries, documents, 1e-4)


def test_existing_repository_is_kept_without_overwrite(tiny_modernbert_dir, tmp_path):
    output = tmp_path / "repo"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_repository(ExportConfig(model=str(tiny_modernbert_dir), output=output), log=quiet)
    assert (output / "keep.txt").read_text() == "mine"


def test_failed_export_leaves_no_repository(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        build_repository(ExportConfig(model=str(tmp_path / "missing"), output=tmp_path / "repo"), log=quiet)
    assert not (tmp_path / "repo").exists()
    assert not (tmp_path / "repo.partial").exists()


def test_multi_label_checkpoint_is_refused(tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    source = build_tiny_modernbert(tmp_path / "two-labels")
    config = AutoConfig.from_pretrained(source, num_labels=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(source)
    with pytest.raises(ValueError, match="num_labels=2"):
        build_repository(ExportConfig(model=str(source), output=tmp_path / "repo"), log=quiet)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("target", "tpu", "target must be one of"),
        ("max_length", 0, "max_length"),
        ("max_tokens_per_run", 10, "at least"),
        ("engine", "tvm", "engine must be one of"),
        ("profile_batch", (1, 8, 64), "apply to --engine tensorrt only"),
    ],
)
def test_export_config_rejects_bad_settings(field, value, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        ExportConfig(model="m", output=tmp_path, **{field: value})


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"target": "embedded"}, "needs --target triton-gpu"),
        ({"precision": "int8-dynamic"}, "TensorRT takes int8-static"),
        ({"profile_batch": (1, 32, 64)}, "must hold a full request of max_batch_size \\(256\\)"),
        ({"profile_length": (1, 300, 256)}, "min <= opt <= max"),
        ({"profile_length": (1, 64, 128)}, "at least max_length \\(256\\)"),
    ],
)
def test_tensorrt_settings_are_checked_before_any_work(settings, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        ExportConfig(model="m", output=tmp_path, **{"target": "triton-gpu", "engine": "tensorrt", **settings})


def test_tensorrt_profile_defaults_cover_a_full_request(tmp_path):
    config = ExportConfig(model="m", output=tmp_path, target="triton-gpu", engine="tensorrt", max_batch_size=64)
    assert config.profile_batch == (1, 32, 64) and config.profile_length == (1, 64, 256)


@pytest.mark.skipif(cuda_device_count() > 0, reason="this machine has an NVIDIA GPU: the no-GPU message cannot show")
def test_tensorrt_export_without_a_gpu_fails_with_one_line(tiny_modernbert_dir, tmp_path):
    output = tmp_path / "trt"
    command = [sys.executable, "-m", "polyrank.cli", "export", "--model", str(tiny_modernbert_dir), "--output",
               str(output), "--target", "triton-gpu", "--engine", "tensorrt", "--profile-batch", "1,16,256"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "polyrank export: error: --engine tensorrt needs an NVIDIA GPU and none was found "
        "(no CUDA driver or no device); build on a GPU machine, or use --engine onnxruntime"
    ]
    assert "loading" not in result.stdout  # refused before any export work
    assert not output.exists()


def test_manifest_names_the_onnxruntime_fusions(tiny_repository):
    manifest = json.loads((tiny_repository / "scorer" / "1" / "manifest.json").read_text())
    assert manifest["engine"] == "onnxruntime"
    assert manifest["onnxruntime_fusions"].get("SkipLayerNormalization", 0) > 0


def test_repository_is_reused_only_when_settings_and_code_match(tiny_modernbert_dir, tmp_path):
    from polyrank.export.build_repository import build_repository_unless_current

    config = ExportConfig(model=str(tiny_modernbert_dir), output=tmp_path / "repo")
    first = build_repository_unless_current(config, log=quiet)
    model = first / "scorer" / "1" / "model.onnx"
    built_at = model.stat().st_mtime_ns

    build_repository_unless_current(config, log=quiet)
    assert model.stat().st_mtime_ns == built_at  # same settings, same code: reused

    build_repository_unless_current(ExportConfig(model=str(tiny_modernbert_dir), output=tmp_path / "repo", max_length=64), log=quiet)
    assert json.loads((first / "scorer" / "1" / "manifest.json").read_text())["max_length"] == 64


def test_default_max_length_is_the_checkpoints_position_limit_when_below_256(tmp_path):
    from tests.tiny_models import build_tiny_bert

    short = build_tiny_bert(tmp_path / "bert-128-positions", max_positions=128)
    repository = build_repository(ExportConfig(model=str(short), output=tmp_path / "repo"), log=quiet)
    manifest = json.loads((repository / "scorer" / "1" / "manifest.json").read_text())
    assert manifest["max_length"] == 128
    assert 'key: "max_length" value: { string_value: "128" }' in (repository / "tokenizer" / "config.pbtxt").read_text()


def test_max_length_above_the_position_limit_is_refused_in_one_line(tiny_bert_dir, tmp_path):
    output = tmp_path / "repo"
    command = [sys.executable, "-m", "polyrank.cli", "export", "--model", str(tiny_bert_dir), "--output", str(output),
               "--max-length", "1024"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"polyrank export: error: --max-length 1024 is more than the 512 positions {tiny_bert_dir} supports; "
        "pass --max-length 512 or less"
    ]
    assert not output.exists() and not (tmp_path / "repo.partial").exists()
