"""Throughput over 1, 2 and 3 replicas on this machine: the Locust load test (perf/load.py)
against N embedded servers of one repository, the users' calls spread round robin.

    .venv/bin/python perf/replicas.py [--repository DIR] [--users 6] [--duration 60s] [--replicas 1,2,3]

Rejected calls (the server at capacity) have their own row; a rejected user waits the time the
server asked for before its next call. On one 2-core machine the replicas share the cores, so
this measures what more replicas cost or give there (the client's round robin, more model
processes), not how a cluster scales: each replica of a cluster has its own cores, which
perf/capacity.py assumes. Writes perf/results/replicas.json (the Locust reports of each run
in perf/results/replicas-N*).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.load import REJECTED_ROW, duration_seconds  # noqa: E402
from perf.run_facts import run_facts  # noqa: E402

RESULTS = ROOT / "perf" / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "build" / "overload" / "admission",
                        help="repository to serve (default: the trained MiniLM of perf/overload.py)")
    parser.add_argument("--users", type=int, default=6)
    parser.add_argument("--duration", default="60s")
    parser.add_argument("--replicas", default="1,2,3")
    args = parser.parse_args()
    report = {**run_facts(), "repository": str(args.repository), "users": args.users, "duration": args.duration, "runs": []}
    for replicas in [int(n) for n in args.replicas.split(",")]:
        name = f"replicas-{replicas}"
        subprocess.run([sys.executable, str(ROOT / "perf" / "load.py"), "--repository", str(args.repository),
                        "--replicas", str(replicas), "--users", str(args.users), "--duration", args.duration,
                        "--results", str(RESULTS), "--name", name], check=False)
        with open(RESULTS / f"{name}_stats.csv", newline="") as stream:
            rows = {row["Name"]: row for row in csv.DictReader(stream)}
        taken, rejected = rows.get("rerank"), rows.get(REJECTED_ROW)
        answered = int(taken["Request Count"]) - int(taken["Failure Count"]) if taken else 0
        seconds = duration_seconds(args.duration)
        run = {"replicas": replicas, "answered": answered, "failed": int(taken["Failure Count"]) if taken else 0,
               "rejected_at_capacity": int(rejected["Request Count"]) if rejected else 0,
               "answered_per_s": round(answered / seconds, 2),
               "answered_pairs_per_s": round(answered * float(taken["Average Content Size"]) / seconds, 1) if taken else 0.0,
               "answered_median_ms": float(taken["50%"]) if taken else None, "answered_p95_ms": float(taken["95%"]) if taken else None}
        report["runs"].append(run)
        print(json.dumps(run), flush=True)
    (RESULTS / "replicas.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'replicas.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
