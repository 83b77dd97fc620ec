"""Quality-gate metrics against hand-computed values, and the gate inside `polyrank export`."""

import json

import numpy as np
import pytest

from polyrank.export.build_repository import build_repository
from polyrank.export.config import ExportConfig
from polyrank.export.quality import (
    EvalQuery,
    GateThresholds,
    QualityGateError,
    average_precision,
    compare_rankings,
    load_eval_set,
    mrr_at_k,
    ndcg_at_k,
    spearman,
    top_k_overlap,
)
from polyrank.export.quantize import int8_weight_format


def quiet(_):
    pass


def test_spearman_matches_hand_computed_values():
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    # ranks (0,1,2,3) vs (0,2,1,3): 1 - 6*2/(4*15) = 0.8
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])) == pytest.approx(0.8)


def test_ndcg_mrr_map_match_hand_computed_values():
    labels = np.array([0.0, 1.0, 0.0, 1.0])
    scores = np.array([4.0, 3.0, 2.0, 1.0])  # ranking: 0, 1, 2, 3 -> relevant at ranks 2 and 4
    ideal = 1 + 1 / np.log2(3)
    assert ndcg_at_k(labels, scores) == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / ideal)
    assert mrr_at_k(labels, scores) == pytest.approx(0.5)
    assert average_precision(labels, scores) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert top_k_overlap(np.arange(20.0), np.arange(20.0)[::-1]) == 0.0
    assert top_k_overlap(np.arange(20.0), np.arange(20.0)) == 1.0


def test_gate_report_names_the_failed_figure():
    queries = [EvalQuery("q", ("a", "b", "c", "d"), (1.0, 0.1, 0.0, 0.0))]
    reference = [np.array([4.0, 3.0, 2.0, 1.0])]
    report = compare_rankings(queries, reference, [np.array([1.0, 2.0, 3.0, 4.0])], GateThresholds())
    assert report.mean_spearman == pytest.approx(-1.0)
    assert any(f.startswith("mean Spearman -1.0000 < 0.99") for f in report.failures())
    assert report.label_metrics["reference"]["mrr@10"] == 1.0
    assert report.label_metrics["candidate"]["mrr@10"] == pytest.approx(1 / 3, abs=1e-6)  # b is 3rd
    assert not compare_rankings(queries, reference, reference, GateThresholds()).failures()


def test_eval_set_is_read_from_jsonl_and_bad_lines_are_named(tmp_path):
    good = tmp_path / "eval.jsonl"
    good.write_text('{"query": "shoes", "documents": ["a", "b"], "labels": [1, 0]}\n\n')
    [query] = load_eval_set(good)
    assert query.labels == (1.0, 0.0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "shoes", "documents": ["a", "b"], "labels": [1]}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: 1 labels for 2 documents"):
        load_eval_set(bad)


@pytest.mark.parametrize(
    "machine, flags, expected",
    [
        ("x86_64", {"avx2", "avx512_vnni"}, (False, "AVX-512 VNNI")),
        ("x86_64", {"avx2"}, (True, "AVX2 (no VNNI)")),
        ("aarch64", set(), (False, "Arm64")),
    ],
)
def test_int8_weight_format_follows_the_instruction_set(machine, flags, expected):
    chosen = int8_weight_format(machine, flags)
    assert (chosen["reduce_range"], chosen["instruction_set"]) == expected


def test_fp32_export_passes_the_gate_and_records_it(tiny_repository):
    manifest = json.loads((tiny_repository / "scorer" / "1" / "manifest.json").read_text())
    gate = manifest["quality_gate"]
    assert gate["passed"] and gate["mean_spearman"] == pytest.approx(1.0)
    assert gate["mean_reference_ndcg_at_10"] == pytest.approx(1.0)
    assert manifest["quantization"] is None


def test_damaged_model_fails_the_gate_and_writes_nothing(tiny_modernbert_dir, tmp_path, monkeypatch):
    import polyrank.export.build_repository as builder

    def damaged(config, fp32_path, graph_path, model_path, encoder, log):  # a copy with scrambled weights
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(fp32_path))
        rng = np.random.default_rng(0)
        for initializer in graph.graph.initializer:
            weights = numpy_helper.to_array(initializer)
            if weights.dtype == np.float32 and weights.ndim == 2:
                initializer.CopyFrom(numpy_helper.from_array(rng.permutation(weights), initializer.name))
        onnx.save(graph, str(model_path))
        return {"method": "damaged on purpose"}

    monkeypatch.setattr(builder, "_convert", damaged)
    output = tmp_path / "repo"
    with pytest.raises(QualityGateError, match=r"fp32 model failed the quality gate: mean Spearman .* < 0.99"):
        build_repository(ExportConfig(model=str(tiny_modernbert_dir), output=output), log=quiet)
    assert not output.exists() and not (tmp_path / "repo.partial").exists()


@pytest.mark.parametrize("precision", ["int8-dynamic", "int8-static"])
def test_int8_repository_is_written_with_force_and_records_quantization(tiny_modernbert_dir, tmp_path, precision):
    config = ExportConfig(model=str(tiny_modernbert_dir), output=tmp_path / precision, precision=precision, force=True)
    repository = build_repository(config, log=quiet)
    manifest = json.loads((repository / "scorer" / "1" / "manifest.json").read_text())
    assert manifest["precision"] == precision
    assert manifest["quantization"]["ops"] == ["MatMul"]
    assert "mean_spearman" in manifest["quality_gate"]
    import onnx

    ops = {node.op_type for node in onnx.load(str(repository / "scorer" / "1" / "model.onnx")).graph.node}
    expected = "MatMulInteger" if precision == "int8-dynamic" else "QuantizeLinear"
    assert expected in ops or "DynamicQuantizeMatMul" in ops


def test_fp16_export_keeps_normalisation_in_fp32_and_passes_the_gate_on_its_own_graph(tiny_modernbert_dir, tmp_path):
    import onnx

    config = ExportConfig(model=str(tiny_modernbert_dir), output=tmp_path / "fp16", precision="fp16", force=True)
    repository = build_repository(config, log=quiet)
    manifest = json.loads((repository / "scorer" / "1" / "manifest.json").read_text())
    graph = onnx.load(str(repository / "scorer" / "1" / "model.onnx")).graph
    fp16_weights = [i for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert len(fp16_weights) > len(graph.initializer) // 2
    assert [i.type.tensor_type.elem_type for i in graph.output] == [onnx.TensorProto.FLOAT]  # fp32 I/O
    normalisations = [n for n in graph.node if n.op_type in ("LayerNormalization", "SkipLayerNormalization")]
    assert normalisations and manifest["quantization"]["kept_fp32"][:2] == ["LayerNormalization", "SkipLayerNormalization"]
    # fp16 moves scores by ~1e-3: the ranking of clearly separated pairs must survive
    assert manifest["quality_gate"]["mean_reference_ndcg_at_10"] > 0.99


def test_int8_dynamic_repository_serves_through_the_embedded_triton(tiny_modernbert_dir, tmp_path):
    from polyrank.client import RerankClient
    from polyrank.export.parity import onnx_scores, onnx_session
    from polyrank.export.samples import SAMPLE_QUERIES
    from polyrank.model_repository.pair_encoding import PairEncoder
    from polyrank.server import EmbeddedTritonServer, ServerConfig

    config = ExportConfig(model=str(tiny_modernbert_dir), output=tmp_path / "int8", precision="int8-dynamic", force=True)
    repository = build_repository(config, log=quiet)
    encoder = PairEncoder.from_file(repository / "tokenizer" / "1" / "tokenizer.json", config.max_length)
    session = onnx_session(repository / "scorer" / "1" / "model.onnx")
    server_config = ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0)
    with EmbeddedTritonServer(server_config) as server, RerankClient(server.grpc_url) as client:
        for sample in SAMPLE_QUERIES[:3]:
            products = list(sample.products)
            served = client.score(sample.query, products)
            in_process = onnx_scores(session, encoder, [sample.query] * len(products), products)
            # Dynamic quantization scales activations per run, so batch make-up moves scores slightly.
            assert np.isfinite(served).all()
            assert np.abs(served - in_process).max() < 1e-2
