"""Several seeds of one recipe: every final metric as mean ± standard deviation.

A single run's accuracy wobbles by about a point with the seed (the book's own builds range
0.821-0.836), so comparisons are made between means over seeds, with their spread beside them.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# The order metrics are shown in, when a run has them.
METRIC_ORDER = (
    "train_loss",
    "train_acc",
    "val_acc",
    "test_acc",
    "best_epoch",
    "test_acc_at_best_epoch",
    "test_loss",
    "test_macro_f1",
    "weight_decay",
    "seconds",
)


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (n - 1 in the denominator; 0 for a single value)."""

    mean: float
    std: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> MeanStd:
        vals = tuple(float(v) for v in values)
        if not vals:
            raise ValueError("mean and std of no values")
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return cls(statistics.fmean(vals), std, vals)

    @property
    def n(self) -> int:
        return len(self.values)

    def format(self, digits: int = 4) -> str:
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "values": list(self.values)}


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, MeanStd]:
    """Mean ± std of every numeric metric that every row has (``None`` counts as absent)."""
    if not rows:
        raise ValueError("no runs to summarize")
    names = [k for k in rows[0] if k != "seed"]
    out: dict[str, MeanStd] = {}
    for name in sorted(names, key=_order):
        vals = [r.get(name) for r in rows]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals)
        if numeric and all(math.isfinite(v) for v in vals):
            out[name] = MeanStd.of(vals)
    return out


def _order(name: str) -> tuple[int, str]:
    return (METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER), name)


def final_metrics(history: Any) -> dict[str, float | int | None]:
    """A trainer history's final numbers, plus the epoch validation picks when it has one.

    ``best_epoch`` is the first epoch with the highest validation accuracy, and
    ``test_acc_at_best_epoch`` the test accuracy of that epoch: what early stopping on
    validation would have reported. Test accuracy never picks anything.
    """
    last = history.last
    out: dict[str, float | int | None] = {
        "train_loss": last.train_loss,
        "train_acc": last.train_acc,
        "val_acc": last.val_acc,
        "test_acc": last.test_acc,
        "seconds": sum(r.seconds for r in history),
    }
    vals = [r.val_acc for r in history]
    if all(v is not None for v in vals):
        best = max(range(len(vals)), key=lambda i: (vals[i], -i))
        out["best_epoch"] = history[best].epoch
        out["test_acc_at_best_epoch"] = history[best].test_acc
    return {k: v for k, v in out.items() if v is not None}


@dataclass
class SeedRuns:
    """Per-seed final metrics and their mean ± std."""

    seeds: tuple[int, ...]
    per_seed: list[dict[str, Any]]
    summary: dict[str, MeanStd] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, seeds: Sequence[int], rows: Sequence[dict[str, Any]]) -> SeedRuns:
        rows = [{"seed": s, **r} for s, r in zip(seeds, rows, strict=True)]
        return cls(tuple(seeds), rows, summarize(rows))

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": list(self.seeds),
            "per_seed": self.per_seed,
            "summary": {k: v.to_dict() for k, v in self.summary.items()},
        }

    def to_csv(self) -> str:
        """One row per seed, then a ``mean`` and a ``std`` row; floats written with repr."""
        cols = ["seed", *self.summary]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for row in self.per_seed:
            w.writerow([repr(row.get(c, "")) if c != "seed" else row["seed"] for c in cols])
        w.writerow(["mean", *(repr(self.summary[c].mean) for c in cols[1:])])
        w.writerow(["std", *(repr(self.summary[c].std) for c in cols[1:])])
        return buf.getvalue()

    def lines(self, digits: int = 4) -> list[str]:
        """``name  mean ± std`` lines for the terminal (the same numbers as the files)."""
        width = max((len(k) for k in self.summary), default=0)
        seeds = ",".join(str(s) for s in self.seeds)
        out = [f"over {len(self.seeds)} seeds ({seeds}): mean ± std"]
        for name, ms in self.summary.items():
            d = 2 if name in ("seconds", "best_epoch") else digits
            if name == "weight_decay":
                out.append(f"  {name:<{width}}  {ms.mean:.4g} ± {ms.std:.2g}")
            else:
                out.append(f"  {name:<{width}}  {ms.format(d)}")
        return out
