"""polyrank side by side with the tools a search team would run instead, in one run.

Same model, same multilingual workload (perf/workload.py), same max length (256). Models:
mmbert-small-shaped (ModernBERT, mmBERT-small's shape, random weights: speed does not depend
on them) or minilm-wdc (the trained MiniLM product cross-encoder of perf/trained_teacher.py: a
BERT, which sentence-transformers' OpenVINO backend can export; it cannot export ModernBERT).
Systems, rounds alternating, each request = one query with 100 products:

  onnxruntime-sorted  in-process ONNX Runtime on polyrank's fp32 graph, length-sorted batches of 16
  polyrank-fp32       polyrank through the embedded Triton (gRPC), fp32 (ONNX Runtime)
  polyrank-bf16       the same, bf16 (OpenVINO; f32 on a CPU without bf16 instructions)
  polyrank-int8       the same, int8-mixed (OpenVINO int8, feed-forward down-projections kept)
  st-torch            sentence-transformers CrossEncoder.predict, torch fp32, batch 32
  st-onnx             sentence-transformers, backend="onnx" (it exports the model itself)
  st-openvino         sentence-transformers, backend="openvino" (bf16 by itself where the CPU has it)
  st-openvino-int8    its static int8 OpenVINO export, calibrated on the same texts as polyrank-int8
  infinity            Infinity (infinity-emb, torch engine) over HTTP

Servers run at 1 and 4 concurrent clients; libraries are called from one thread.
The libraries run in their own virtual environments (build/venv-peers, build/venv-peers-openvino,
build/venv-infinity; `make bench` creates them): they pin transformers 4.x and other optimums.

    .venv/bin/python perf/bench_systems.py [--model mmbert-small-shaped|minilm-wdc] [--queries 8] [--rounds 2]

Writes perf/results/systems.json and systems.png (minilm-wdc: systems-minilm.json / .png).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.alternating import alternating_rounds, latency_summary  # noqa: E402
from perf.run_facts import run_facts  # noqa: E402
from perf.systems import (  # noqa: E402
    CANDIDATES,
    MAX_LENGTH,
    SERVER_CONCURRENCY,
    InfinitySystem,
    LibraryWorker,
    TritonSystem,
)
from perf.trained_teacher import WDC, trained_minilm  # noqa: E402
from perf.workload import make_workload  # noqa: E402
from polyrank.export.assets import cache_dir_from, shaped_model  # noqa: E402
from polyrank.export.build_repository import build_repository_unless_current  # noqa: E402
from polyrank.export.config import ExportConfig  # noqa: E402
from polyrank.export.samples import calibration_lists  # noqa: E402

RESULTS = ROOT / "perf" / "results"
POLYRANK_PRECISIONS = {"polyrank-fp32": "fp32", "polyrank-bf16": "bf16", "polyrank-int8": "int8-mixed"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("mmbert-small-shaped", "minilm-wdc"), default="mmbert-small-shaped")
    parser.add_argument("--queries", type=int, default=8, help="100-product requests per system per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench-systems")
    parser.add_argument("--peers-python", type=Path, default=ROOT / "build" / "venv-peers" / "bin" / "python")
    parser.add_argument("--peers-openvino-python", type=Path,
                        default=ROOT / "build" / "venv-peers-openvino" / "bin" / "python")
    parser.add_argument("--infinity", type=Path, default=ROOT / "build" / "venv-infinity" / "bin" / "infinity_emb")
    args = parser.parse_args()
    args.workdir = args.workdir / args.model
    args.workdir.mkdir(parents=True, exist_ok=True)

    model, calibration = _model_and_calibration(args.model, args.workdir)
    repositories = {
        name: build_repository_unless_current(ExportConfig(
            model=str(model), output=args.workdir / f"repository-{precision}", max_length=MAX_LENGTH,
            precision=precision, force=True, allow_f32_fallback=True,
            calibration=calibration if precision == "int8-mixed" else None,
        ))
        for name, precision in POLYRANK_PRECISIONS.items()
    }
    requests = make_workload(queries=args.queries, candidates=CANDIDATES, seed=0)
    workload_file = args.workdir / "workload.json"
    workload_file.write_text(json.dumps([{"query": r.query, "products": list(r.products)} for r in requests]))
    transformers4_model = _transformers4_copy(model, args.workdir / "model-transformers4")

    def library(system, python):
        return LibraryWorker(system, python, transformers4_model, workload_file, calibration)

    systems = {
        "onnxruntime-sorted": LibraryWorker("in-process", Path(sys.executable), repositories["polyrank-fp32"], workload_file),
        **{name: TritonSystem(repository, requests) for name, repository in repositories.items()},
        "st-torch": library("st-torch", args.peers_python),
        "st-onnx": library("st-onnx", args.peers_python),
        "st-openvino": library("st-openvino", args.peers_openvino_python),
        "st-openvino-int8": library("st-openvino-int8", args.peers_openvino_python),
        "infinity": InfinitySystem(args.infinity, transformers4_model, requests),
    }
    unavailable = {}
    for name, system in list(systems.items()):
        print(f"starting {name}", flush=True)
        try:
            system.start()
        except Exception as error:  # record exactly why a peer could not run, and go on
            unavailable[name] = str(error)
            del systems[name]
            print(f"  {name} unavailable: {error}", flush=True)

    runs = {}  # "system@concurrency" -> {"latencies_s": [...], "pairs_per_s": [per round]}
    try:
        reference = np.array(systems["onnxruntime-sorted"].scores_of_first_request())
        agreement = {name: float(np.abs(np.array(s.scores_of_first_request()) - reference).max()) for name, s in systems.items()}
        calls = {
            f"{name}@{concurrency}": (lambda s=system, c=concurrency: s.run_round(c))
            for name, system in systems.items()
            for concurrency in system.concurrency_levels
        }
        timed = alternating_rounds(calls, args.rounds, dict.fromkeys(calls, CANDIDATES * len(requests)),
                                   log=lambda line: print(line, flush=True))
        for run_name, result in timed.items():
            name, concurrency = run_name.rsplit("@", 1)
            runs[run_name] = {"system": name, "concurrency": int(concurrency), **result}
        facts = {name: {"peak_rss_mb": round(s.peak_rss_mb()), "padding_efficiency": s.padding_efficiency()} for name, s in systems.items()}
    finally:
        for system in systems.values():
            system.stop()

    table = [_summary(run, facts[run["system"]], agreement[run["system"]]) for run in runs.values()]
    by_name = {row["run"]: row for row in table}
    gates = {name: _manifest(repository) for name, repository in repositories.items()}
    best = _best_passing(by_name, gates)
    best_peer = max(("st-openvino@1", "st-openvino-int8@1"), key=lambda r: by_name[r]["pairs_per_s"] if r in by_name else 0)
    ratios = {
        "polyrank-fp32 vs onnxruntime-sorted": _ratio(by_name, "polyrank-fp32@1", "onnxruntime-sorted@1"),
        "polyrank-fp32 vs st-torch": _ratio(by_name, "polyrank-fp32@1", "st-torch@1"),
        f"best gate-passing polyrank ({best}) vs polyrank-fp32": _ratio(by_name, f"{best}@1", "polyrank-fp32@1"),
        f"best gate-passing polyrank ({best}) vs st-torch": _ratio(by_name, f"{best}@1", "st-torch@1"),
        f"best gate-passing polyrank ({best}) vs best sentence-transformers OpenVINO ({best_peer[:-2]})":
            _ratio(by_name, f"{best}@1", best_peer),
        f"best gate-passing polyrank ({best}) vs infinity (4 clients)": _ratio(by_name, f"{best}@4", "infinity@4"),
        "polyrank-fp32 vs infinity (4 clients)": _ratio(by_name, "polyrank-fp32@4", "infinity@4"),
    }
    result = {
        "benchmark": "side by side: pairs/s and latency of 100-product reranks",
        **run_facts(),
        "model": MODELS[args.model],
        "polyrank_precisions": {
            name: {"precision": m["precision"], "runs_in": m["runtime"].get("inference_precision", m["precision"]),
                   "gate_passed": m["quality_gate"]["passed"]}
            for name, m in gates.items()
        },
        "workload": f"{args.queries} queries x {CANDIDATES} products (perf/workload.py, seed 0), {args.rounds} alternating rounds",
        "pairs_per_s": "median over rounds of (pairs in the round / its wall time)",
        "score_agreement": "max |score - in-process ONNX Runtime score| on the first request",
        "ratios_pairs_per_s": ratios,
        "runs": table,
        "unavailable": unavailable,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = "systems" if args.model == "mmbert-small-shaped" else "systems-minilm"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(table, RESULTS / f"{stem}.png")
    for row in table:
        print(json.dumps({k: v for k, v in row.items()}))
    print(json.dumps(ratios, indent=2))
    print(f"wrote {RESULTS / stem}.json and .png")
    return 0


MODELS = {
    "mmbert-small-shaped": "mmBERT-small-shaped ModernBERT cross-encoder, random weights (seed 0), max length 256",
    "minilm-wdc": "all-MiniLM-L6-v2 cross-encoder fine-tuned on WDC product matching (perf/trained_teacher.py), max length 256",
}


def _model_and_calibration(model_name: str, workdir: Path) -> tuple[Path, Path]:
    """The checkpoint, and the lists both int8 systems (polyrank's and sentence-transformers')
    calibrate on: the built-in calibration lists, or WDC training titles for the WDC model."""
    cache = cache_dir_from(os.environ)
    calibration = workdir / "calibration.jsonl"
    if model_name == "mmbert-small-shaped":
        lines = [{"query": query, "documents": list(documents)} for query, documents in calibration_lists()]
        calibration.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
        return Path(shaped_model(cache)), calibration
    from polyrank.training.unlabeled import write_unlabeled_lists

    write_unlabeled_lists(calibration, [WDC / "train.txt.small"], list_size=32, max_lists=200, seed=1)
    return trained_minilm(cache)[0], calibration


def _manifest(repository: Path) -> dict:
    return json.loads((repository / "scorer" / "1" / "manifest.json").read_text())


def _best_passing(rows: dict, manifests: dict) -> str:
    """The fastest polyrank system (one client) whose export passed the quality gate."""
    passing = [name for name, m in manifests.items() if m["quality_gate"]["passed"] and f"{name}@1" in rows]
    return max(passing, key=lambda name: rows[f"{name}@1"]["pairs_per_s"])


def _transformers4_copy(model: Path, folder: Path) -> Path:
    """The checkpoint as transformers 4.x reads it: same weights (linked), its tokenizer class name."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        link = folder / name
        if not link.exists():
            link.symlink_to(model / name)
    tokenizer_config = json.loads((model / "tokenizer_config.json").read_text())
    tokenizer_config.pop("backend", None)
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"  # "TokenizersBackend" is transformers 5's name
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    for exported in ("onnx", "openvino", "calibration-dataset"):  # sentence-transformers re-exports each run
        shutil.rmtree(folder / exported, ignore_errors=True)
    return folder


def _summary(run: dict, facts: dict, agreement: float) -> dict:
    return {
        "run": f"{run['system']}@{run['concurrency']}",
        "system": run["system"],
        "concurrency": run["concurrency"],
        **latency_summary(run),
        "padding_efficiency": facts["padding_efficiency"],
        "peak_rss_mb": facts["peak_rss_mb"],
        "score_agreement": agreement,
    }


def _ratio(rows: dict, numerator: str, denominator: str):
    if numerator not in rows or denominator not in rows:
        return None
    return round(rows[numerator]["pairs_per_s"] / rows[denominator]["pairs_per_s"], 2)


def _plot(table: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(13, 5))
    for system in dict.fromkeys(row["system"] for row in table):
        rows = sorted((r for r in table if r["system"] == system), key=lambda r: r["concurrency"])
        throughput.plot([r["concurrency"] for r in rows], [r["pairs_per_s"] for r in rows], marker="o", label=system)
    throughput.set(xlabel="concurrent clients", ylabel="pairs/s", title="Throughput vs concurrency", xticks=list(SERVER_CONCURRENCY))
    throughput.legend()
    single = [r for r in table if r["concurrency"] == 1]
    positions = np.arange(len(single))
    for offset, percentile in zip((-0.25, 0, 0.25), ("p50_ms", "p95_ms", "max_ms")):
        latency.bar(positions + offset, [r[percentile] / 1000 for r in single], width=0.25, label=percentile[:3])
    latency.set_xticks(positions, [r["system"] for r in single], rotation=20)
    latency.set(ylabel="seconds per 100-product rerank", title="Latency, one client")
    latency.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
