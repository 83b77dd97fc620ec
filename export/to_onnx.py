"""Export a cross-encoder checkpoint to ONNX with dynamic batch and sequence axes."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from polyrank.checkpoint import Checkpoint


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
