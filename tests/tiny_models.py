"""Tiny cross-encoders and tokenizers built locally for tests (no model hub here)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    PreTrainedTokenizerFast,
)

from polyrank.export.samples import SAMPLE_QUERIES

CORPUS = [s.query for s in SAMPLE_QUERIES] + [p for s in SAMPLE_QUERIES for p in s.products]


def train_tokenizer(specials: dict[str, str], pair_template: str, single_template: str) -> Tokenizer:
    """A byte-level BPE tokenizer (every character encodable) trained on the sample corpus."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=list(specials.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 3, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single_template,
        pair=pair_template,
        special_tokens=[(token, tokenizer.token_to_id(token)) for token in specials.values()],
    )
    return tokenizer


def build_tiny_modernbert(directory: Path, num_layers: int = 4, seed: int = 0) -> Path:
    """A 4-layer ModernBERT cross-encoder with mmBERT's template and a local window of 16."""
    specials = {"pad": "<pad>", "eos": "<eos>", "bos": "<bos>", "unk": "<unk>", "mask": "<mask>"}
    tokenizer = train_tokenizer(specials, "<bos> $A <eos> $B:1 <eos>:1", "<bos> $A <eos>")
    config = ModernBertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=64,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=96,
        local_attention=16,
        global_attn_every_n_layers=3,
        max_position_embeddings=512,
        num_labels=1,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        cls_token_id=2,
        sep_token_id=1,
    )
    torch.manual_seed(seed)
    model = ModernBertForSequenceClassification(config)
    _save(directory, model, tokenizer, specials)
    return directory


def build_tiny_bert(directory: Path, seed: int = 0, max_positions: int = 512) -> Path:
    """A 2-layer BERT cross-encoder (uses token_type_ids), like a MiniLM checkpoint."""
    specials = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
    tokenizer = train_tokenizer(specials, "[CLS] $A [SEP] $B:1 [SEP]:1", "[CLS] $A [SEP]")
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        num_labels=1,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    _save(directory, model, tokenizer, specials)
    return directory


def _save(directory: Path, model, tokenizer: Tokenizer, specials: dict[str, str]):
    directory.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(directory)
    # Token type ids only where the model takes them (BERT), as real checkpoints declare it.
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if getattr(model.config, "type_vocab_size", 0) > 1 else [])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_input_names=names, **{f"{k}_token": v for k, v in specials.items()}
    )
    fast.save_pretrained(directory)


def sharpened(checkpoint_dir: Path, output: Path, factor: float = 300.0) -> Path:
    """A copy whose classifier weights are scaled: a random tiny model scores every pair
    almost alike (near-ties), a sharpened one spreads its scores, so rankings mean something."""
    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint_dir))
    with torch.no_grad():
        model.classifier.weight.mul_(factor)
    model.save_pretrained(output)
    AutoTokenizer.from_pretrained(str(checkpoint_dir)).save_pretrained(output)
    return output


def trained_ranker(base_dir: Path, output: Path, epochs: int = 30) -> Path:
    """The tiny model fine-tuned on the sample's relevance (each query's 1st and 3rd products
    match). Its scores fall into two groups about 3.5 logits apart (near-ties within each),
    so the quality gate's clear pairs and its tie tolerance are both exercised; a random
    model's scores are all near-ties, which no precision can fail."""
    import json

    from polyrank.training.train import TrainConfig, train_cross_encoder

    lines = [
        {"query": s.query, "document": product, "label": float(i in (0, 2))}
        for s in SAMPLE_QUERIES
        for i, product in enumerate(s.products)
    ]
    data = output.with_name(output.name + "-pairs.jsonl")
    data.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    config = TrainConfig(
        base=str(base_dir), train=data, output=output, epochs=epochs, batch_size=8,
        learning_rate=1e-3, warmup_fraction=0.0, max_length=64,
    )
    return train_cross_encoder(config, log=lambda _: None)
