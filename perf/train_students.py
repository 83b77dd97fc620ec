"""Distil students from the real MiniLM product cross-encoder and compare listwise losses.

    .venv/bin/python perf/train_students.py

1. Unlabeled lists: WDC offer titles and ProMap names from ../shared/data (train/valid
   splits; titles of the 200 held-out WDC test queries left out), 8 products each (the
   query's WDC candidates, then the titles sharing the most words with it), scored once
   by the teacher (1500 lists).
2. Loss comparison on a small budget: the two-tower student (dim 128, reduced 16) per
   listwise loss on the first --compare-lists lists, each evaluated on the held-out
   labelled WDC test queries; the best NDCG@10 picks the loss.
3. A shallow student per depth in --layers (2, 3 and 4 of 6: the quality each depth buys)
   with that loss on --lists lists for --epochs; the two-tower student (dim 128, reduced 16)
   on --two-tower-lists lists; all evaluated.

Students are cached in ~/.cache/polyrank/students/ (delete to retrain); results go to
perf/results/students_training.json. perf/bench_students.py then serves and times them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.run_facts import run_facts  # noqa: E402
from perf.trained_teacher import SHARED_DATA, trained_minilm  # noqa: E402
from polyrank.evaluate import evaluate_model  # noqa: E402
from polyrank.export.assets import cache_dir_from  # noqa: E402
from polyrank.jsonl import read_jsonl  # noqa: E402
from polyrank.training.distill import DistillConfig, distill, write_teacher_scores  # noqa: E402
from polyrank.training.losses import LISTWISE_LOSSES  # noqa: E402
from polyrank.training.unlabeled import write_unlabeled_lists  # noqa: E402

RESULTS = ROOT / "perf" / "results" / "students_training.json"
EVAL_MAX_LENGTH = 128


POOL = 1500  # lists scored by the teacher once; a run takes the first --lists of them


def unlabeled_lists(cache: Path, teacher: Path, held_out_file: Path, count: int) -> Path:
    if count > POOL:
        raise SystemExit(f"--lists must be at most {POOL}, got {count}")
    pool = scored_pool(cache, teacher, held_out_file)
    subset = cache / f"distill-lists-{count}-similar-scored.jsonl"
    with open(pool, encoding="utf-8") as source:
        subset.write_text("".join(line for _, line in zip(range(count), source)), encoding="utf-8")
    return subset


def scored_pool(cache: Path, teacher: Path, held_out_file: Path) -> Path:
    scored = cache / f"distill-lists-{POOL}-similar-scored.jsonl"
    if scored.exists():
        return scored
    held_out = set()
    for _, (query, documents) in read_jsonl(held_out_file, lambda r: (r["query"], r["documents"]), "eval"):
        held_out.update([query, *documents])
    wdc = sorted((SHARED_DATA / "wdc").glob("*/train.txt.*")) + sorted((SHARED_DATA / "wdc").glob("*/valid.txt.*"))
    promap = [SHARED_DATA / "promap" / "promapen-test_data.csv"]
    plain = cache / f"distill-lists-{POOL}-similar.jsonl"
    counts = write_unlabeled_lists(plain, wdc, promap, held_out, list_size=8, max_lists=POOL)
    print(f"unlabeled lists: {counts}", flush=True)
    return write_teacher_scores(str(teacher), plain, scored)


def student(cache: Path, name: str, **settings) -> Path:
    folder = cache / "students" / name
    if not (folder / "polyrank-distill.json").exists():
        distill(DistillConfig(output=folder, **settings), log=lambda line: print(f"[{name}] {line}", flush=True))
    return folder


def depths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer counts such as 2,3,4, got {text!r}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-lists", type=int, default=400, help="lists per loss in the comparison (1 epoch)")
    parser.add_argument("--lists", type=int, default=1500, help="lists for the shallow students")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the shallow students")
    parser.add_argument("--two-tower-lists", type=int, default=400, help="lists for the final two-tower student")
    parser.add_argument("--layers", type=depths, default=(2, 3, 4),
                        help="shallow students' depths (teacher layers kept), comma-separated")
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="shallow students")
    parser.add_argument("--two-tower-learning-rate", type=float, default=1e-4)
    parser.add_argument("--temperature", type=float, default=1.0)
    args = parser.parse_args()
    cache = cache_dir_from(os.environ)
    teacher, held_out = trained_minilm(cache)
    evaluate = lambda folder, dim=None: evaluate_model(str(folder), held_out, EVAL_MAX_LENGTH, dim)  # noqa: E731
    report = {
        **run_facts(),
        "teacher_path": str(teacher),
        "eval_path": str(held_out),
        "settings": vars(args),
        "teacher": evaluate(teacher),
        "loss_comparison": {},
    }
    print(f"teacher: {report['teacher']}", flush=True)

    def shallow(loss, layers):
        name = f"shallow-{layers}-{loss}-{args.lists}-lr{args.learning_rate:g}-t{args.temperature:g}-e{args.epochs}"
        return student(cache, name, teacher=str(teacher), data=unlabeled_lists(cache, teacher, held_out, args.lists),
                       student="shallow", layers=layers, loss=loss, epochs=args.epochs,
                       learning_rate=args.learning_rate, temperature=args.temperature)

    def two_tower(loss, lists):
        name = f"two-tower-128-16-{loss}-{lists}-lr{args.two_tower_learning_rate:g}-t{args.temperature:g}-e1"
        return student(cache, name, teacher=str(teacher), data=unlabeled_lists(cache, teacher, held_out, lists),
                       student="two-tower", dim=128, reduced_dim=16, loss=loss, epochs=1,
                       learning_rate=args.two_tower_learning_rate, temperature=args.temperature)

    # Compared on the two-tower student: it learns within this budget, so the losses can differ.
    for loss in LISTWISE_LOSSES:
        report["loss_comparison"][loss] = evaluate(two_tower(loss, args.compare_lists))
        print(f"two-tower {loss}: {report['loss_comparison'][loss]}", flush=True)
    best = max(report["loss_comparison"], key=lambda loss: report["loss_comparison"][loss]["ndcg@10"])
    report["chosen_loss"] = best
    report["shallow"] = {}
    for layers in args.layers:
        folder = shallow(best, layers)
        report["shallow"][str(layers)] = {"path": str(folder), **evaluate(folder)}
        print(f"shallow, {layers} layers: {report['shallow'][str(layers)]}", flush=True)

    folder = two_tower(best, args.two_tower_lists)
    report["two_tower"] = {"path": str(folder), "dim_128": evaluate(folder), "dim_16": evaluate(folder, 16)}
    print(f"two-tower: {report['two_tower']}", flush=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
