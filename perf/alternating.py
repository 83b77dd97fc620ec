"""Time several systems on one workload, rounds alternating, so machine drift lands on all alike."""

from __future__ import annotations

import time
from typing import Callable


def alternating_seconds(systems: dict[str, Callable], workload, rounds: int) -> dict[str, float]:
    """Total seconds each system took to serve every workload request, over `rounds` rounds in
    which the systems take turns; one untimed warm-up request each first."""
    for run in systems.values():
        run(workload[0])
    seconds = dict.fromkeys(systems, 0.0)
    for _ in range(rounds):
        for name, run in systems.items():
            started = time.perf_counter()
            for request in workload:
                run(request)
            seconds[name] += time.perf_counter() - started
    return seconds
