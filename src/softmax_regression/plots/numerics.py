"""The numerics report's figure: where exp overflows and underflows in each dtype, and the
naive softmax and cross-entropy beside the stable ones as the logits grow."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .style import figure, save

if TYPE_CHECKING:
    from ..numerics import NumericsReport

_COLORS = {"float64": "C0", "float32": "C1", "bfloat16": "C2", "float16": "C3"}
_FLOOR = 1e-18  # errors of exactly 0 are drawn here (a log axis has no 0)
_FAIL = 1e3  # nan/inf results are drawn on this line


def plot_numerics(report: NumericsReport, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Three panels: exp's usable range per dtype; loss error and softmax error against scale."""
    fig = figure(15, 4.6)
    axes = fig.subplots(1, 3)
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
    save(fig, path, dpi, tight=True)
