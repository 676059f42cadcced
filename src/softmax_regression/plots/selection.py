"""The best-linear recipe's choice: each weight-decay candidate's accuracy, the chosen one
marked."""

from __future__ import annotations

import os

from .style import figure, save


def plot_selection(selection, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Validation (and fit-split) accuracy of each weight-decay candidate; the chosen one marked."""
    cands = sorted(selection.candidates, key=lambda c: c.weight_decay)
    wd = [c.weight_decay for c in cands]
    fig = figure(5.2, 3.6)
    ax = fig.subplots()
    ax.plot(wd, [c.train_acc for c in cands], "--o", ms=3, label="fit split (train)")
    ax.plot(wd, [c.val_acc for c in cands], "-o", ms=4, label="validation")
    best = next(c for c in cands if c.weight_decay == selection.chosen_weight_decay)
    ax.plot([best.weight_decay], [best.val_acc], "*", ms=14, color="C3", label="chosen")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(wd, [f"{w:g}" for w in wd])
    ax.set_xlabel("weight decay")
    ax.set_ylabel("accuracy")
    ax.set_title(f"choosing the weight decay on {selection.n_val} validation images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path, dpi, tight=True)
