"""The Locust load test's CI smoke version: 15 s against the real embedded server, zero failures.
Calls rejected at capacity are not failures (a slower machine than this one rejects some of the
4 users' calls within the 2 s deadline): they have their own row, and most calls are taken."""

import csv
import subprocess
import sys
from pathlib import Path

from perf.load import REJECTED_ROW

ROOT = Path(__file__).resolve().parents[2]


def run_load(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "perf" / "load.py"), *args], capture_output=True, text=True, timeout=600
    )


def stats_rows(results):
    with open(results / "load_stats.csv", newline="") as stream:
        return {row["Name"]: row for row in csv.DictReader(stream)}


def assert_no_failures_and_most_calls_taken(results):
    rows = stats_rows(results)
    total, taken = rows["Aggregated"], rows["rerank"]
    assert int(total["Failure Count"]) == 0
    assert int(taken["Request Count"]) > int(total["Request Count"]) / 2
    rejected = int(rows[REJECTED_ROW]["Request Count"]) if REJECTED_ROW in rows else 0
    summary = (results / "load_summary.md").read_text()
    assert f"{total['Request Count']} requests, 0 failures, {rejected} rejected at capacity" in summary
    return summary


def test_fifteen_second_load_has_zero_failures(triton_server, tmp_path):
    result = run_load("--host", triton_server.grpc_url, "--users", "4", "--duration", "15s", "--results", str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert_no_failures_and_most_calls_taken(tmp_path)
    assert (tmp_path / "load.html").stat().st_size > 0


def test_http_load_through_the_api_it_starts_has_zero_failures(tiny_repository, tmp_path):
    result = run_load("--protocol", "http", "--repository", str(tiny_repository), "--users", "4", "--duration", "10s",
                      "--results", str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "against http://127.0.0.1:" in assert_no_failures_and_most_calls_taken(tmp_path)


def test_load_refuses_targets_off_this_machine(tmp_path):
    result = run_load("--host", "10.0.0.1:8001", "--duration", "1s", "--results", str(tmp_path))
    assert result.returncode == 2
    assert "load goes only to this machine" in result.stderr
    assert not (tmp_path / "load_stats.csv").exists()
