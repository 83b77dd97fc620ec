"""Checkpoint -> Triton models: tokenizer, scorer, and the `rerank` ensemble (two-tower
students: see two_tower.py).

The models are assembled in a sibling staging folder and moved into place only after the
parity check and the quality gate passed, so a failed export never leaves a half-written
repository. With `add`, they join an existing repository beside the models already there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import platform
import shutil
import time
from importlib import resources
from pathlib import Path
from string import Template
from typing import Iterator

import numpy as np

import polyrank
from polyrank.checkpoint import Checkpoint, CheckpointError, load_checkpoint, position_limit, resolve_max_length
from polyrank.export.config import ExportConfig
from polyrank.export.errors import (
    DestinationExistsError,
    ExportSettingsError,
    QualityGateError,
    TemplateError,
)
from polyrank.export.gate import QualityGate, Trial, fastest_passing, format_table
from polyrank.export.optimize import fuse_for_onnxruntime
from polyrank.export.parity import check_onnx_parity
from polyrank.export.precisions import AUTO, ScorerFiles, auto_candidates, build_scorer_files, openvino_options
from polyrank.export.quality import EvalQuery, load_eval_set
from polyrank.export.samples import calibration_lists, parity_pairs
from polyrank.export.tensorrt import build_plan, require_tensorrt
from polyrank.export.to_onnx import export_onnx
from polyrank.model_repository.artifacts import sha256_of
from polyrank.model_repository.pair_encoding import PairEncoder
from polyrank.model_repository.runtimes import instruction_set
from polyrank.training.students import is_two_tower

TEMPLATES = resources.files("polyrank.model_repository")
MANIFEST = "manifest.json"


def cross_encoder_names(name: str) -> dict[str, str]:
    """Model names of a cross-encoder pipeline; the default pipeline keeps the plain names."""
    prefix = "" if name == "rerank" else f"{name}_"
    return {"rerank_name": name, "tokenizer_name": f"{prefix}tokenizer", "scorer_name": f"{prefix}scorer"}


def build_repository(config: ExportConfig, log=print) -> Path:
    """Exports `config.model` and writes the repository at `config.output`.

    Raises:
        DestinationExistsError: the output exists and `overwrite` is not set.
        ExportSettingsError: the checkpoint cannot be loaded, is not a one-logit cross-encoder,
            or `max_length` is above its position limit.
        (All are ExportError; settings errors are also ValueError.)
        ParityError: the fp32 ONNX graph scores differently from PyTorch.
        QualityGateError: the written precision ranks unlike PyTorch fp32 (unless `force`).
        PrecisionUnavailable: bf16 on a CPU without bf16 instructions (unless `allow_f32_fallback`).
        TensorRTUnavailable: `engine` is tensorrt and this machine has no GPU or no TensorRT.
    """
    if is_two_tower(config.model):
        from polyrank.export.two_tower import build_two_tower_repository

        return build_two_tower_repository(config, log)
    output = config.output
    names = cross_encoder_names(config.name)
    check_destination(config, list(names.values()))
    if config.engine == "tensorrt":
        require_tensorrt()  # before minutes of export work
    if config.precision == "bf16":
        openvino_options("bf16", config.allow_f32_fallback, log=lambda _: None)  # refuse before any work
    log(f"loading {config.model}")
    fingerprint = build_fingerprint(config)  # of what was asked, so a rerun with the same request matches
    try:
        checkpoint = load_checkpoint(config.model)
        limit = position_limit(checkpoint.model.config)
        config = dataclasses.replace(config, max_length=resolve_max_length(config.max_length, limit, config.model))
    except CheckpointError as error:
        raise ExportSettingsError(str(error)) from None
    encoder = PairEncoder(checkpoint.tokenizer, config.max_length, checkpoint.pad_id)

    with staged_repository(config) as staging:
        work = staging / WORK
        scorer_version = staging / names["scorer_name"] / "1"
        scorer_version.mkdir(parents=True)
        fp32_path = work / "fp32.onnx"
        parity, export_seconds = _export_checked(config, checkpoint, encoder, fp32_path, log)
        candidates = auto_candidates() if config.precision == AUTO else [config.precision]
        fused_path, fusions = fp32_path, {}
        if config.engine == "onnxruntime" and {"fp32", "fp16", "int8-dynamic"} & set(candidates):
            fused_path = work / "fused.onnx"
            fusions = fuse_for_onnxruntime(fp32_path, fused_path)
            log(f"ONNX Runtime fusions: {_describe_fusions(fusions)}")
        chosen, rows = _choose_scorer(config, checkpoint, encoder, candidates, fp32_path, fused_path, work, log)

        engine = None
        if config.engine == "tensorrt":
            log(f"building TensorRT plan: pairs {config.profile_batch}, tokens {config.profile_length} (min, opt, max)")
            engine = build_plan(
                chosen.files.model_path, scorer_version / "model.plan", checkpoint.input_names,
                config.profile_batch, config.profile_length,
            )
        else:
            for name, path in chosen.files.files.items():
                path.rename(scorer_version / name)
        _write_models(staging, config, checkpoint, encoder, names, chosen.files)
        export_facts = {
            "polyrank_version": polyrank.__version__,
            "created_unix": int(time.time()),
            "source": _describe_source(config.model, checkpoint),
            "target": config.target,
            "device": config.device,
            "precision": chosen.files.precision,
            "requested_precision": config.precision,
            "runtime": chosen.runtime,
            "instruction_set": instruction_set(),
            "quantization": chosen.files.conversion,
            "engine": config.engine,
            "onnxruntime_fusions": fusions if chosen.files.runtime == "onnxruntime" else {},
            "tensorrt": engine,
            "max_length": config.max_length,
            "tokenizer_template": tokenizer_template(encoder),
            "inputs": checkpoint.input_names,
            "opset": config.opset,
            "export_seconds": round(export_seconds, 1),
            "parity": parity.as_dict(),
            "quality_gate": {**chosen.verdict.report.as_dict(), "pairs_per_s": chosen.verdict.pairs_per_s},
            "precision_choice": rows if config.precision == AUTO else None,
            "exported_on": platform.platform(),
            "build_fingerprint": fingerprint,
        }
        for version_dir in (staging / names["tokenizer_name"] / "1", scorer_version):
            write_manifest(version_dir, export_facts)
    log(f"wrote Triton model repository {output}" + (f" (models {', '.join(names.values())})" if config.add else ""))
    return output


def _export_checked(config: ExportConfig, checkpoint: Checkpoint, encoder: PairEncoder, fp32_path: Path, log):
    """Exports the fp32 ONNX graph and checks it scores like PyTorch; returns (parity, seconds)."""
    log(f"exporting ONNX (opset {config.opset}, max length {config.max_length})")
    started = time.perf_counter()
    export_onnx(checkpoint, fp32_path, config.opset)
    export_seconds = time.perf_counter() - started
    queries, documents = parity_pairs()
    parity = check_onnx_parity(checkpoint, encoder, fp32_path, queries, documents, config.parity_tolerance)
    log(
        f"parity vs PyTorch on {parity.pairs} multilingual pairs: max |diff| "
        f"{parity.max_abs_diff:.2e}, same order per query: {parity.same_order_per_query}"
    )
    return parity, export_seconds


def _choose_scorer(config, checkpoint, encoder, candidates, fp32_path, fused_path, work, log) -> tuple[Trial, list]:
    """Builds each candidate precision, judges it with the quality gate and returns the one
    to serve (with auto: the fastest that passes) and the comparison rows."""
    eval_set = load_eval_set(config.eval)
    log(f"quality gate: scoring {sum(len(q.documents) for q in eval_set)} pairs ({len(eval_set)} lists) with PyTorch fp32")
    gate = QualityGate(checkpoint, encoder, eval_set, config.gate)
    calibration = calibration_pairs(config.calibration)
    trials, rows = [], []
    for precision in candidates:
        try:
            files = build_scorer_files(
                precision, fp32_path, fused_path, work / precision, encoder, calibration,
                getattr(checkpoint.model.config, "intermediate_size", None), config.allow_f32_fallback, log,
            )
            runtime = files.open(threads=config.serving.intra_op_threads)
        except Exception as error:  # with auto, a candidate that cannot be built is skipped and said why
            if config.precision != AUTO:
                raise
            rows.append({"precision": precision, "unavailable": str(error).strip().splitlines()[0]})
            log(f"{precision}: unavailable here: {rows[-1]['unavailable']}")
            continue
        trial = Trial(files, runtime.describe(), gate.judge(runtime))
        trials.append(trial)
        rows.append(trial.row())
        report = trial.verdict.report
        log(
            f"quality gate ({precision} vs PyTorch fp32, {report.queries} lists of {report.mean_candidates:g}): top-1 "
            f"fidelity {report.top1_fidelity:.3f}, top-10 fidelity {report.top10_fidelity:.3f}, clear-pair "
            f"concordance {report.clear_pair_concordance:.4f}{_label_figures(report)}; "
            f"{trial.verdict.pairs_per_s:.1f} pairs/s in-process ({trial.runtime.get('inference_precision', precision)})"
        )
    if config.precision == AUTO:
        log(format_table(rows))
        chosen = fastest_passing(trials)
        if chosen is None:
            failed = "; ".join(f"{t.files.precision}: {t.verdict.report.failures()[0]}" for t in trials)
            raise QualityGateError(f"no precision passed the quality gate on this machine ({failed})")
        log(f"chose {chosen.files.precision}: the fastest that passed the gate on this CPU ({instruction_set()})")
        return chosen, rows
    chosen = trials[0]
    failures = chosen.verdict.report.failures()
    if failures:
        message = f"{config.precision} model failed the quality gate: {'; '.join(failures)}"
        if not config.force:
            raise QualityGateError(message + " (pass --force to write it anyway)")
        log(f"WARNING: {message}; writing it anyway (--force)")
    return chosen, rows


def _label_figures(report) -> str:
    if not report.label_metrics:
        return ""
    reference, candidate = report.label_metrics["reference"], report.label_metrics["candidate"]
    return f", label NDCG@10 {candidate['ndcg@10']:.4f} (fp32 {reference['ndcg@10']:.4f})"


def calibration_pairs(path) -> tuple[list[str], list[str]]:
    """(queries, documents) to calibrate int8 on: the lists in `path`, or the built-in ones."""
    lists = load_eval_set(path) if path else [EvalQuery(q, d) for q, d in calibration_lists()]
    return [q.query for q in lists for _ in q.documents], [d for q in lists for d in q.documents]


def check_destination(config: ExportConfig, model_folders: list[str]) -> None:
    """Refuses, before any work, to replace what exists unless --overwrite says so."""
    output = config.output
    if not config.add:
        if output.exists() and any(output.iterdir()) and not config.overwrite:
            raise DestinationExistsError(f"{output} already exists; pass --overwrite to replace it, or --add to add models")
        return
    clashes = sorted(name for name in model_folders if (output / name).exists())
    if clashes and not config.overwrite:
        raise DestinationExistsError(
            f"{output} already has models {', '.join(clashes)}; pass --name to choose another name "
            "or --overwrite to replace them"
        )


WORK = "_work"  # scratch files inside the staging folder; no model can take the name


@contextlib.contextmanager
def staged_repository(config: ExportConfig) -> Iterator[Path]:
    """A sibling folder to assemble the models in (scratch files in its `_work/`). Only when the
    block succeeds are the models moved into place; the folder is removed either way, so a
    failed export never leaves a half-written repository."""
    staging = config.output.with_name(config.output.name + ".partial")
    remove(staging)
    (staging / WORK).mkdir(parents=True)
    try:
        yield staging
        remove(staging / WORK)
        install(staging, config)
    finally:
        remove(staging)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def install(staging: Path, config: ExportConfig) -> None:
    """Moves the staged models into place: the whole repository, or (with `add`) model by model."""
    output = config.output
    if not config.add:
        remove(output)
        staging.rename(output)
        return
    output.mkdir(parents=True, exist_ok=True)
    for model in sorted(p for p in staging.iterdir() if p.is_dir()):
        remove(output / model.name)
        model.rename(output / model.name)


def _describe_fusions(fusions: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in fusions.items()) or "none applied"


def _write_models(
    root: Path, config: ExportConfig, checkpoint: Checkpoint, encoder: PairEncoder, names: dict, scorer: ScorerFiles
):
    token_types = checkpoint.uses_token_type_ids
    warmup = encoder.encode_padded([WARMUP_QUERY], [WARMUP_PRODUCT])
    warmup_length = warmup.input_ids.shape[1]
    fields = {
        **serving_fields(config, encoder.pad_id, checkpoint.model.config.vocab_size),
        "warmup_length": warmup_length,
        "output_name": "SCORES",
        "output_dims": 1,
        **names,
        **token_type_fields(token_types, warmup_length),
    }

    tokenizer_dir = root / names["tokenizer_name"]
    (tokenizer_dir / "1").mkdir(parents=True)
    (tokenizer_dir / "1" / "tokenizer.json").write_text(checkpoint.tokenizer.to_str(), encoding="utf-8")
    copy_resource("tokenizer/model.py", tokenizer_dir / "1" / "model.py")
    copy_pair_encoding(tokenizer_dir / "1")
    for source in ("artifacts.py", "admission.py"):
        copy_resource(source, tokenizer_dir / "1" / source)
    render("tokenizer/config.pbtxt", tokenizer_dir / "config.pbtxt", fields)

    scorer_dir = root / names["scorer_name"]
    if config.target == "embedded":
        options = scorer.runtime_options
        if config.device == "cuda":  # gated on the CPU; served by the CUDA provider alone, never a CPU fallback
            options = {**options, "providers": ["CUDAExecutionProvider"]}
        write_python_scorer(scorer_dir, {**fields, **runtime_fields(scorer.runtime, options)})
    elif config.engine == "tensorrt":
        profile = {
            "profile_max_batch": config.profile_batch[2],
            "profile_batch": ", ".join(map(str, config.profile_batch)),
            "profile_length": ", ".join(map(str, config.profile_length)),
        }
        render("scorer/native_tensorrt.pbtxt", scorer_dir / "config.pbtxt", {**fields, **profile})
    else:
        render("scorer/native_onnxruntime.pbtxt", scorer_dir / "config.pbtxt", fields)
    write_warmup(scorer_dir / "warmup", warmup, token_types)

    rerank_dir = root / names["rerank_name"]
    (rerank_dir / "1").mkdir(parents=True)  # an ensemble still needs a version folder
    render("rerank/config.pbtxt", rerank_dir / "config.pbtxt", fields)


def write_python_scorer(folder: Path, fields: dict) -> None:
    """The embedded server's scorer (a cross-encoder's or a tower's): its code beside the
    model files already in `folder`/1, and its config."""
    for source in ("scorer/model.py", "runtimes.py", "artifacts.py", "admission.py", "scorer_queue.py"):
        copy_resource(source, folder / "1" / Path(source).name)
    render("scorer/config.pbtxt", folder / "config.pbtxt", fields)


def runtime_fields(runtime: str, options: dict) -> dict:
    return {"runtime": runtime, "runtime_options": json.dumps(options)}


def serving_fields(config: ExportConfig, pad_id: int, vocab_size: int) -> dict:
    """The template fields every pipeline shares: the serving settings and the model's facts."""
    return {
        **config.serving.template_fields(),
        "scorer_instance_kind": "KIND_GPU" if config.device == "cuda" else "KIND_CPU",
        "length_buckets": ",".join(map(str, config.padding_buckets())),
        "max_length": config.max_length,
        "pad_id": pad_id,
        "vocab_size": vocab_size,
        "warmup_batch": WARMUP_BATCH,
    }


WARMUP_QUERY = "wireless headphones"
WARMUP_PRODUCT = "Bluetooth over-ear headphones with noise cancelling"
WARMUP_BATCH = 4


def write_warmup(folder: Path, warmup, token_types: bool):
    """Triton's model_warmup reads the raw tensors of one sample (and sends batch_size copies)."""
    folder.mkdir(parents=True)
    tensors = {"INPUT_IDS": warmup.input_ids, "ATTENTION_MASK": warmup.attention_mask}
    if token_types:
        tensors["TOKEN_TYPE_IDS"] = warmup.token_type_ids
    for name, tensor in tensors.items():
        (folder / name).write_bytes(np.ascontiguousarray(tensor[0], dtype="<i8").tobytes())


def token_type_fields(enabled: bool, warmup_length: int) -> dict:
    if not enabled:
        return dict.fromkeys(
            (
                "token_type_output",
                "token_type_input",
                "token_type_input_native",
                "token_type_warmup",
                "token_type_output_map",
                "token_type_input_map",
            ),
            "",
        )
    return {
        "token_type_output": ',\n  { name: "TOKEN_TYPE_IDS" data_type: TYPE_INT64 dims: [ -1 ] }',
        "token_type_input": ',\n  { name: "TOKEN_TYPE_IDS" data_type: TYPE_INT64 dims: [ -1 ] allow_ragged_batch: true }',
        "token_type_input_native": ',\n  { name: "TOKEN_TYPE_IDS" data_type: TYPE_INT64 dims: [ -1 ] }',
        "token_type_warmup": '\n    inputs { key: "TOKEN_TYPE_IDS" value: { data_type: TYPE_INT64 dims: [ %d ] input_data_file: "TOKEN_TYPE_IDS" } }'
        % warmup_length,
        "token_type_output_map": '\n      output_map { key: "TOKEN_TYPE_IDS" value: "token_type_ids" }',
        "token_type_input_map": '\n      input_map { key: "TOKEN_TYPE_IDS" value: "token_type_ids" }',
    }


def render(template: str, destination: Path, fields: dict):
    """Fills a config.pbtxt template and checks the result is a valid Triton model config, so a
    missing field or a typo fails the export, not the server's load."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = TEMPLATES.joinpath(template).read_text(encoding="utf-8")
    try:
        rendered = Template(text).substitute(fields)
    except KeyError as error:
        raise TemplateError(f"template {template} needs field {error.args[0]!r}, which the exporter did not set") from None
    try:
        text_format.Parse(rendered, model_config_pb2.ModelConfig())
    except text_format.ParseError as error:
        raise TemplateError(f"{template} rendered to an invalid Triton model config: {error}") from None
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(rendered, encoding="utf-8")


def copy_pair_encoding(version_dir: Path) -> None:
    """The pair encoding and the text rule it applies, next to a model that encodes or checks texts."""
    for name in ("pair_encoding.py", "text_rule.py"):
        copy_resource(name, version_dir / name)


def copy_resource(name: str, destination: Path):
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(TEMPLATES.joinpath(name).read_bytes())


def tokenizer_template(encoder: PairEncoder) -> str:
    """The pair template in readable form, e.g. '<bos> {query} <eos> {product} <eos>'."""
    tokenizer = encoder.tokenizer
    encoding = tokenizer.post_process(
        tokenizer.encode("q", add_special_tokens=False), tokenizer.encode("p", add_special_tokens=False)
    )
    parts, texts = [], iter(("{query}", "{product}"))
    for token, special in zip(encoding.tokens, encoding.special_tokens_mask):
        if special:
            parts.append(token)
        elif not parts or parts[-1] not in ("{query}", "{product}"):
            parts.append(next(texts))
    return " ".join(parts)


def write_manifest(version_dir: Path, facts: dict) -> dict:
    """Writes manifest.json: the export facts plus the sha256 of every artifact beside it
    (the served models check them at load: model_repository/artifacts.py)."""
    artifacts = {
        str(path.relative_to(version_dir)): sha256_of(str(path))
        for path in sorted(version_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST and "__pycache__" not in path.parts
    }
    manifest = {**facts, "artifacts": artifacts}
    (version_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def build_repository_unless_current(config: ExportConfig, log=print) -> Path:
    """Reuses `config.output` if it was built with the same settings and the same Triton-side
    code (its manifest's build fingerprint matches); otherwise (re)builds it."""
    try:
        scorer = cross_encoder_names(config.name)["scorer_name"]
        manifest = json.loads((config.output / scorer / "1" / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    if manifest.get("build_fingerprint") == build_fingerprint(config):
        log(f"reusing model repository {config.output} (exported from {config.model})")
        return config.output
    return build_repository(dataclasses.replace(config, overwrite=True), log)


def build_fingerprint(config: ExportConfig) -> str:
    """sha256 of the export settings (not where they are written), of the checkpoint's files
    (a model retrained into the same folder is a new model) and of every model file and config
    template a repository is made from."""
    settings = dataclasses.replace(config, output=Path("."), overwrite=False)
    digest = hashlib.sha256(f"{polyrank.__version__} {settings!r}".encode())
    for path in _checkpoint_files(config.model):
        digest.update(f"{path.name} {sha256_of(str(path))}".encode())
    for source in repository_sources():
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _checkpoint_files(model: str) -> list[Path]:
    """The files of a local checkpoint (a hub id has none here: its name stands for it)."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def repository_sources() -> list:
    """Every file of the Triton side: the model code and config templates in model_repository/."""
    sources = []
    for entry in sorted(TEMPLATES.iterdir(), key=lambda e: e.name):
        if entry.is_file() and entry.name.endswith(".py") and entry.name != "__init__.py":
            sources.append(entry)
        elif entry.is_dir() and entry.name != "__pycache__":
            sources += sorted((f for f in entry.iterdir() if f.name == "model.py" or f.suffix == ".pbtxt"), key=lambda f: f.name)
    return sources


def _describe_source(model: str, checkpoint: Checkpoint) -> dict:
    config = checkpoint.model.config
    source = {
        "model": model,
        "architecture": (config.architectures or [type(checkpoint.model).__name__])[0],
        "model_type": config.model_type,
        "parameters": sum(p.numel() for p in checkpoint.model.parameters()),
    }
    if Path(model).is_dir():
        source["path"] = str(Path(model).resolve())
    return source
