"""What every figure of the package shares: how a figure is made and how it is saved.

Figures are built on ``matplotlib.figure.Figure`` rather than pyplot: no global figure state,
no GUI backend, nothing to close, and a shorter import. :func:`save` writes a PNG atomically
(under a temporary name, then renamed), so a crash never leaves a truncated image.

Needs numpy and matplotlib only, never torch: a run draws its figures in a helper process that
does not import torch (:mod:`.run`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure(width: float, height: float) -> Figure:
    """A new figure of ``width`` x ``height`` inches with a fixed layout."""
    from matplotlib.figure import Figure

    # A fixed layout: a layout engine measures every label by drawing the figure twice, which
    # cost more than everything else in a run's figures together (measured).
    return Figure(figsize=(width, height))


def array(a: Any, dtype: Any = None) -> np.ndarray:
    """A numpy array of ``a``; torch tensors are accepted without importing torch here."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def save(fig: Figure, path: str | Path, dpi: int = 120, *, tight: bool = False) -> Path:
    """Write ``fig`` as a PNG under a temporary name, then rename it to ``path``. ``tight``
    crops the page to what is drawn (for figures whose legends sit outside the axes)."""
    extra = {"bbox_inches": "tight"} if tight else {}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, **extra)
    return Path(path)
