"""Fine-tune a cross-encoder (one relevance logit) from a local pretrained encoder.

Training data: JSONL {"query", "document", "label"} with labels in [0, 1] (binary or graded,
e.g. ESCI gains); loss: binary cross-entropy on the logit. Pairs are encoded with the same
pair encoder the server uses.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from polyrank.checkpoint import private_tokenizer, torch_inputs, uses_token_type_ids
from polyrank.jsonl import read_jsonl
from polyrank.model_repository.pair_encoding import PairEncoder


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    base: str
    train: Path
    output: Path
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_fraction: float = 0.1
    max_length: int = 128
    seed: int = 0

    def __post_init__(self):
        if not Path(self.train).is_file():
            raise ValueError(f"training data {self.train} does not exist")
        for name in ("epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


def read_training_pairs(path: Path) -> list[tuple[str, str, float]]:
    pairs = []

    def fields(record):
        return str(record["query"]), str(record["document"]), float(record["label"])

    for number, pair in read_jsonl(path, fields, "{'query', 'document', 'label'}"):
        if not 0.0 <= pair[2] <= 1.0:
            raise ValueError(f"{path}:{number}: label must lie in [0, 1], got {pair[2]}")
        pairs.append(pair)
    if not pairs:
        raise ValueError(f"{path} holds no training pairs")
    return pairs


def train_cross_encoder(config: TrainConfig, log=print) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    pairs = read_training_pairs(config.train)
    hf_tokenizer = AutoTokenizer.from_pretrained(config.base)
    model = AutoModelForSequenceClassification.from_pretrained(config.base, num_labels=1)
    encoder = PairEncoder(private_tokenizer(hf_tokenizer), config.max_length, model.config.pad_token_id)
    token_types = uses_token_type_ids(model)
    steps = config.epochs * -(-len(pairs) // config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    schedule = get_linear_schedule_with_warmup(optimizer, int(steps * config.warmup_fraction), steps)
    loss_function = torch.nn.BCEWithLogitsLoss()

    model.train()
    started, step = time.perf_counter(), 0
    for epoch in range(config.epochs):
        random.shuffle(pairs)
        for start in range(0, len(pairs), config.batch_size):
            batch = pairs[start : start + config.batch_size]
            padded = encoder.encode_padded([q for q, _, _ in batch], [d for _, d, _ in batch])
            logits = model(**torch_inputs(padded, token_types)).logits.reshape(-1)
            loss = loss_function(logits, torch.tensor([label for _, _, label in batch]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if step % 50 == 0 or step == steps:
                log(f"epoch {epoch + 1} step {step}/{steps} loss {loss.item():.4f} ({time.perf_counter() - started:.0f} s)")
    model.eval()
    output = Path(config.output)
    model.save_pretrained(output)
    hf_tokenizer.save_pretrained(output)
    (output / "polyrank-training.json").write_text(
        json.dumps({"base": config.base, "train": str(config.train), "pairs": len(pairs), "steps": steps,
                    "epochs": config.epochs, "learning_rate": config.learning_rate, "max_length": config.max_length,
                    "seconds": round(time.perf_counter() - started)}, indent=2) + "\n"
    )
    log(f"wrote cross-encoder to {output}")
    return output
