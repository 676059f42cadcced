"""Figures for the numerics report and for sweeps; they only draw numbers computed elsewhere.

matplotlib is imported inside each function with the Agg backend, so importing the package
never needs a display, and every figure is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ._io import atomic_path
from .numerics import NumericsReport

_COLORS = {"float64": "C0", "float32": "C1", "bfloat16": "C2", "float16": "C3"}
_FLOOR = 1e-18  # errors of exactly 0 are drawn here (a log axis has no 0)
_FAIL = 1e3  # nan/inf results are drawn on this line


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike[str], dpi: int) -> None:
    plt = _pyplot()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)


def plot_numerics(report: NumericsReport, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Three panels: exp's usable range per dtype; loss error and softmax error against scale."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ax = axes[0]
    names = [r.dtype for r in report.exp_ranges]
    for i, r in enumerate(report.exp_ranges):
        ax.barh(i, r.max_x - r.min_x, left=r.min_x, color=_COLORS.get(r.dtype, "C7"), alpha=0.8)
        for x, ha, dx in ((r.min_x, "right", -3), (r.max_x, "left", 3)):
            ax.annotate(
                f"{x:.6g}",
                (x, i),
                xytext=(dx, 0),
                textcoords="offset points",
                ha=ha,
                va="center",
                fontsize=8,
            )
    ax.set_yticks(range(len(names)), names)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(-1e5, 1e5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("x (symmetric log scale)")
    ax.set_title("where 0 < exp(x) < inf")

    for ax, which, title, ylabel in (
        (axes[1], "loss", "cross-entropy, label = least likely class", "relative error"),
        (axes[2], "softmax", "softmax probabilities", "max absolute error"),
    ):
        for i, dtype in enumerate(names):
            rows = [r for r in report.rows if r.dtype == dtype]
            color = _COLORS.get(dtype, "C7")
            for kind, style, mark in (("naive", "--", "x"), ("stable", "-", "+")):
                xs, ys, fx = [], [], []
                for r in rows:
                    out = getattr(r, f"{kind}_{which}")
                    if out.status == "ok":
                        xs.append(r.scale)
                        ys.append(max(out.error, _FLOOR))
                    else:
                        fx.append(r.scale)
                label = f"{dtype} {kind}" if which == "loss" else None
                ax.plot(xs, ys, style, marker="o", ms=3, color=color, label=label)
                # One row of failure marks per dtype, so none hides another.
                ax.plot(fx, [_FAIL * 2.2**i] * len(fx), mark, color=color, ms=7, ls="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(_FLOOR / 3, _FAIL * 60)
        ax.axhspan(_FAIL / 2, _FAIL * 60, color="0.9", zorder=0)
        ax.text(
            0.01,
            _FAIL / 2.5,
            "above: nan / inf (x naive, + stable)",
            transform=ax.get_yaxis_transform(),
            fontsize=8,
            va="top",
        )
        ax.set_xlabel("logit scale s (logits = s * linspace(-1, 1, 10))")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    fig.legend(loc="lower center", ncol=len(names) * 2, fontsize=8, bbox_to_anchor=(0.5, -0.06))
    fig.suptitle(
        "naive (dashed) vs stable (solid) softmax and cross-entropy; "
        f"exact 0 errors drawn at {_FLOOR:g}"
    )
    _save(fig, path, dpi)


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
    plt = _pyplot()
    has_val = any(s.get("val_acc") for s in settings)
    ncols = 3 if has_val else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.3))
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
    _save(fig, path, dpi)


def plot_selection(selection, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Validation (and fit-split) accuracy of each weight-decay candidate; the chosen one marked."""
    plt = _pyplot()
    cands = sorted(selection.candidates, key=lambda c: c.weight_decay)
    wd = [c.weight_decay for c in cands]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
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
    _save(fig, path, dpi)
