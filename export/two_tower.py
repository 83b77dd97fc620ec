"""Two-tower student -> Triton models: a text tokenizer, the tower encoder(s), the embed
ensembles, and a rerank model with the cross-encoder's tensors (QUERY, DOCUMENTS -> SCORES).

For a student named N (`--name`, default "two_tower"):
  N                    rerank: QUERY + DOCUMENTS (or DOCUMENT_EMBEDDINGS) -> SCORES
  N_embed              TEXTS -> product EMBEDDINGS (compute a catalogue's ahead of time)
  N_query_embed        TEXTS -> query EMBEDDINGS (the same as N_embed when the towers share weights)
  N_tokenizer, N_encoder (and N_query_encoder when the towers are separate)
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

import polyrank
from polyrank.checkpoint import CheckpointError, position_limit, resolve_max_length
from polyrank.export import build_repository as repository
from polyrank.export.config import ExportConfig
from polyrank.export.errors import ExportSettingsError
from polyrank.export.parity import ParityError, onnx_session
from polyrank.export.samples import parity_pairs
from polyrank.model_repository.pair_encoding import PairEncoder
from polyrank.training.students import TwoTower, load_two_tower

def model_names(name: str, shared: bool) -> dict[str, str]:
    names = {
        "rerank_name": name,
        "embed_name": f"{name}_embed",
        "query_embed_name": f"{name}_embed" if shared else f"{name}_query_embed",
        "tokenizer_name": f"{name}_tokenizer",
        "encoder_name": f"{name}_encoder",
    }
    if not shared:
        names["query_encoder_name"] = f"{name}_query_encoder"
    return names


def build_two_tower_repository(config: ExportConfig, log=print) -> Path:
    """Exports a two-tower student (fp32, embedded target) into `config.output`."""
    if config.precision != "fp32" or config.target != "embedded":
        raise ExportSettingsError(
            f"two-tower students export as fp32 for the embedded server for now, "
            f"got precision {config.precision}, target {config.target}"
        )
    log(f"loading two-tower student {config.model}")
    model, settings = load_two_tower(Path(config.model))
    dim = config.embedding_dim or model.dim
    if dim not in (model.dim, model.reduced_dim):
        raise ExportSettingsError(
            f"--embedding-dim must be the student's full ({model.dim}) or reduced ({model.reduced_dim}) size, got {dim}"
        )
    try:
        max_length = resolve_max_length(config.max_length, position_limit(model.query_encoder.config), config.model)
    except CheckpointError as error:
        raise ExportSettingsError(str(error)) from None
    config = dataclasses.replace(config, max_length=max_length)
    tokenizer = Tokenizer.from_file(str(Path(config.model) / "query_encoder" / "tokenizer.json"))
    encoder = PairEncoder(tokenizer, config.max_length, model.query_encoder.config.pad_token_id)
    name = "two_tower" if config.name == "rerank" else config.name
    names = model_names(name, model.shared)
    repository.check_destination(config, list(_model_folders(names)))

    with repository.staged_repository(config) as staging:
        towers = {"encoder_name": "product"} | ({} if model.shared else {"query_encoder_name": "query"})
        parity = {}
        started = time.perf_counter()
        for key, tower in towers.items():
            version = staging / names[key] / "1"
            version.mkdir(parents=True)
            export_tower(model, tower, dim, version / "model.onnx", config.opset)
            parity[tower] = check_tower_parity(model, tower, dim, encoder, version / "model.onnx")
            if parity[tower] > config.parity_tolerance:
                raise ParityError(f"{tower} tower: ONNX embeddings differ from PyTorch by {parity[tower]:.2e}")
            log(f"{tower} tower: ONNX vs PyTorch max |diff| {parity[tower]:.2e}")
        fields = _fields(config, names, model, encoder, dim)
        _write_models(staging, fields, names, towers, encoder, tokenizer)
        facts = {
            "polyrank_version": polyrank.__version__,
            "created_unix": int(time.time()),
            "source": {"model": config.model, "kind": "two-tower", **settings},
            "embedding_dim": dim,
            "max_length": config.max_length,
            "target": config.target,
            "precision": config.precision,
            "models": names,
            "export_seconds": round(time.perf_counter() - started, 1),
            "parity_max_abs_diff": parity,
        }
        for version in sorted(staging.glob("*/1")):
            repository.write_manifest(version, facts)
    log(f"wrote two-tower models {', '.join(sorted(_model_folders(names)))} to {config.output}")
    return config.output


class _Tower(torch.nn.Module):
    def __init__(self, model: TwoTower, tower: str, dim: int):
        super().__init__()
        self.model, self.tower, self.dim = model, tower, dim

    def forward(self, input_ids, attention_mask):
        return self.model.embed(self.tower, input_ids, attention_mask, self.dim)


def export_tower(model: TwoTower, tower: str, dim: int, path: Path, opset: int) -> None:
    """INPUT_IDS, ATTENTION_MASK -> EMBEDDINGS [texts, dim], L2-normalised."""
    example = torch.full((2, 40), 5, dtype=torch.long)
    mask = torch.ones_like(example)
    mask[1, 30:] = 0
    axes = {"INPUT_IDS": {0: "texts", 1: "tokens"}, "ATTENTION_MASK": {0: "texts", 1: "tokens"}, "EMBEDDINGS": {0: "texts"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Tower(model, tower, dim).eval(), (example, mask), str(path), input_names=["INPUT_IDS", "ATTENTION_MASK"],
            output_names=["EMBEDDINGS"], dynamic_axes=axes, opset_version=opset, dynamo=False,
        )


def check_tower_parity(model: TwoTower, tower: str, dim: int, encoder: PairEncoder, path: Path) -> float:
    """Largest |ONNX - PyTorch| embedding component over the multilingual sample texts."""
    queries, documents = parity_pairs()
    texts = list(dict.fromkeys(queries)) + documents
    with torch.no_grad():
        expected = model.embed_texts(encoder, tower, texts, dim).numpy()
    feed = encoder.encode_texts_padded(texts).feed(["INPUT_IDS", "ATTENTION_MASK"])
    actual = onnx_session(path).run(["EMBEDDINGS"], feed)[0]
    return float(np.abs(actual - expected).max())


def _fields(config: ExportConfig, names: dict, model: TwoTower, encoder: PairEncoder, dim: int) -> dict:
    return {
        **names,
        **repository.serving_fields(config, encoder.pad_id, model.query_encoder.config.vocab_size),
        "embedding_dim": dim,
        "output_name": "EMBEDDINGS",
        "output_dims": dim,
        "scale": repr(model.scale.item()),
        "bias": repr(model.bias.item()),
        **repository.token_type_fields(False, 0),
        **repository.runtime_fields("onnxruntime", {"providers": ["CPUExecutionProvider"]}),
    }


def _write_models(staging: Path, fields: dict, names: dict, towers: dict, encoder: PairEncoder, tokenizer: Tokenizer):
    tokenizer_version = staging / names["tokenizer_name"] / "1"
    tokenizer_version.mkdir(parents=True)
    (tokenizer_version / "tokenizer.json").write_text(tokenizer.to_str(), encoding="utf-8")
    repository.copy_resource("tokenizer/model.py", tokenizer_version / "model.py")
    repository.copy_pair_encoding(tokenizer_version)
    for source in ("artifacts.py", "admission.py"):
        repository.copy_resource(source, tokenizer_version / source)
    repository.render("tokenizer/texts.pbtxt", staging / names["tokenizer_name"] / "config.pbtxt", fields)

    warmup = encoder.encode_texts_padded([repository.WARMUP_PRODUCT])
    for key in towers:
        folder = staging / names[key]
        tower_fields = {**fields, "scorer_name": names[key], "warmup_length": warmup.input_ids.shape[1]}
        repository.write_python_scorer(folder, tower_fields)
        repository.write_warmup(folder / "warmup", warmup, token_types=False)

    embeds = {"embed_name": "encoder_name"}
    if "query_encoder_name" in names:
        embeds["query_embed_name"] = "query_encoder_name"
    for embed_key, encoder_key in embeds.items():
        (staging / names[embed_key] / "1").mkdir(parents=True)
        embed_fields = {**fields, "embed_name": names[embed_key], "encoder_name": names[encoder_key]}
        repository.render("embed/config.pbtxt", staging / names[embed_key] / "config.pbtxt", embed_fields)

    rerank = staging / names["rerank_name"]
    repository.copy_resource("two_tower_rerank/model.py", rerank / "1" / "model.py")
    repository.copy_resource("artifacts.py", rerank / "1" / "artifacts.py")
    repository.copy_pair_encoding(rerank / "1")
    repository.render("two_tower_rerank/config.pbtxt", rerank / "config.pbtxt", fields)


def _model_folders(names: dict) -> set[str]:
    return set(names.values())
