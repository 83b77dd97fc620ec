"""Which MatMuls does int8-dynamic hurt? Quantize one at a time and measure the ranking.

For each MatMul of the trained MiniLM cross-encoder (see perf/bench_precision.py), only that
node is quantized (U8S8, 8-bit per-channel weights) and the scores of the WDC eval queries
are compared with the fp32 graph: mean Spearman per query and mean |score difference|.
Then the most sensitive nodes are kept fp32 and the rest quantized, to see whether
mixed precision reaches the gate.

    .venv/bin/python perf/int8_sensitivity.py [--queries 100] [--keep 7]

Writes perf/results/int8_sensitivity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.run_facts import run_facts  # noqa: E402
from perf.bench_precision import trained_minilm  # noqa: E402
from polyrank.export.assets import cache_dir_from  # noqa: E402
from polyrank.export.optimize import quiet_onnxruntime_tools  # noqa: E402
from polyrank.export.parity import onnx_scores, onnx_session  # noqa: E402
from polyrank.ranking import read_lists, spearman  # noqa: E402
from polyrank.checkpoint import load_checkpoint  # noqa: E402
from polyrank.export.to_onnx import export_onnx  # noqa: E402
from polyrank.model_repository.pair_encoding import PairEncoder  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100, help="WDC eval queries per measurement")
    parser.add_argument("--keep", type=int, default=7, help="most sensitive MatMuls kept fp32 in the mixed run")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "int8-sensitivity")
    args = parser.parse_args()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model, eval_path = trained_minilm(cache_dir_from(os.environ))
    checkpoint = load_checkpoint(str(model))
    encoder = PairEncoder(checkpoint.tokenizer, 256, checkpoint.pad_id)
    args.workdir.mkdir(parents=True, exist_ok=True)
    fp32 = args.workdir / "fp32.onnx"
    export_onnx(checkpoint, fp32, 18)
    queries = read_lists(eval_path)[: args.queries]

    def scores(path):
        session = onnx_session(path)
        return [onnx_scores(session, encoder, [q.query] * len(q.documents), list(q.documents)) for q in queries]

    reference = scores(fp32)

    def measure(nodes):
        candidate = args.workdir / "candidate.onnx"
        with quiet_onnxruntime_tools():
            quantize_dynamic(str(fp32), str(candidate), nodes_to_quantize=nodes, op_types_to_quantize=["MatMul"],
                             per_channel=True, reduce_range=False, weight_type=QuantType.QInt8)
        got = scores(candidate)
        return {
            "mean_spearman": round(float(np.mean([spearman(a.astype(float), b.astype(float)) for a, b in zip(reference, got)])), 4),
            "mean_abs_diff": round(float(np.mean(np.concatenate([np.abs(a - b) for a, b in zip(reference, got)]))), 4),
        }

    weights = {i.name for i in onnx.load(str(fp32)).graph.initializer}
    linear = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "MatMul" and set(n.input) & weights]
    single = {}
    for node in linear:
        single[node] = measure([node])
        print(node, single[node], flush=True)
    ranked = sorted(linear, key=lambda n: single[n]["mean_spearman"])
    kept = ranked[: args.keep]
    result = {
        "benchmark": "int8-dynamic sensitivity per MatMul, MiniLM cross-encoder trained on WDC",
        **run_facts(),
        "queries": len(queries),
        "one_node_quantized": single,
        "all_quantized": measure(linear),
        "kept_fp32": kept,
        "all_but_kept_quantized": measure([n for n in linear if n not in kept]),
    }
    output = ROOT / "perf" / "results" / "int8_sensitivity.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("all_quantized", "kept_fp32", "all_but_kept_quantized")}, indent=2))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
