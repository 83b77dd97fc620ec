"""Cross-encoder checkpoints as every part of polyrank reads them: loading, the token-type
rule, the position limit, and PyTorch reference scores. Export, training, evaluation and
the tests all use these, so a checkpoint means the same thing everywhere."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:  # the heavy libraries load only when a checkpoint does: `polyrank rerank` needs none
    import torch
    from tokenizers import Tokenizer

    from polyrank.model_repository.pair_encoding import PaddedBatch, PairEncoder

DEFAULT_MAX_LENGTH = 256  # or the checkpoint's position limit, if lower


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded or is not a one-logit cross-encoder."""


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
        return uses_token_type_ids(self.model)

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
        CheckpointError: it cannot be loaded, or it has more than one output logit.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if model.startswith(("/", ".", "~")) and not Path(model).expanduser().is_dir():
        raise CheckpointError(f"checkpoint directory {model} does not exist")
    model = str(Path(model).expanduser()) if model.startswith("~") else model
    try:
        hf_model = AutoModelForSequenceClassification.from_pretrained(
            model, dtype=torch.float32, attn_implementation="sdpa"
        )
        hf_tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as error:
        hint = "" if Path(model).is_dir() else " (not a local directory; is the model hub reachable?)"
        raise CheckpointError(f"cannot load cross-encoder {model!r}{hint}: {_first_line(error)}") from None
    if hf_model.config.num_labels != 1:
        raise CheckpointError(
            f"polyrank requires a cross-encoder with one output logit (num_labels=1), "
            f"got num_labels={hf_model.config.num_labels} in {model!r}"
        )
    return Checkpoint(model, hf_model.eval(), private_tokenizer(hf_tokenizer))


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
        CheckpointError: `requested` is above the checkpoint's position limit.
    """
    if requested is None:
        return DEFAULT_MAX_LENGTH if limit is None else min(DEFAULT_MAX_LENGTH, limit)
    if limit is not None and requested > limit:
        raise CheckpointError(
            f"--max-length {requested} is more than the {limit} positions {source} supports; "
            f"pass --max-length {limit} or less"
        )
    return requested


def uses_token_type_ids(model) -> bool:
    """Whether a model takes token type ids that mean something (BERT's segment embeddings;
    not ModernBERT, which has none, nor a model with a single type)."""
    accepts = "token_type_ids" in inspect.signature(model.forward).parameters
    return accepts and getattr(model.config, "type_vocab_size", 0) > 1


def private_tokenizer(hf_tokenizer) -> Tokenizer:
    """A private copy of a transformers fast tokenizer's backend: the pair encoder changes its
    truncation and padding settings."""
    from tokenizers import Tokenizer

    if not getattr(hf_tokenizer, "is_fast", False):
        raise CheckpointError(f"polyrank requires a fast (tokenizers) tokenizer, got {type(hf_tokenizer).__name__}")
    return Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())


def torch_inputs(batch: PaddedBatch, token_types: bool) -> dict:
    """A padded batch as a Hugging Face model's keyword arguments."""
    import torch

    inputs = {"input_ids": torch.from_numpy(batch.input_ids), "attention_mask": torch.from_numpy(batch.attention_mask)}
    if token_types:
        inputs["token_type_ids"] = torch.from_numpy(batch.token_type_ids)
    return inputs


def torch_scores(checkpoint: Checkpoint, encoder: PairEncoder, queries, documents) -> np.ndarray:
    """Reference scores from the PyTorch model, one padded batch."""
    import torch

    batch = encoder.encode_padded(queries, documents)
    with torch.no_grad():
        logits = checkpoint.model(**torch_inputs(batch, checkpoint.uses_token_type_ids)).logits
    return logits.reshape(-1).float().numpy()


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
