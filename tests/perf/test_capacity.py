"""The replica arithmetic of perf/capacity.py, and that it reads the result files the benchmarks write."""

from perf.capacity import RESULTS, measured_capacity, replicas_needed


def test_replicas_cover_the_load_at_the_target_utilization_and_never_fewer_than_two():
    assert replicas_needed(100, 20, 1.0, 200, 200, 0.7) == (15, 0.5)  # 2000 pairs/s / 140 per replica
    assert replicas_needed(10, 1, 1.0, 200, 200, 0.7)[0] == 2
    assert replicas_needed(100, 20, 1.0, 50, 80, 0.7) == (None, 2.0)  # one request alone misses p95


def test_every_result_file_gives_each_precision_a_capacity():
    for path in RESULTS.values():
        capacity = measured_capacity(path)
        assert {"fp32", "int8"} <= set(capacity)
        assert all(0 < single <= loaded for single, loaded, _ in capacity.values())
