import json

import numpy as np
import pytest
import torch

from polyrank.evaluate import model_scorer
from polyrank.ranking import read_lists
from polyrank.export.samples import SAMPLE_QUERIES
from polyrank.checkpoint import load_checkpoint
from polyrank.training.distill import (
    DistillConfig,
    distill,
    length_bucketed_batches,
    read_teacher_scores,
    write_teacher_scores,
)
from polyrank.training.losses import listnet, score_distillation
from polyrank.training.students import bottom_layers, evenly_spaced_layers, is_two_tower, load_two_tower, with_layers
from tests.tiny_models import sharpened

LISTS = [(s.query, list(s.products)) for s in SAMPLE_QUERIES]


@pytest.fixture(scope="module")
def modernbert_teacher(tiny_modernbert_dir, tmp_path_factory):
    """Sharpened, and with a last layer that matters: in a random tiny model the upper layers
    barely change the residual stream, so a truncated copy would already match the teacher."""
    from transformers import AutoModelForSequenceClassification

    folder = sharpened(tiny_modernbert_dir, tmp_path_factory.mktemp("teacher-modernbert"))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder))
    with torch.no_grad():
        model.model.layers[-1].mlp.Wo.weight.mul_(30.0)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert_teacher(spread_bert_dir):
    return spread_bert_dir


@pytest.fixture
def lists_file(tmp_path):
    path = tmp_path / "lists.jsonl"
    path.write_text("".join(json.dumps({"query": q, "documents": d}) + "\n" for q, d in LISTS))
    return path


def distillation_loss(student_dir, teacher_dir, dim=None):
    """What training minimises (temperature 2), above its floor (the targets' own entropy):
    the pointwise and ListNet terms minus their values for a student equal to the teacher."""
    student, teacher = model_scorer(str(student_dir), 64, dim), model_scorer(str(teacher_dir), 64)
    s = torch.tensor(np.stack([student(q, d) for q, d in LISTS]), dtype=torch.float64)
    t = torch.tensor(np.stack([teacher(q, d) for q, d in LISTS]), dtype=torch.float64)
    mask = torch.ones_like(s, dtype=torch.bool)
    loss = lambda scores: score_distillation(scores, t, mask, 2.0) + listnet(scores, t, mask, 2.0)  # noqa: E731
    return (loss(s) - loss(t)).item()


def run(teacher_dir, lists_file, output, learning_rate, **settings):
    config = DistillConfig(
        teacher=str(teacher_dir), data=lists_file, output=output, epochs=30, lists_per_batch=4,
        learning_rate=learning_rate, max_length=64, temperature=2.0, **settings,
    )
    return distill(config, log=lambda _: None)


def test_shallow_student_keeps_teacher_layers_and_learns(modernbert_teacher, lists_file, tmp_path):
    before = run(modernbert_teacher, lists_file, tmp_path / "before", 0.0, student="shallow", layers=2)
    student = load_checkpoint(str(before)).model
    teacher = load_checkpoint(str(modernbert_teacher)).model
    assert student.config.num_hidden_layers == 2
    assert student.config.layer_types == [teacher.config.layer_types[i] for i in (0, 3)]  # default: spread
    assert torch.equal(student.model.layers[1].mlp.Wo.weight, teacher.model.layers[3].mlp.Wo.weight)
    bottom, kept = with_layers(teacher, 2, "bottom")
    assert kept == [0, 1] and bottom.config.layer_types == teacher.config.layer_types[:2]
    assert torch.equal(bottom.model.layers[1].attn.Wqkv.weight, teacher.model.layers[1].attn.Wqkv.weight)
    # the bottom two of four layers: without the decisive last layer, far enough from the teacher;
    # ListNet, the loss distillation_loss measures (LambdaLoss widens margins beyond the teacher's)
    settings = dict(student="shallow", layers=2, layer_choice="bottom", loss="listnet")
    untrained = run(modernbert_teacher, lists_file, tmp_path / "untrained", 0.0, **settings)
    trained = run(modernbert_teacher, lists_file, tmp_path / "trained", 3e-3, **settings)
    assert distillation_loss(trained, modernbert_teacher) < 0.5 * distillation_loss(untrained, modernbert_teacher)


def test_two_tower_student_learns_full_and_reduced_embeddings(bert_teacher, lists_file, tmp_path):
    settings = dict(student="two-tower", dim=16, reduced_dim=4, loss="lambdaloss")
    before = run(bert_teacher, lists_file, tmp_path / "before", 0.0, **settings)
    after = run(bert_teacher, lists_file, tmp_path / "after", 3e-3, **settings)
    assert is_two_tower(after)
    model, record = load_two_tower(after)
    assert (model.dim, model.reduced_dim, model.shared) == (16, 4, True)
    for dim in (None, 4):
        assert distillation_loss(after, bert_teacher, dim) < 0.5 * distillation_loss(before, bert_teacher, dim)


def test_separate_towers_have_their_own_weights(bert_teacher, lists_file, tmp_path):
    output = run(bert_teacher, lists_file, tmp_path / "separate", 3e-3, student="two-tower", dim=8, separate_towers=True)
    model, _ = load_two_tower(output)
    assert not model.shared
    query_weights = dict(model.query_encoder.named_parameters())
    changed = [n for n, p in model.product_encoder.named_parameters() if not torch.equal(p, query_weights[n])]
    assert changed, "separate towers trained into identical weights"


def test_teacher_scores_written_once_are_reused(tiny_bert_dir, lists_file, tmp_path):
    scored = write_teacher_scores(str(tiny_bert_dir), lists_file, tmp_path / "scored.jsonl", max_length=64, log=lambda _: None)
    targets = read_teacher_scores(scored, read_lists(scored))
    teacher = model_scorer(str(tiny_bert_dir), 64)
    assert np.allclose(targets[0], teacher(*LISTS[0]), atol=1e-4)
    assert read_teacher_scores(lists_file, read_lists(lists_file)) is None


def test_layer_choice_and_bad_settings(lists_file, tmp_path):
    assert bottom_layers(6, 2) == [0, 1]
    assert evenly_spaced_layers(6, 2) == [0, 5]
    assert evenly_spaced_layers(6, 3) == [0, 2, 5] or evenly_spaced_layers(6, 3) == [0, 3, 5]
    assert evenly_spaced_layers(22, 1) == [0]
    with pytest.raises(ValueError, match=r"--layers must lie in \[1, 6\]"):
        evenly_spaced_layers(6, 7)
    with pytest.raises(ValueError, match="--student shallow needs --layers"):
        DistillConfig(teacher="t", student="shallow", data=lists_file, output=tmp_path / "o")
    with pytest.raises(ValueError, match="--layer-choice must be one of"):
        DistillConfig(teacher="t", student="shallow", layers=1, layer_choice="top", data=lists_file, output=tmp_path / "o")
    with pytest.raises(ValueError, match="--loss must be one of"):
        DistillConfig(teacher="t", student="two-tower", data=lists_file, output=tmp_path / "o", loss="hinge")
    with pytest.raises(ValueError, match="does not exist"):
        DistillConfig(teacher="t", student="two-tower", data=tmp_path / "missing.jsonl", output=tmp_path / "o")


def test_length_bucketed_batches_cover_every_list_once_and_pad_less():
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    examples = [(SimpleNamespace(query="q" * int(rng.integers(1, 80)), documents=["d" * int(rng.integers(1, 80))]), i)
                for i in range(1000)]
    batches = length_bucketed_batches(examples, lists_per_batch=8, batches_per_pool=8)
    assert sorted(i for batch in batches for _, i in batch) == list(range(1000))
    assert all(len(batch) == 8 for batch in batches)

    def padded_characters(batches):
        lengths = [[len(q.query) + len(q.documents[0]) for q, _ in batch] for batch in batches]
        return sum(max(row) * len(row) for row in lengths)

    shuffled = [examples[i : i + 8] for i in range(0, 1000, 8)]
    assert padded_characters(batches) < 0.8 * padded_characters(shuffled)
    first_items = [batch[0][1] for batch in batches]
    assert first_items != sorted(first_items)  # batch order is random, not by length
