"""One library-side reranker, driven by perf/bench_systems.py over stdin/stdout.

Runs in whichever virtual environment has the library (sentence-transformers needs its own:
its ONNX backend pins an older transformers than polyrank's, its OpenVINO backend another
optimum). Each system scores a 100-product request exactly as its documentation recommends;
the harness times the rounds.

    python perf/library_worker.py --system SYSTEM --model DIR --workload FILE [--calibration FILE]

Systems: st-torch, st-onnx, st-openvino (sentence-transformers' backends; OpenVINO picks bf16
by itself on CPUs that have it), st-openvino-int8 (its static int8 OpenVINO export, calibrated
on --calibration's product titles instead of its default hub data set), in-process (a polyrank
repository's scorer, length-sorted batches of 16).

Protocol: one JSON line per command on stdin ("round" or "scores"), one JSON line back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

BATCH_SIZE = 32  # sentence-transformers' default


class TokenCounter:
    """Counts real and computed (padded) tokens of every batch a library runs."""

    def __init__(self):
        self.real = 0
        self.computed = 0

    def add(self, attention_mask):
        self.real += int(attention_mask.sum())
        self.computed += int(attention_mask.shape[0] * attention_mask.shape[1])


def sentence_transformers_system(model: str, backend: str, max_length: int, counter: TokenCounter, **model_kwargs):
    from sentence_transformers import CrossEncoder

    encoder = CrossEncoder(model, device="cpu", backend=backend, max_length=max_length, model_kwargs=model_kwargs or None)

    def count(_module, args, kwargs):  # the first module gets each padded batch's features
        features = args[0] if args else kwargs.get("features", kwargs)
        counter.add(features["attention_mask"])

    encoder[0].register_forward_pre_hook(count, with_kwargs=True)

    def score(query, products):
        return [float(s) for s in encoder.predict([(query, p) for p in products], batch_size=BATCH_SIZE, activation_fn=_identity())]

    return score


def _identity():
    import torch

    return torch.nn.Identity()


def openvino_int8_system(model: str, max_length: int, counter: TokenCounter, calibration: Path):
    """sentence-transformers' static int8 OpenVINO export (export_static_quantized_openvino_model),
    calibrated on local product titles: its default calibration set is on the model hub."""
    from sentence_transformers import CrossEncoder
    from sentence_transformers.backend import export_static_quantized_openvino_model

    quantized = Path(model) / "openvino" / "openvino_model_qint8_quantized.xml"
    if not quantized.exists():
        titles = [d for line in calibration.read_text().splitlines() if line.strip() for d in json.loads(line)["documents"]]
        dataset = Path(model) / "calibration-dataset"
        dataset.mkdir(exist_ok=True)
        (dataset / "train.jsonl").write_text("".join(json.dumps({"sentence": t}) + "\n" for t in titles[:1000]))
        export_static_quantized_openvino_model(
            CrossEncoder(model, device="cpu", backend="openvino", max_length=max_length), None, model,
            dataset_name=str(dataset), dataset_config_name="default", dataset_split="train", column_name="sentence",
        )
    return sentence_transformers_system(
        model, "openvino", max_length, counter, file_name="openvino/openvino_model_qint8_quantized.xml"
    )


def in_process_system(model: str, max_length: int, counter: TokenCounter):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from perf.in_process import InProcessScorer

    runner = InProcessScorer(Path(model))

    def score(query, products):
        before = runner.tokens.real, runner.tokens.computed
        scores = runner.score(query, products)
        counter.real += runner.tokens.real - before[0]
        counter.computed += runner.tokens.computed - before[1]
        return [float(s) for s in scores]

    return score


def peak_rss_mb() -> float:
    """This process's peak resident memory. (getrusage's ru_maxrss would not do: Linux carries
    the parent's peak across fork and exec, so a worker started by a big harness reads big.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    # The protocol owns stdout; whatever the libraries print (sentence-transformers and
    # optimum print advice there) goes to stderr instead, even from C code.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", required=True, choices=["st-torch", "st-onnx", "st-openvino", "st-openvino-int8", "in-process"])
    parser.add_argument("--model", required=True, help="checkpoint dir (st-*) or model repository (in-process)")
    parser.add_argument("--calibration", type=Path, help="st-openvino-int8: JSONL lists whose documents calibrate it")
    parser.add_argument("--workload", required=True, type=Path, help="JSON list of {query, products}")
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    workload = json.loads(args.workload.read_text())
    counter = TokenCounter()
    if args.system == "in-process":
        score = in_process_system(args.model, args.max_length, counter)
    elif args.system == "st-openvino-int8":
        score = openvino_int8_system(args.model, args.max_length, counter, args.calibration)
    else:
        score = sentence_transformers_system(args.model, args.system.removeprefix("st-"), args.max_length, counter)
    score(workload[0]["query"], workload[0]["products"])  # warm-up
    counter.real = counter.computed = 0
    print(json.dumps({"ready": True}), file=protocol, flush=True)
    for command in sys.stdin:
        command = command.strip()
        if command == "round":
            latencies = []
            for request in workload:
                started = time.perf_counter()
                score(request["query"], request["products"])
                latencies.append(time.perf_counter() - started)
            reply = {"latencies_s": latencies, "real_tokens": counter.real, "computed_tokens": counter.computed}
        elif command == "scores":  # not counted in the padding figures
            counted = counter.real, counter.computed
            reply = {"scores": score(workload[0]["query"], workload[0]["products"])}
            counter.real, counter.computed = counted
        else:
            reply = {"error": f"unknown command {command!r}"}
        reply["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(reply), file=protocol, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
