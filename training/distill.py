"""`polyrank distill`: train a student on a cross-encoder teacher's scores over unlabeled lists.

Data: JSONL lines {"query": str, "documents": [str, ...], "teacher_scores"?: [float, ...]}
(labels, if present, are ignored). Unless every line carries the teacher's scores already
(see `write_teacher_scores`), the teacher scores every (query, document) pair once. The
student then learns from those scores with a pointwise score-distillation term
(temperature-rescaled) plus a listwise loss.
"""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from polyrank.checkpoint import torch_inputs
from polyrank.ranking import read_lists
from polyrank.checkpoint import load_checkpoint
from polyrank.jsonl import read_jsonl
from polyrank.model_repository.pair_encoding import PairEncoder
from polyrank.training.cli import STUDENTS
from polyrank.training.losses import LISTWISE_LOSSES, score_distillation
from polyrank.training.students import LAYER_CHOICES, TwoTower, with_layers

DISTILL_RECORD = "polyrank-distill.json"


@dataclass(frozen=True, kw_only=True)
class DistillConfig:
    teacher: str
    student: str
    data: Path
    output: Path
    layers: Optional[int] = None  # shallow: required; two-tower: encoder layers to keep (all when None)
    layer_choice: str = "spread"  # which teacher layers: "spread" (evenly spaced, first and last kept) or "bottom" (the first K)
    dim: int = 128
    reduced_dim: Optional[int] = None
    separate_towers: bool = False
    loss: str = "lambdaloss"  # best of the four on the two-tower student (perf/results/students_training.json)
    temperature: float = 1.0
    distill_weight: float = 1.0
    epochs: int = 1
    lists_per_batch: int = 8
    learning_rate: float = 1e-4
    max_length: int = 128
    seed: int = 0

    def __post_init__(self):
        if self.student not in STUDENTS:
            raise ValueError(f"--student must be one of {', '.join(STUDENTS)}, got {self.student!r}")
        if self.student == "shallow" and self.layers is None:
            raise ValueError("--student shallow needs --layers K (how many teacher layers to keep)")
        if self.layer_choice not in LAYER_CHOICES:
            raise ValueError(f"--layer-choice must be one of {', '.join(LAYER_CHOICES)}, got {self.layer_choice!r}")
        if self.loss not in LISTWISE_LOSSES:
            raise ValueError(f"--loss must be one of {', '.join(LISTWISE_LOSSES)}, got {self.loss!r}")
        if not Path(self.data).is_file():
            raise ValueError(f"distillation data {self.data} does not exist")
        if self.dim < 1:
            raise ValueError(f"--dim must be at least 1, got {self.dim}")
        if self.temperature <= 0:
            raise ValueError(f"--temperature must be positive, got {self.temperature}")
        for name in ("epochs", "lists_per_batch", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")


def teacher_scores(teacher, encoder: PairEncoder, lists, token_types: bool, batch_pairs=64, log=print) -> list[np.ndarray]:
    """The teacher's logits for every list, computed in batches sorted by text length."""
    pairs = [(i, q.query, d) for i, q in enumerate(lists) for d in q.documents]
    lengths = [len(q) + len(d) for _, q, d in pairs]
    order = np.argsort(lengths, kind="stable")
    flat = np.empty(len(pairs), dtype=np.float32)
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(order), batch_pairs):
            chunk = order[start : start + batch_pairs]
            batch = encoder.encode_padded([pairs[k][1] for k in chunk], [pairs[k][2] for k in chunk])
            flat[chunk] = _cross_encoder_logits(teacher, batch, token_types).numpy()
    log(f"teacher scored {len(pairs)} pairs in {time.perf_counter() - started:.0f} s")
    ends = np.cumsum([len(q.documents) for q in lists])[:-1]
    return np.split(flat, ends)


def read_teacher_scores(path: Path, lists) -> list[np.ndarray] | None:
    """The lines' "teacher_scores" if every line has them (one per document), else None."""
    rows = [scores for _, scores in read_jsonl(path, lambda record: record.get("teacher_scores"), "{'query', ...}")]
    if any(scores is None for scores in rows):
        return None
    for number, (scores, query) in enumerate(zip(rows, lists), start=1):
        if len(scores) != len(query.documents):
            raise ValueError(f"{path}:{number}: {len(scores)} teacher_scores for {len(query.documents)} documents")
    return [np.asarray(scores, dtype=np.float32) for scores in rows]


def write_teacher_scores(teacher: str, data: Path, output: Path, max_length: int = 128, log=print) -> Path:
    """Copies the lists in `data` to `output` with the teacher's scores added, so several
    students can be distilled without scoring again."""
    lists = read_lists(data)
    checkpoint = load_checkpoint(teacher)
    encoder = PairEncoder(checkpoint.tokenizer, max_length, checkpoint.pad_id)
    targets = teacher_scores(checkpoint.model, encoder, lists, checkpoint.uses_token_type_ids, log=log)
    with open(output, "w", encoding="utf-8") as stream:
        for query, scores in zip(lists, targets):
            record = {"query": query.query, "documents": list(query.documents),
                      "teacher_scores": [round(float(s), 5) for s in scores]}
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    return output


def distill(config: DistillConfig, log=print) -> Path:
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    lists = read_lists(config.data)
    teacher = load_checkpoint(config.teacher)
    encoder = PairEncoder(teacher.tokenizer, config.max_length, teacher.pad_id)
    targets = read_teacher_scores(config.data, lists)
    if targets is None:
        targets = teacher_scores(teacher.model, encoder, lists, teacher.uses_token_type_ids, log=log)
    log(f"{len(lists)} lists, {sum(len(t) for t in targets)} pairs; teacher logits mean "
        f"{np.mean(np.concatenate(targets)):.2f}, sd {np.std(np.concatenate(targets)):.2f}")

    if config.student == "shallow":
        student, kept = with_layers(teacher.model, config.layers, config.layer_choice)
        log(f"shallow student: teacher layers {kept} of {teacher.model.config.num_hidden_layers}")
        token_types = teacher.uses_token_type_ids
        forward = lambda batch: _shallow_scores(student, encoder, batch, token_types)  # noqa: E731
    else:
        student, kept = _two_tower_student(config, teacher.model, log)
        forward = lambda batch: _two_tower_scores(student, encoder, batch)  # noqa: E731

    listwise = LISTWISE_LOSSES[config.loss]
    examples = list(zip(lists, targets))
    steps = config.epochs * -(-len(examples) // config.lists_per_batch)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.learning_rate)
    schedule = get_linear_schedule_with_warmup(optimizer, steps // 10, steps)
    student.train()
    started, step, history = time.perf_counter(), 0, []
    for epoch in range(config.epochs):
        for batch in length_bucketed_batches(examples, config.lists_per_batch):
            scores, teacher_logits, mask = forward(batch)
            pointwise = score_distillation(scores, teacher_logits, mask, config.temperature)
            loss = config.distill_weight * pointwise + listwise(scores, teacher_logits, mask, config.temperature)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            history.append(loss.item())
            if step % 50 == 0 or step == steps:
                log(f"epoch {epoch + 1} step {step}/{steps} loss {np.mean(history[-50:]):.4f} "
                    f"({time.perf_counter() - started:.0f} s)")
    student.eval()

    output = Path(config.output)
    source = {"teacher": config.teacher, "teacher_layers_kept": kept, "max_length": config.max_length}
    tokenizer = AutoTokenizer.from_pretrained(config.teacher)
    if config.student == "shallow":
        student.save_pretrained(output)
        tokenizer.save_pretrained(output)
    else:
        student.save(output, tokenizer, source)
    record = {**{k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}, **source,
              "lists": len(lists), "steps": steps, "seconds": round(time.perf_counter() - started),
              "first_50_steps_loss": round(float(np.mean(history[:50])), 5),
              "last_50_steps_loss": round(float(np.mean(history[-50:])), 5)}
    (output / DISTILL_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    log(f"wrote {config.student} student to {output}")
    return output


def length_bucketed_batches(examples: list, lists_per_batch: int, batches_per_pool: int = 32) -> list[list]:
    """Shuffled batches of lists of similar text length. A batch is padded to its longest pair,
    so random batches of WDC lists compute 0.61 real tokens per token and these 0.85. Sorting
    happens within random pools of `batches_per_pool` batches, so batch order stays random."""
    examples = random.sample(examples, len(examples))
    longest = lambda example: max(len(example[0].query) + len(d) for d in example[0].documents)  # noqa: E731
    pool_size = lists_per_batch * batches_per_pool
    batches = []
    for start in range(0, len(examples), pool_size):
        pool = sorted(examples[start : start + pool_size], key=longest)
        batches += [pool[i : i + lists_per_batch] for i in range(0, len(pool), lists_per_batch)]
    random.shuffle(batches)
    return batches


def _padded(batch):
    """Teacher logits [lists, longest list] and the mask of real items."""
    longest = max(len(scores) for _, scores in batch)
    logits = torch.zeros(len(batch), longest)
    mask = torch.zeros(len(batch), longest, dtype=torch.bool)
    for row, (_, scores) in enumerate(batch):
        logits[row, : len(scores)] = torch.from_numpy(scores)
        mask[row, : len(scores)] = True
    return logits, mask


def _cross_encoder_logits(model, batch, token_types: bool):
    return model(**torch_inputs(batch, token_types)).logits.reshape(-1)


def _shallow_scores(student, encoder, batch, token_types: bool):
    logits, mask = _padded(batch)
    queries = [q.query for q, _ in batch for _ in q.documents]
    documents = [d for q, _ in batch for d in q.documents]
    flat = _cross_encoder_logits(student, encoder.encode_padded(queries, documents), token_types)
    scores = torch.zeros_like(logits).masked_scatter(mask, flat)
    return scores, logits, mask


def _two_tower_scores(student: TwoTower, encoder, batch):
    logits, mask = _padded(batch)
    queries = [q.query for q, _ in batch]
    documents = [d for q, _ in batch for d in q.documents]
    query_embeddings = _embed(student, encoder, "query", queries)
    product_embeddings = _embed(student, encoder, "product", documents)
    rows = torch.tensor([row for row, (q, _) in enumerate(batch) for _ in q.documents])
    flat = student.score(query_embeddings[0][rows], product_embeddings[0])
    scores = torch.zeros_like(logits).masked_scatter(mask, flat)
    if student.reduced_dim is None:
        return scores, logits, mask
    # Matryoshka: the reduced embedding is trained by the same loss on its own scores.
    reduced = student.score(query_embeddings[1][rows], product_embeddings[1])
    reduced_scores = torch.zeros_like(logits).masked_scatter(mask, reduced)
    return torch.cat([scores, reduced_scores]), torch.cat([logits, logits]), torch.cat([mask, mask])


def _embed(student: TwoTower, encoder, tower, texts):
    """(full, reduced-or-None) normalised embeddings, one encoder pass."""
    full = student.embed_texts(encoder, tower, texts)
    if student.reduced_dim is None:
        return full, None
    # Renormalising the cut of a normalised vector gives the cut of the projection, normalised.
    return full, torch.nn.functional.normalize(full[:, : student.reduced_dim], dim=-1)


def _two_tower_student(config: DistillConfig, teacher_model, log):
    """Towers initialised from the teacher's encoder (its body without the classifier head)."""
    body = getattr(teacher_model, teacher_model.base_model_prefix)
    query_encoder, kept = with_layers(body, config.layers, config.layer_choice)
    product_encoder = copy.deepcopy(query_encoder) if config.separate_towers else query_encoder
    model = TwoTower(query_encoder, product_encoder, config.dim, config.reduced_dim)
    log(f"two-tower student: {'separate' if config.separate_towers else 'shared'} towers, teacher layers {kept}, "
        f"dim {config.dim}" + (f", reduced {config.reduced_dim}" if config.reduced_dim else ""))
    return model, kept
