"""Figures, drawn from numbers computed elsewhere (never from inside training).

- :mod:`.style`: how a figure is made and saved (atomic PNG), shared by all of them;
- :mod:`.run`: a training run's four figures (the book's curves, predictions, confusion
  matrix, weight images) and the helper process that draws them beside training;
- :mod:`.numerics`: the numerics report's figure;
- :mod:`.sweep`: a sweep's curves, one line per setting;
- :mod:`.selection`: how the best-linear recipe chose its weight decay.

Each function returns a ``Figure`` or writes a PNG; in Jupyter a returned Figure displays
itself. Nothing here imports torch.
"""

from __future__ import annotations

from .run import confusion, curves, images, predictions, render_run, weights
from .style import save

__all__ = ["confusion", "curves", "images", "predictions", "render_run", "save", "weights"]
