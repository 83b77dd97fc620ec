import hashlib
import json
import subprocess
import sys

import pytest

from polyrank.export.build_repository import build_repository
from polyrank.export.config import ExportConfig, ServingConfig
from polyrank.export.errors import ParityError
from polyrank.export.parity import check_onnx_parity
from polyrank.export.samples import parity_pairs
from polyrank.export.tensorrt import cuda_device_count
from polyrank.checkpoint import load_checkpoint
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
        ("serving", {"max_tokens_per_run": 10}, "at least"),
        ("serving", {"scorer_queue_delay_us": -1}, "scorer_queue_delay_us must be 0 or a positive integer"),
        ("engine", "tvm", "engine must be one of"),
        ("profile_batch", (1, 8, 64), "apply to --engine tensorrt only"),
    ],
)
def test_export_config_rejects_bad_settings(field, value, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        if field == "serving":
            value = ServingConfig(**value)
        ExportConfig(model="m", output=tmp_path, **{field: value})


def test_every_serving_setting_is_a_template_field_and_the_cli_defaults_match():
    """A serving setting is added in one place (ServingConfig): each one must reach a template,
    and the export command's defaults must be the dataclasses' own."""
    import argparse

    from polyrank.export.build_repository import repository_sources
    from polyrank.export.cli import add_export_arguments, config_from_arguments

    from dataclasses import fields

    templates = "".join(p.read_text() for p in repository_sources() if p.name == "config.pbtxt")
    reaches_templates_as = {"merge_requests": "merged_batch_size", "queue_timeout_s": "queue_timeout_us",
                            "batch_queue_timeout_s": "batch_queue_timeout_us"}
    for setting in fields(ServingConfig):
        placeholder = reaches_templates_as.get(setting.name, setting.name)
        assert "${" + placeholder + "}" in templates, f"serving setting {setting.name} reaches no template"
    parser = argparse.ArgumentParser()
    add_export_arguments(parser)
    defaults = config_from_arguments(parser.parse_args(["--model", "m", "--output", "out"]))
    assert defaults == ExportConfig(model="m", output="out")


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
    config = ExportConfig(model="m", output=tmp_path, target="triton-gpu", engine="tensorrt", serving=ServingConfig(max_batch_size=64))
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


def test_templates_render_strictly_into_valid_triton_configs(tmp_path):
    """A placeholder the exporter forgot, or a value that makes the config invalid, fails the
    export with a line naming it, instead of failing the server's load later."""
    import re

    from polyrank.export.build_repository import TEMPLATES, render
    from polyrank.export.errors import TemplateError

    template = "rerank/config.pbtxt"
    with pytest.raises(TemplateError, match=rf"template {template} needs field '\w+', which the exporter did not set"):
        render(template, tmp_path / "config.pbtxt", {})
    fields = dict.fromkeys(re.findall(r"\$\{(\w+)\}", TEMPLATES.joinpath(template).read_text()), "x")
    fields.update(max_batch_size="many")  # not an integer
    with pytest.raises(TemplateError, match=rf"{template} rendered to an invalid Triton model config"):
        render(template, tmp_path / "config.pbtxt", fields)
    assert not (tmp_path / "config.pbtxt").exists()


def test_a_model_retrained_into_the_same_folder_is_exported_again(tiny_modernbert_dir, tmp_path):
    """The reuse check covers the checkpoint's files: yesterday's repository is not served
    for today's weights."""
    import shutil

    from polyrank.export.build_repository import build_repository_unless_current
    from tests.tiny_models import sharpened

    model = shutil.copytree(tiny_modernbert_dir, tmp_path / "model")
    config = ExportConfig(model=str(model), output=tmp_path / "repo", max_length=64)
    scorer = build_repository_unless_current(config, log=quiet) / "scorer" / "1" / "model.onnx"
    first = scorer.read_bytes()
    sharpened(model, model, factor=2.0)  # "retrained": new weights in the same folder
    build_repository_unless_current(config, log=quiet)
    assert scorer.read_bytes() != first


def test_each_python_model_requires_exactly_the_parameters_its_template_sets():
    """A parameter the template sets but the model never reads, or one it requires that no
    template sets, is a setting that lives in two places."""
    import ast
    import re

    from polyrank.export.build_repository import TEMPLATES

    models = {
        "scorer": ["scorer/config.pbtxt"],
        "tokenizer": ["tokenizer/config.pbtxt", "tokenizer/texts.pbtxt"],
        "two_tower_rerank": ["two_tower_rerank/config.pbtxt"],
    }
    for model, templates in models.items():
        source = TEMPLATES.joinpath(f"{model}/model.py").read_text()
        assigned = {
            node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(source).body
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "").endswith("_PARAMETERS")
        }
        required, optional = set(assigned["REQUIRED_PARAMETERS"]), set(assigned.get("OPTIONAL_PARAMETERS", ()))
        optional_set = set()
        for template in templates:
            set_there = re.findall(r'parameters \{ key: "(\w+)"', TEMPLATES.joinpath(template).read_text())
            assert len(set_there) == len(set(set_there)), (model, template)
            assert required <= set(set_there) <= required | optional, (model, template)
            if set(set_there) & optional:  # optional ones come all together
                assert optional <= set(set_there), (model, template)
            optional_set |= set(set_there) & optional
        assert optional_set == optional, (model, "an optional parameter no template sets")
