"""A sweep's figure: one line per setting (means over seeds) against epoch."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .style import figure, save


def plot_sweep_curves(
    settings: Sequence[dict],
    path: str | os.PathLike[str],
    dpi: int = 110,
) -> None:
    """Overlay of per-setting curves (means over seeds) against epoch.

    Each setting is ``{"label": str, "epoch": [...], "train_loss": [...], "train_acc": [...],
    "test_acc": [...], "val_acc": [...] (optional), "best_epoch": int or None}``. With a
    validation split: loss; train (dashed) vs validation (solid) accuracy, whose gap is the
    overfitting; test accuracy. Dots mark the epoch validation picks.
    """
    has_val = any(s.get("val_acc") for s in settings)
    ncols = 3 if has_val else 2
    fig = figure(5.2 * ncols, 4.3)
    axes = fig.subplots(1, ncols)
    for i, s in enumerate(settings):
        color = f"C{i % 10}"
        ep = list(s["epoch"])
        best = s.get("best_epoch")
        axes[0].plot(ep, s["train_loss"], color=color, label=s["label"])
        axes[1].plot(ep, s["train_acc"], "--", color=color)
        held = s.get("val_acc") if has_val else s["test_acc"]
        if held:
            axes[1].plot(ep, held, "-", color=color)
        if has_val:
            axes[2].plot(ep, s["test_acc"], "-", color=color)
            if best is not None:
                k = ep.index(best)
                axes[1].plot([best], [s["val_acc"][k]], "o", color=color, ms=6)
                axes[2].plot([best], [s["test_acc"][k]], "o", color=color, ms=6)
    axes[0].set_title("train loss (mean over seeds)")
    axes[0].set_ylabel("loss")
    held_name = "validation" if has_val else "test"
    axes[1].set_title(f"train (dashed) vs {held_name} (solid) accuracy")
    axes[1].set_ylabel("accuracy")
    if has_val:
        axes[2].set_title("test accuracy (reported, never used to pick)")
        fig.suptitle("dots: the epoch with the highest validation accuracy (mean over seeds)")
        axes[2].set_ylabel("accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    save(fig, path, dpi, tight=True)
