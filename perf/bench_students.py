"""Students vs teacher through the embedded Triton, from one repository and one server.

    .venv/bin/python perf/bench_students.py [--requests 8] [--rounds 2]

Needs perf/train_students.py to have run (it writes perf/results/students_training.json).
1. One repository: the MiniLM teacher (`rerank`), the shallow students (`shallow_K`, K of
   the teacher's layers), the two-tower student at 128 dimensions (`two_tower`) and at its
   reduced 16 (`two_tower_16`).
2. Quality through Triton on the 200 held-out labelled WDC queries: NDCG@10 / MRR@10 / MAP,
   each as a share of the teacher's.
3. Speed, rounds alternating, on the multilingual 100-product workload: pairs/s of each model
   with product texts, and of the two-tower models against product embeddings computed
   ahead of time with the embed model; ratios to the teacher.
4. The same pipeline on the mmBERT-small-shaped model (random weights: quality is
   meaningless, this proves the path and gives the speed ratios at mmBERT's size).
Writes perf/results/students.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.alternating import alternating_rounds, one_after_another, pairs_per_s  # noqa: E402
from perf.run_facts import run_facts  # noqa: E402
from perf.workload import make_workload  # noqa: E402
from polyrank.client import RerankClient  # noqa: E402
from polyrank.evaluate import evaluate_scores  # noqa: E402
from polyrank.export.assets import cache_dir_from, shaped_model  # noqa: E402
from polyrank.export.build_repository import build_repository  # noqa: E402
from polyrank.export.config import ExportConfig  # noqa: E402
from polyrank.ranking import read_lists  # noqa: E402
from polyrank.server import EmbeddedTritonServer, ServerConfig  # noqa: E402
from polyrank.training.distill import DistillConfig, distill  # noqa: E402
from polyrank.training.unlabeled import write_unlabeled_lists  # noqa: E402

RESULTS = ROOT / "perf" / "results"
MAX_LENGTH = 128
REDUCED_DIM = 16


def build(output: Path, models: dict[str, str], log) -> tuple[str, ...]:
    """The teacher (`rerank`) and the students (named by `models`' keys; `two_tower` also at
    REDUCED_DIM) into one repository, rebuilt each run; returns the served model names."""
    settings = dict(output=output, max_length=MAX_LENGTH, overwrite=True)
    build_repository(ExportConfig(model=models["rerank"], **settings), log)
    for name, path in models.items():
        if name != "rerank":
            build_repository(ExportConfig(model=path, name=name, add=True, **settings), log)
    reduced = f"two_tower_{REDUCED_DIM}"
    build_repository(ExportConfig(model=models["two_tower"], name=reduced, embedding_dim=REDUCED_DIM,
                                  add=True, **settings), log)
    return (*models, reduced)


def quality(client_for, names: tuple[str, ...], eval_path: Path) -> dict:
    eval_set = read_lists(eval_path)
    report = {}
    for model in names:
        client = client_for(model)
        report[model] = evaluate_scores(eval_set, [client.score(q.query, list(q.documents)) for q in eval_set])
    teacher = report["rerank"]
    for model, figures in report.items():
        figures["share_of_teacher"] = {k: round(figures[k] / teacher[k], 4) for k in ("ndcg@10", "mrr@10", "map")}
    return report


def speed(client_for, names: tuple[str, ...], workload, rounds: int) -> dict:
    """pairs/s per system, rounds alternating; two-tower models also against precomputed embeddings."""
    def texts(model):
        client = client_for(model)
        return lambda request: client.score(request.query, list(request.products))

    catalogue_speed = {}

    def precomputed(model):
        client = client_for(model)
        started = time.perf_counter()
        catalogue = {r.query: client.embed(list(r.products)) for r in workload}  # ahead of time
        catalogue_speed[model] = round(sum(len(r.products) for r in workload) / (time.perf_counter() - started), 1)
        return lambda request: client.rerank_embeddings(request.query, catalogue[request.query])

    calls = {model: texts(model) for model in names}
    calls.update({f"{model}_precomputed": precomputed(model) for model in names if model.startswith("two_tower")})
    systems = {name: one_after_another(call, workload) for name, call in calls.items()}
    pairs = sum(len(r.products) for r in workload)
    per_s = pairs_per_s(alternating_rounds(systems, rounds, dict.fromkeys(systems, pairs)))
    return {
        "pairs_per_s": per_s,
        "vs_teacher": {n: round(v / per_s["rerank"], 2) for n, v in per_s.items()},
        "precomputed_counts": "query encoding and dot products only; the catalogue is embedded ahead of time",
        "catalogue_products_per_s": catalogue_speed,
    }


def serve(repository: Path, ready: tuple[str, ...], work):
    config = ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0, ready_models=ready)
    clients = {}
    with EmbeddedTritonServer(config) as server:
        client_for = lambda m: clients.setdefault(m, RerankClient(server.grpc_url, model_name=m, timeout_s=300))  # noqa: E731
        try:
            return work(client_for)
        finally:
            for client in clients.values():
                client.close()


def mmbert_path(cache: Path, workdir: Path, workload, rounds: int, log) -> dict:
    """Distil both students from the mmBERT-small-shaped model on a few lists, serve, time."""
    teacher = shaped_model(cache)
    lists = workdir / "mmbert-lists.jsonl"
    wdc = sorted((ROOT.parent / "shared" / "data" / "wdc" / "all").glob("train.txt.small"))
    write_unlabeled_lists(lists, wdc, list_size=8, max_lists=16)
    common = dict(teacher=teacher, data=lists, epochs=1, lists_per_batch=4, max_length=MAX_LENGTH)
    shallow = distill(DistillConfig(student="shallow", layers=6, output=workdir / "mmbert-shallow", **common), log)
    two_tower = distill(DistillConfig(student="two-tower", dim=128, reduced_dim=16,
                                      output=workdir / "mmbert-two-tower", **common), log)
    models = {"rerank": teacher, "shallow_6": str(shallow), "two_tower": str(two_tower)}
    repository = workdir / "mmbert-repository"
    names = build(repository, models, log)
    return {"teacher": teacher, "lists": 16,
            **serve(repository, names, lambda client_for: speed(client_for, names, workload, rounds))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="100-product requests per system per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench-students")
    parser.add_argument("--skip-mmbert", action="store_true")
    args = parser.parse_args()
    cache = cache_dir_from(os.environ)
    log = lambda line: print(line, flush=True)  # noqa: E731
    training = json.loads((RESULTS / "students_training.json").read_text())
    models = {
        "rerank": training["teacher_path"],
        **{f"shallow_{layers}": student["path"] for layers, student in training["shallow"].items()},
        "two_tower": training["two_tower"]["path"],
    }
    args.workdir.mkdir(parents=True, exist_ok=True)
    repository = args.workdir / "minilm-repository"
    names = build(repository, models, log)
    workload = make_workload(queries=args.requests, candidates=100, seed=0)

    def minilm(client_for):
        return {"quality": quality(client_for, names, Path(training["eval_path"])),
                **speed(client_for, names, workload, args.rounds)}

    report = {
        **run_facts(),
        "max_length": MAX_LENGTH,
        "workload": f"{args.requests} multilingual queries x 100 products, {args.rounds} alternating rounds",
        "minilm": {"models": models, **serve(repository, names, minilm)},
    }
    print(json.dumps(report["minilm"], indent=2), flush=True)
    if not args.skip_mmbert:
        report["mmbert_small_shaped"] = mmbert_path(cache, args.workdir, workload, args.rounds, log)
        print(json.dumps(report["mmbert_small_shaped"], indent=2), flush=True)
    (RESULTS / "students.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'students.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
