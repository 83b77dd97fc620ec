"""Student models distilled from a cross-encoder teacher.

- Shallow cross-encoder: the teacher's architecture with K of its layers (evenly spaced,
  first and last kept), the embeddings, the classifier head, and those layers' weights
  copied from the teacher. It is an ordinary Hugging Face checkpoint, so `polyrank export`
  treats it like any cross-encoder.
- Two-tower bi-encoder: a query tower and a product tower (one shared encoder or two),
  each mean-pooled, projected to `dim` and L2-normalised; the score is
  scale * cosine + bias, so it lives on the teacher's logit scale. The first `reduced_dim`
  components, renormalised, form the reduced embedding (trained Matryoshka-style).
  Saved as a folder: `polyrank-two-tower.json`, `query_encoder/` (and `product_encoder/`
  when the towers are separate), `head.safetensors`.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

TWO_TOWER_CONFIG = "polyrank-two-tower.json"
LAYER_KEY = re.compile(r"(^|\.)(layers?)\.(\d+)\.")


def evenly_spaced_layers(total: int, keep: int) -> list[int]:
    """First and last kept, the rest evenly between. Layer 0 always stays layer 0: ModernBERT's
    first layer has no attention norm, so no other layer can take its place."""
    _check_layers(total, keep)
    if keep == 1:
        return [0]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def bottom_layers(total: int, keep: int) -> list[int]:
    """The first `keep` layers: dropping the top ones (Sajjad et al., "Poor Man's BERT")."""
    _check_layers(total, keep)
    return list(range(keep))


def _check_layers(total: int, keep: int) -> None:
    if not 1 <= keep <= total:
        raise ValueError(f"--layers must lie in [1, {total}] for a teacher with {total} layers, got {keep}")


LAYER_CHOICES = {"bottom": bottom_layers, "spread": evenly_spaced_layers}


def with_layers(model: torch.nn.Module, keep: Optional[int], choice: str = "spread") -> tuple[torch.nn.Module, list[int]]:
    """A copy of a transformer (a classifier or a bare encoder) with `keep` of its layers
    (all when None), chosen by `choice` ("bottom" or "spread"); returns (copy, kept layer indices)."""
    total = model.config.num_hidden_layers
    if keep is None:
        return copy.deepcopy(model), list(range(total))
    layers = LAYER_CHOICES[choice](total, keep)
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(layers)
    if getattr(config, "layer_types", None):  # ModernBERT: each kept layer keeps its attention kind
        config.layer_types = [config.layer_types[i] for i in layers]
    student = type(model)(config)
    student.load_state_dict(_select_layers(model.state_dict(), layers))
    return student.eval(), layers


def _select_layers(state: dict, layers: list[int]) -> dict:
    renumber = {old: new for new, old in enumerate(layers)}
    selected = {}
    for key, value in state.items():
        match = LAYER_KEY.search(key)
        if match is None:
            selected[key] = value
        elif int(match.group(3)) in renumber:
            new = f"{match.group(1)}{match.group(2)}.{renumber[int(match.group(3))]}."
            selected[key[: match.start()] + new + key[match.end():]] = value
    return selected


class TwoTower(torch.nn.Module):
    def __init__(self, query_encoder, product_encoder, dim: int, reduced_dim: Optional[int]):
        super().__init__()
        if reduced_dim is not None and not 1 <= reduced_dim < dim:
            raise ValueError(f"--reduced-dim must lie in [1, {dim}) for --dim {dim}, got {reduced_dim}")
        self.query_encoder = query_encoder
        self.product_encoder = product_encoder  # the same module when the towers share weights
        hidden = query_encoder.config.hidden_size
        self.query_projection = torch.nn.Linear(hidden, dim)
        self.product_projection = (
            self.query_projection if product_encoder is query_encoder else torch.nn.Linear(hidden, dim)
        )
        self.dim, self.reduced_dim = dim, reduced_dim
        self.scale = torch.nn.Parameter(torch.tensor(10.0))
        self.bias = torch.nn.Parameter(torch.tensor(0.0))

    @property
    def shared(self) -> bool:
        return self.product_encoder is self.query_encoder

    def embed(self, tower: str, input_ids, attention_mask, dim: Optional[int] = None):
        """L2-normalised embeddings of `tower` ("query" or "product"), cut to `dim` components."""
        encoder = self.query_encoder if tower == "query" else self.product_encoder
        projection = self.query_projection if tower == "query" else self.product_projection
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        return F.normalize(projection(pooled)[:, : dim or self.dim], dim=-1)

    def score(self, query_embeddings, product_embeddings):
        """scale * cosine + bias for matching rows (both already normalised)."""
        return self.scale * (query_embeddings * product_embeddings).sum(dim=-1) + self.bias

    def embed_texts(self, encoder, tower: str, texts, dim: Optional[int] = None):
        """`embed` for texts, encoded with the pair encoder's single-text template."""
        batch = encoder.encode_texts_padded(list(texts))
        return self.embed(tower, torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask), dim)

    @torch.no_grad()
    def score_texts(self, encoder, query: str, documents, dim: Optional[int] = None):
        """Scores (numpy float32) of `documents` for `query`, with embeddings cut to `dim`."""
        query_embedding = self.embed_texts(encoder, "query", [query], dim)
        product_embeddings = self.embed_texts(encoder, "product", documents, dim)
        return self.score(query_embedding, product_embeddings).float().numpy()

    def save(self, folder: Path, tokenizer, source: dict) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        self.query_encoder.save_pretrained(folder / "query_encoder")
        tokenizer.save_pretrained(folder / "query_encoder")
        if not self.shared:
            self.product_encoder.save_pretrained(folder / "product_encoder")
        head = {"query_projection." + k: v for k, v in self.query_projection.state_dict().items()}
        if not self.shared:
            head.update({"product_projection." + k: v for k, v in self.product_projection.state_dict().items()})
        head.update({"scale": self.scale.detach().reshape(1), "bias": self.bias.detach().reshape(1)})
        save_file({k: v.contiguous() for k, v in head.items()}, str(folder / "head.safetensors"))
        settings = {"dim": self.dim, "reduced_dim": self.reduced_dim, "shared": self.shared, **source}
        (folder / TWO_TOWER_CONFIG).write_text(json.dumps(settings, indent=2) + "\n")


def is_two_tower(path) -> bool:
    return (Path(path) / TWO_TOWER_CONFIG).is_file()


def load_two_tower(folder: Path) -> tuple[TwoTower, dict]:
    """Loads a saved two-tower student; returns (model in eval mode, its settings)."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    folder = Path(folder)
    settings = json.loads((folder / TWO_TOWER_CONFIG).read_text())
    query_encoder = AutoModel.from_pretrained(folder / "query_encoder", dtype=torch.float32, attn_implementation="sdpa")
    product_encoder = query_encoder
    if not settings["shared"]:
        product_encoder = AutoModel.from_pretrained(
            folder / "product_encoder", dtype=torch.float32, attn_implementation="sdpa"
        )
    model = TwoTower(query_encoder, product_encoder, settings["dim"], settings["reduced_dim"])
    head = load_file(str(folder / "head.safetensors"))
    model.scale.data, model.bias.data = head.pop("scale")[0], head.pop("bias")[0]
    for name, module in (("query_projection", model.query_projection), ("product_projection", model.product_projection)):
        weights = {k.split(".", 1)[1]: v for k, v in head.items() if k.startswith(name + ".")}
        if weights:
            module.load_state_dict(weights)
    return model.eval(), settings
