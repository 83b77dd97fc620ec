"""polyrank's own figures on Triton's metrics endpoint."""

from __future__ import annotations

import urllib.request


def scorer_token_counts(metrics_url: str) -> dict[str, float]:
    """{'real': ..., 'computed': ...} tokens the embedded scorer has run since it started
    (from Triton's metrics endpoint); padding efficiency is real / computed."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("polyrank_scorer_tokens_total{"):
            labels, value = line.rsplit(" ", 1)
            kind = labels.split('kind="', 1)[1].split('"', 1)[0]
            counts[kind] = counts.get(kind, 0.0) + float(value)
    return counts
