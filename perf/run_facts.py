"""What every benchmark result file records about its run: the exact command, the machine
and the CPU's instruction set (bf16 and int8 speed depend on it)."""

from __future__ import annotations

import os
import platform
import sys
import time

from polyrank.model_repository.runtimes import instruction_set


def run_facts() -> dict:
    return {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "instruction_set": instruction_set(),
        "date": time.strftime("%Y-%m-%d"),
    }
