"""Sweeps over learning rate, batch size and epochs, several seeds each, on data loaded once.

The chapter's exercises ask what batch size, epochs and learning rate do, and why test
accuracy can fall with more epochs. A sweep answers with numbers (mean ± std over seeds of
the final train loss, train/val/test accuracy and time) and with curves per setting.

Settings that differ only in ``epochs`` share their runs: for each (lr, batch size, seed) the
largest epoch count is trained once, and a shorter setting reads the same run's first epochs.
That is exactly what it would compute on its own, because nothing in a run depends on how many
epochs are still to come (no schedule; shuffling draws one permutation per epoch in order).
"""

from __future__ import annotations

import csv
import io
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import TrainConfig
from .errors import ConfigError
from .seeds import MeanStd, SeedRuns, final_metrics

if TYPE_CHECKING:  # the settings are built and checked without torch; training imports it
    from .data import FashionMNIST
    from .distributed import World
    from .train import History

SUMMARY_METRICS = ("train_loss", "train_acc", "val_acc", "test_acc", "seconds")


@dataclass(frozen=True)
class Setting:
    lr: float
    batch_size: int
    epochs: int

    @property
    def label(self) -> str:
        return f"lr {self.lr:g}, batch {self.batch_size}, {self.epochs} epochs"


@dataclass
class SettingResult:
    """One setting over its seeds: final metrics, mean curves and the epoch validation picks."""

    setting: Setting
    runs: SeedRuns
    curves: dict[str, list[float]]  # per-epoch means over seeds: train_loss, train_acc, ...
    best_epoch: int | None = None  # highest mean validation accuracy (first such epoch)
    test_acc_at_best_epoch: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr": self.setting.lr,
            "batch_size": self.setting.batch_size,
            "epochs": self.setting.epochs,
            **self.runs.to_dict(),
            "curves": self.curves,
            "best_epoch": self.best_epoch,
            "test_acc_at_best_epoch": self.test_acc_at_best_epoch,
        }


@dataclass
class SweepResult:
    results: list[SettingResult]
    seeds: tuple[int, ...]
    base: TrainConfig
    seconds: float  # wall time of the whole sweep
    trained_epochs: int  # epochs actually trained (shared prefixes counted once)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_config": self.base.to_dict(),
            "seeds": list(self.seeds),
            "seconds": self.seconds,
            "trained_epochs": self.trained_epochs,
            "settings": [r.to_dict() for r in self.results],
            "notes": self.notes,
        }

    def columns(self) -> list[str]:
        """The summary metrics present in this sweep (val_acc only with a validation split)."""
        present = set().union(*(r.runs.summary for r in self.results)) if self.results else set()
        return [m for m in SUMMARY_METRICS if m in present]

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per setting: mean and std of each metric, and validation's epoch."""
        out = []
        for r in self.results:
            row: dict[str, Any] = {
                "lr": r.setting.lr,
                "batch_size": r.setting.batch_size,
                "epochs": r.setting.epochs,
                "seeds": len(r.runs.seeds),
            }
            for m in self.columns():
                row[f"{m}_mean"] = r.runs.summary[m].mean
                row[f"{m}_std"] = r.runs.summary[m].std
            if r.best_epoch is not None:
                row["best_epoch"] = r.best_epoch
                row["test_acc_at_best_epoch"] = r.test_acc_at_best_epoch
            out.append(row)
        return out

    def to_csv(self) -> str:
        rows = self.rows()
        cols = list(rows[0]) if rows else []
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for row in rows:
            w.writerow([repr(row[c]) if isinstance(row[c], float) else row[c] for c in cols])
        return buf.getvalue()


def grid(lrs: Sequence[float], batch_sizes: Sequence[int], epochs: Sequence[int]) -> list[Setting]:
    """Every combination, in the order given (lr slowest, epochs fastest), duplicates dropped."""
    if not lrs or not batch_sizes or not epochs:
        raise ConfigError("a sweep needs at least one learning rate, batch size and epoch count")
    out: list[Setting] = []
    for lr, bs, ep in itertools.product(lrs, batch_sizes, epochs):
        s = Setting(float(lr), int(bs), int(ep))
        if s not in out:
            out.append(s)
    return out


def _mean_curves(histories: Sequence[History], epochs: int) -> dict[str, list[float]]:
    curves: dict[str, list[float]] = {"epoch": list(range(1, epochs + 1))}
    for name in ("train_loss", "train_acc", "test_acc", "val_acc"):
        per_seed = [[getattr(r, name) for r in h.records[:epochs]] for h in histories]
        if any(v is None for vals in per_seed for v in vals):
            continue
        curves[name] = [MeanStd.of(col).mean for col in zip(*per_seed, strict=True)]
    return curves


def _prefix(history: History, epochs: int) -> History:
    return type(history)(list(history.records[:epochs]))


def run_sweep(
    base: TrainConfig,
    settings: Sequence[Setting],
    seeds: Sequence[int],
    train: FashionMNIST,
    test: FashionMNIST,
    *,
    on_run: Callable[[Setting, int, History], None] | None = None,
    world: World | None = None,
) -> SweepResult:
    """Train every setting with every seed on the same in-memory data; summarize.

    ``base`` supplies everything but lr, batch size, epochs and seed (optimizer, loss,
    validation split, device...). ``on_run`` is called after each trained run with the
    longest setting it serves.

    With a ``world`` of several ranks the runs are dealt out (run ``i`` on rank ``i mod N``),
    each the single-process run; ``on_run`` follows the runs of its own rank, and every rank
    returns the whole result once all runs are gathered.
    """
    from .distributed import ranks_of
    from .train import fit

    if not seeds:
        raise ConfigError("a sweep needs at least one seed")
    settings = list(settings)
    configs = [base.replace(lr=s.lr, batch_size=s.batch_size, epochs=s.epochs) for s in settings]
    del configs  # validated every setting before the first run starts
    start = time.perf_counter()
    longest: dict[tuple[float, int], int] = {}
    for s in settings:
        key = (s.lr, s.batch_size)
        longest[key] = max(longest.get(key, 0), s.epochs)
    jobs = [(lr, bs, epochs, int(seed)) for (lr, bs), epochs in longest.items() for seed in seeds]
    trained = sum(epochs for _, _, epochs, _ in jobs)
    done: dict[int, History] = {}
    for i in ranks_of(len(jobs), world):
        lr, bs, epochs, seed = jobs[i]
        cfg = base.replace(lr=lr, batch_size=bs, epochs=epochs, seed=seed)
        done[i] = fit(cfg, train, test).history
        if on_run is not None:
            on_run(Setting(lr, bs, epochs), seed, done[i])
    if world is not None and world.parallel:
        for part in world.gather(done, "gathering the sweep's runs"):
            done.update(part)
    histories = {(lr, bs, seed): done[i] for i, (lr, bs, _, seed) in enumerate(jobs)}
    results = []
    for s in settings:
        hs = [_prefix(histories[(s.lr, s.batch_size, int(seed))], s.epochs) for seed in seeds]
        runs = SeedRuns.from_rows(seeds, [final_metrics(h) for h in hs])
        curves = _mean_curves(hs, s.epochs)
        best = test_at_best = None
        if "val_acc" in curves:
            vals = curves["val_acc"]
            i = max(range(len(vals)), key=lambda k: (vals[k], -k))
            best, test_at_best = i + 1, curves["test_acc"][i]
        results.append(SettingResult(s, runs, curves, best, test_at_best))
    notes = [
        "train loss/acc: running averages over each epoch, as the book's train_epoch_ch3",
        "val_acc: held-out training images (seeded, stratified); test_acc: the test split, "
        "reported only",
        "best_epoch: the epoch with the highest mean validation accuracy over seeds",
        "settings differing only in epochs share runs: shorter ones are the longer run's "
        "first epochs, which is what they compute on their own",
    ]
    return SweepResult(
        results, tuple(int(s) for s in seeds), base, time.perf_counter() - start, trained, notes
    )
