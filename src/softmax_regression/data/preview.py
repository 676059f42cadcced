"""A labelled grid of samples, like the book's ``show_images`` (matplotlib, no pyplot state)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .._io import atomic_write
from ..errors import ConfigError
from .dataset import FashionMNIST

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_SAMPLES = 400


def sample_indices(n: int, total: int, seed: int) -> torch.Tensor:
    """``n`` distinct indices out of ``total``, the same for the same seed."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= min(total, MAX_SAMPLES):
        raise ConfigError(f"number of samples must be in 1..{min(total, MAX_SAMPLES)}, got {n!r}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=generator)[:n]


def sample_grid(
    data: FashionMNIST, n: int = 18, *, seed: int = 0, ncols: int = 9, scale: float = 1.5
) -> Figure:
    """``n`` random images of ``data`` (fixed by ``seed``), each titled with its class name.

    The layout follows the book's ``show_images(X, num_rows, num_cols, titles, scale=1.5)``:
    ``ncols`` per row, each cell ``scale`` inches, axes hidden.
    """
    from matplotlib.figure import Figure

    idx = sample_indices(n, len(data), seed)
    images = data.images.index_select(0, idx.to(data.device)).cpu()
    labels = data.labels.index_select(0, idx.to(data.device)).cpu().tolist()
    cols = max(1, min(ncols, n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cols * scale, rows * scale))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ax.imshow(images[i].numpy(), cmap="gray", vmin=0, vmax=255)
            ax.set_title(data.classes[labels[i]], fontsize=9)
    fig.tight_layout()
    return fig


def image_format(path: str | os.PathLike[str]) -> str:
    """The matplotlib format named by ``path``'s suffix; ConfigError if there is none."""
    from matplotlib.backend_bases import FigureCanvasBase

    out = Path(path)
    fmt = out.suffix.lstrip(".").lower()
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise ConfigError(
            f"{out}: unknown image format {out.suffix or '(no suffix)'!r}; use one of "
            + ", ".join("." + k for k in sorted(supported))
        )
    return fmt


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` atomically, in the format its suffix names."""
    out = Path(path)
    fmt = image_format(out)
    try:
        atomic_write(out, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
    except OSError as e:
        raise ConfigError(f"{out}: cannot write ({e.strerror or e})") from None
    return out
