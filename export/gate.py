"""Runs the quality gate: the PyTorch fp32 reference scores the gate's lists once, then each
candidate precision is judged by the very runtime the server will run it with."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from polyrank.export.quality import EvalQuery, GateReport, GateThresholds, compare_rankings
from polyrank.export.scoring import runtime_batch_scorer, score_sorted, torch_batch_scorer
from polyrank.checkpoint import Checkpoint
from polyrank.model_repository.pair_encoding import PairEncoder

if TYPE_CHECKING:
    from polyrank.export.precisions import ScorerFiles


_REFERENCES: dict = {}  # the last reference scored: (checkpoint, max length, lists) -> scores


@dataclass(frozen=True)
class Verdict:
    report: GateReport
    pairs_per_s: float  # while scoring the gate's lists in-process (length-sorted batches of 16)

    @property
    def passed(self) -> bool:
        return not self.report.failures()


class QualityGate:
    def __init__(
        self, checkpoint: Checkpoint, encoder: PairEncoder, eval_set: Sequence[EvalQuery], thresholds: GateThresholds
    ):
        self.encoder, self.eval_set, self.thresholds = encoder, list(eval_set), thresholds
        key = (checkpoint.source, encoder.max_length, tuple(self.eval_set))
        if key not in _REFERENCES:  # exporting several precisions of one checkpoint in one process
            reference = torch_batch_scorer(checkpoint)
            _REFERENCES.clear()
            _REFERENCES[key] = [score_sorted(reference, encoder, q.query, q.documents).astype(np.float64) for q in self.eval_set]
        self.reference = _REFERENCES[key]

    @property
    def pairs(self) -> int:
        return sum(len(q.documents) for q in self.eval_set)

    def judge(self, runtime) -> Verdict:
        """Scores every list with `runtime` (runtimes.py) and compares with the reference."""
        run = runtime_batch_scorer(runtime)
        started = time.perf_counter()
        candidate = [score_sorted(run, self.encoder, q.query, q.documents).astype(np.float64) for q in self.eval_set]
        seconds = time.perf_counter() - started
        report = compare_rankings(self.eval_set, self.reference, candidate, self.thresholds)
        return Verdict(report, round(self.pairs / seconds, 1))


@dataclass(frozen=True)
class Trial:
    """One candidate precision: its files, what its runtime really runs, the gate's verdict."""

    files: "ScorerFiles"
    runtime: dict  # the runtime's describe()
    verdict: Verdict

    def row(self) -> dict:
        """The candidate's line of the comparison table (and of the manifest)."""
        report = self.verdict.report
        runs = self.runtime.get("inference_precision", self.files.precision)
        return {
            "precision": self.files.precision,
            "runtime": self.files.runtime,
            "runs_in": runs,
            "pairs_per_s": self.verdict.pairs_per_s,
            "top1_fidelity": report.top1_fidelity,
            "top10_fidelity": report.top10_fidelity,
            "clear_pair_concordance": report.clear_pair_concordance,
            "reference_ndcg_at_10": report.mean_reference_ndcg_at_10,
            "passed": self.verdict.passed,
        }


def fastest_passing(trials: Sequence[Trial]) -> Trial | None:
    passing = [t for t in trials if t.verdict.passed]
    return max(passing, key=lambda t: t.verdict.pairs_per_s) if passing else None


def format_table(rows: Sequence[dict]) -> str:
    """The comparison `--precision auto` prints: one line per candidate."""
    header = f"{'precision':<13}{'runtime':<13}{'runs in':<9}{'pairs/s':>9}{'top-1':>8}{'top-10':>8}{'pairs':>8}{'ref-NDCG':>10}  gate"
    lines = [header]
    for row in rows:
        if "unavailable" in row:
            lines.append(f"{row['precision']:<13}unavailable: {row['unavailable']}")
            continue
        lines.append(
            f"{row['precision']:<13}{row['runtime']:<13}{row['runs_in']:<9}{row['pairs_per_s']:>9.1f}"
            f"{row['top1_fidelity']:>8.3f}{row['top10_fidelity']:>8.3f}{row['clear_pair_concordance']:>8.4f}"
            f"{row['reference_ndcg_at_10']:>10.4f}  {'pass' if row['passed'] else 'FAIL'}"
        )
    return "\n".join(lines)
