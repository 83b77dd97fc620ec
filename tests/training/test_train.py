import json
from pathlib import Path

import pytest
import torch

from polyrank.checkpoint import torch_scores
from polyrank.checkpoint import load_checkpoint
from polyrank.model_repository.pair_encoding import PairEncoder
from polyrank.training.train import TrainConfig, read_training_pairs, train_cross_encoder
from polyrank.training.wdc import read_pairs, write_rerank_jsonl

WDC = Path(__file__).resolve().parents[3] / "shared" / "data" / "wdc" / "all" / "test.txt"

PAIRS = [
    ("running shoes", "Nike running shoes for men", 1.0),
    ("running shoes", "stainless steel kettle", 0.0),
    ("coffee grinder", "burr coffee grinder, 200 W", 1.0),
    ("coffee grinder", "leather watch strap", 0.0),
    ("机械键盘", "无线机械键盘 青轴", 1.0),
    ("机械键盘", "电饭煲 5合", 0.0),
]


def bce(checkpoint_dir):
    checkpoint = load_checkpoint(str(checkpoint_dir))
    encoder = PairEncoder(checkpoint.tokenizer, 64, checkpoint.pad_id)
    logits = torch_scores(checkpoint, encoder, [q for q, _, _ in PAIRS], [d for _, d, _ in PAIRS])
    labels = torch.tensor([label for _, _, label in PAIRS])
    return torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits), labels).item()


def test_training_lowers_the_loss_on_its_pairs(tiny_bert_dir, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"query": q, "document": d, "label": l}) + "\n" for q, d, l in PAIRS))
    config = TrainConfig(
        base=str(tiny_bert_dir), train=data, output=tmp_path / "trained", epochs=60,
        batch_size=6, learning_rate=5e-3, warmup_fraction=0.0, max_length=64,
    )
    trained = train_cross_encoder(config, log=lambda _: None)
    assert bce(trained) < 0.5 * bce(tiny_bert_dir)
    assert json.loads((trained / "polyrank-training.json").read_text())["pairs"] == len(PAIRS)


def test_bad_training_lines_are_named(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"query": "a", "document": "b", "label": 3}\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl:1: label must lie in \[0, 1\], got 3.0"):
        read_training_pairs(data)
    with pytest.raises(ValueError, match="does not exist"):
        TrainConfig(base="x", train=tmp_path / "missing.jsonl", output=tmp_path / "out")


@pytest.mark.skipif(not WDC.exists(), reason="../shared/data/wdc is absent (real product data for development only)")
def test_wdc_test_split_becomes_rerank_queries_with_matches_and_non_matches(tmp_path):
    first = next(read_pairs(WDC))
    assert not first[0].startswith("COL") and first[2] in (0.0, 1.0)
    count = write_rerank_jsonl(WDC, tmp_path / "rerank.jsonl", limit=20)
    records = [json.loads(line) for line in (tmp_path / "rerank.jsonl").read_text().splitlines()]
    assert count == len(records) == 20
    for record in records:
        assert len(record["documents"]) == len(record["labels"]) >= 5
        assert 0 < sum(record["labels"]) < len(record["labels"])
