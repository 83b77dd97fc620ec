"""Load a cross-encoder checkpoint and export it to ONNX with dynamic batch and sequence axes."""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path

from typing import Optional

import torch
from tokenizers import Tokenizer

from polyrank.export.config import DEFAULT_MAX_LENGTH

# RoBERTa-style models number positions from pad_token_id + 1, so 514 embeddings hold 512 tokens.
POSITION_OFFSET_MODELS = ("roberta", "xlm-roberta", "camembert", "xlm-roberta-xl", "mpnet")


@dataclass
class Checkpoint:
    """A loaded cross-encoder: the PyTorch model and its own tokenizer."""

    source: str
    model: torch.nn.Module
    tokenizer: Tokenizer

    @property
    def uses_token_type_ids(self) -> bool:
        accepts = "token_type_ids" in inspect.signature(self.model.forward).parameters
        return accepts and getattr(self.model.config, "type_vocab_size", 0) > 1

    @property
    def input_names(self) -> list[str]:
        names = ["INPUT_IDS", "ATTENTION_MASK"]
        return names + ["TOKEN_TYPE_IDS"] if self.uses_token_type_ids else names

    @property
    def pad_id(self) -> int:
        pad = getattr(self.model.config, "pad_token_id", None)
        return 0 if pad is None else int(pad)


def load_checkpoint(model: str) -> Checkpoint:
    """Loads a sequence-classification cross-encoder from a local directory or hub id.

    Raises:
        ValueError: it cannot be loaded, or it has more than one output logit.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if model.startswith(("/", ".", "~")) and not Path(model).expanduser().is_dir():
        raise ValueError(f"checkpoint directory {model} does not exist")
    model = str(Path(model).expanduser()) if model.startswith("~") else model
    try:
        hf_model = AutoModelForSequenceClassification.from_pretrained(
            model, dtype=torch.float32, attn_implementation="sdpa"
        )
        hf_tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as error:
        hint = "" if Path(model).is_dir() else " (not a local directory; is the model hub reachable?)"
        raise ValueError(f"cannot load cross-encoder {model!r}{hint}: {_first_line(error)}") from None
    if hf_model.config.num_labels != 1:
        raise ValueError(
            f"polyrank requires a cross-encoder with one output logit (num_labels=1), "
            f"got num_labels={hf_model.config.num_labels} in {model!r}"
        )
    if not getattr(hf_tokenizer, "is_fast", False):
        raise ValueError(f"polyrank requires a fast (tokenizers) tokenizer, got {type(hf_tokenizer).__name__}")
    # A private copy: the pair encoder changes truncation and padding settings.
    tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    return Checkpoint(model, hf_model.eval(), tokenizer)


def position_limit(config) -> Optional[int]:
    """The longest input a transformers config's position embeddings cover (None: no limit)."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return None
    if config.model_type in POSITION_OFFSET_MODELS:  # positions start after the padding index
        limit -= (getattr(config, "pad_token_id", None) or 0) + 1
    return int(limit)


def resolve_max_length(requested: Optional[int], limit: Optional[int], source: str) -> int:
    """The max length to export with: `requested`, or min(256, the checkpoint's limit).

    Raises:
        ValueError: `requested` is above the checkpoint's position limit.
    """
    if requested is None:
        return DEFAULT_MAX_LENGTH if limit is None else min(DEFAULT_MAX_LENGTH, limit)
    if limit is not None and requested > limit:
        raise ValueError(
            f"--max-length {requested} is more than the {limit} positions {source} supports; "
            f"pass --max-length {limit} or less"
        )
    return requested


def export_onnx(checkpoint: Checkpoint, path: Path, opset: int) -> None:
    """Writes the scoring graph: INPUT_IDS, ATTENTION_MASK[, TOKEN_TYPE_IDS] -> SCORES [batch, 1]."""

    names = checkpoint.input_names
    scorer = _LogitScorer(checkpoint.model, names).eval()  # export restores this mode afterwards
    # A traced length above ModernBERT's local window half-width and below max_length.
    example = torch.full((2, 80), 5, dtype=torch.long)
    mask = torch.ones_like(example)
    mask[1, 60:] = 0
    example_inputs = (example, mask) + ((torch.zeros_like(example),) if len(names) == 3 else ())
    axes = {name: {0: "pairs", 1: "tokens"} for name in names}
    axes["SCORES"] = {0: "pairs"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side branches
        torch.onnx.export(
            scorer,
            example_inputs,
            str(path),
            input_names=names,
            output_names=["SCORES"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


class _LogitScorer(torch.nn.Module):
    """Maps the graph's positional inputs to the model's keyword arguments."""

    KEYWORDS = {"INPUT_IDS": "input_ids", "ATTENTION_MASK": "attention_mask", "TOKEN_TYPE_IDS": "token_type_ids"}

    def __init__(self, model: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.model = model
        self.keywords = [self.KEYWORDS[name] for name in input_names]

    def forward(self, *tensors):
        return self.model(**dict(zip(self.keywords, tensors))).logits


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
