"""Headless Locust load test of the `rerank` pipeline, bounded in time, loopback only.

    python perf/load.py [--users 8] [--duration 60s] [--protocol grpc|http]
                        [--host 127.0.0.1:8001[,127.0.0.1:8011...] | http://127.0.0.1:8080
                         | --repository DIR [--replicas N]]

Without --host it serves --repository (default: the mmBERT-small-shaped model exported to
build/bench/repository) on --replicas embedded Triton servers (the gRPC users spread their
calls over them round robin; for --protocol http, the HTTP API in front of the first) and stops
them afterwards. Writes
Locust's CSV and HTML reports and a one-paragraph summary to --results (perf/results/).
Calls rejected at capacity (admission control) have their own row and are counted apart from
failures (errors, wrong answers); exits non-zero if any request failed.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyrank.server import EmbeddedTritonServer, ServerConfig  # noqa: E402

LOOPBACK = ("127.", "localhost:", "[::1]:")
USER_CLASSES = {"grpc": "RerankUser", "http": "HttpRerankUser"}
# The Locust row of calls rejected at capacity: the "rerank" row holds the calls the server took.
REJECTED_ROW = "rerank: rejected at capacity"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8, help="concurrent Locust users (default 8)")
    parser.add_argument("--duration", default="60s", help="run time, Locust syntax: 15s, 2m (default 60s)")
    parser.add_argument("--protocol", choices=USER_CLASSES, default="grpc", help="gRPC client or HTTP API (default grpc)")
    parser.add_argument("--host", default=None,
                        help="a running server (loopback only): gRPC host:port, or the HTTP API's http://host:port")
    parser.add_argument("--repository", type=Path, default=None, help="repository to serve when --host is not given")
    parser.add_argument("--replicas", type=int, default=1, help="servers of that repository to start (default 1)")
    parser.add_argument("--results", type=Path, default=ROOT / "perf" / "results")
    parser.add_argument("--name", default="load", help="report file prefix (default load)")
    args = parser.parse_args(argv)

    if importlib.util.find_spec("locust") is None:
        print("load test needs Locust: pip install 'polyrank[load]'", file=sys.stderr)
        return 2
    if args.host is not None and not all(h.strip().removeprefix("http://").startswith(LOOPBACK) for h in args.host.split(",")):
        print(f"load goes only to this machine (127.0.0.1, localhost, [::1]); got --host {args.host}", file=sys.stderr)
        return 2
    if args.users < 1 or args.replicas < 1:
        print(f"--users and --replicas must be at least 1, got {args.users} and {args.replicas}", file=sys.stderr)
        return 2

    args.results.mkdir(parents=True, exist_ok=True)
    prefix = args.results / args.name
    with ExitStack() as running:
        host = args.host
        if host is None:
            repository = args.repository or _default_repository()
            servers = [running.enter_context(EmbeddedTritonServer(
                ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0))) for _ in range(args.replicas)]
            host = ",".join(server.grpc_url for server in servers)
            if args.protocol == "http":
                host = running.enter_context(_http_api(servers[0].grpc_url)).url
        command = [
            sys.executable, "-m", "locust", "-f", str(ROOT / "perf" / "locustfile.py"), USER_CLASSES[args.protocol],
            "--headless", "--users", str(args.users), "--spawn-rate", str(args.users),
            "--run-time", args.duration, "--stop-timeout", "30", "--host", host,
            "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary", "--loglevel", "WARNING",
        ]
        locust = subprocess.run(command, timeout=duration_seconds(args.duration) + 300)
    summary = summarize(prefix, args.users, args.duration, host)
    Path(f"{prefix}_summary.md").write_text(summary + "\n", encoding="utf-8")
    print(summary)
    return 0 if locust.returncode == 0 else 1


def summarize(prefix: Path, users: int, duration: str, host: str) -> str:
    """One paragraph from Locust's statistics: all calls, the rejected ones, and the latency of
    those the server took (a rejection's few milliseconds would flatter it)."""
    with open(f"{prefix}_stats.csv", newline="", encoding="utf-8") as stream:
        rows = {row["Name"]: row for row in csv.DictReader(stream)}
    total, taken = rows["Aggregated"], rows.get("rerank")
    requests, failures = int(total["Request Count"]), int(total["Failure Count"])
    rejected = int(rows[REJECTED_ROW]["Request Count"]) if REJECTED_ROW in rows else 0
    latency = (
        f"latency of the calls taken median {taken['50%']} ms, p95 {taken['95%']} ms, p99 {taken['99%']} ms, "
        f"max {float(taken['Max Response Time']):.0f} ms" if taken else "no call was taken"
    )
    return (
        f"Locust, {users} users for {duration} against {host} (rerank of 20-200 candidates per request): "
        f"{requests} requests, {failures} failures, {rejected} rejected at capacity, "
        f"{float(total['Requests/s']):.2f} requests/s; {latency}. "
        f"Reports: {prefix.name}_stats.csv, {prefix.name}.html."
    )


def duration_seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        return int(duration[:-1]) * units[duration[-1]] if duration[-1] in units else int(duration)
    except (ValueError, IndexError):
        raise SystemExit(f"--duration must look like 15s, 2m or 1h, got {duration!r}") from None


def _http_api(triton_url: str):
    from polyrank.gateway.app import GatewaySettings
    from polyrank.gateway.server import GatewayServer, Listener

    return GatewayServer(GatewaySettings(triton_url=triton_url), Listener(port=0))


def _default_repository() -> Path:
    from polyrank.export.assets import cache_dir_from, shaped_model
    from polyrank.export.build_repository import build_repository_unless_current
    from polyrank.export.config import ExportConfig

    model = shaped_model(cache_dir_from(os.environ))
    return build_repository_unless_current(ExportConfig(model=model, output=ROOT / "build" / "bench" / "repository"))


if __name__ == "__main__":
    sys.exit(main())
