"""The four figures of a training run, drawn from returned numbers and arrays.

Each function returns the Figure (:mod:`.style` saves it). This module needs numpy and
matplotlib only (tensors are accepted as arrays), so that a run can draw its figures in a
helper process that never imports torch: see :func:`serve`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .style import array as _array
from .style import figure as _figure
from .style import save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The book's Animator: styles for train loss, train acc, test acc (and a fourth line).
BOOK_FORMATS = ("-", "m--", "g-.", "r:")
BOOK_YLIM = (0.3, 0.9)
RUN_FIGURES = ("curves.png", "predictions.png", "confusion.png", "weights.png")
# A model of features (not images) has no pictures to show: only these.
FEATURE_FIGURES = ("curves.png", "confusion.png")
MAX_LABELLED_CLASSES = 40  # confusion matrix: class names on the axes up to this many
MAX_COUNTED_CLASSES = 20  # ... and the counts written in the cells
MAX_WEIGHT_TILES = 50  # weights.png shows the first this many classes


def curves(history: Any, epochs: int | None = None) -> Figure:
    """The book's ``train_ch3`` figure: train loss, train acc, test acc (and val acc) by epoch.

    ``history`` is a :class:`~softmax_regression.train.History` or a mapping of column name
    to values. The book's styles and limits (x from 1 to the number of epochs, y from 0.3 to
    0.9); the y range only grows when a value would fall outside it.
    """
    series: Mapping[str, Sequence[Any]]
    if hasattr(history, "series"):
        series = {
            c: history.series(c)
            for c in ("epoch", "train_loss", "train_acc", "test_acc", "val_acc")
        }
    else:
        series = history
    fig = _figure(4.5, 3.2)
    ax = fig.add_axes((0.11, 0.15, 0.86, 0.8))
    x = list(series["epoch"])
    lines = [("train loss", "train_loss"), ("train acc", "train_acc"), ("test acc", "test_acc")]
    lines.append(("val acc", "val_acc"))
    values: list[float] = []
    for fmt, (label, name) in zip(BOOK_FORMATS, lines, strict=True):
        ys = list(series.get(name) or [])
        if not ys or any(v is None for v in ys):
            continue
        ax.plot(x, ys, fmt, label=label)
        values += [v for v in ys if np.isfinite(v)]
    last = epochs or (x[-1] if x else 1)
    ax.set_xlim(1, last) if last > 1 else ax.set_xlim(0.5, 1.5)
    lo, hi = BOOK_YLIM
    if values:
        lo, hi = min(lo, min(values) - 0.02), max(hi, max(values) + 0.02)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("epoch")
    ax.grid(True)
    ax.legend()
    return fig


def _tile_grid(
    tiles: np.ndarray,
    titles: Sequence[str],
    cols: int,
    scale: float,
    colors: Sequence[str] | None = None,
    **imshow: Any,
) -> tuple[Figure, Any, Any]:
    """Tiles drawn as one image in one axes, titles as text above each: a grid of subplots
    costs a set of axes and ticks per tile (most of the time of these figures, measured)."""
    n, h, w = tiles.shape[:3]
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    # In image pixels: between tiles, and above each for a two-line title (28-pixel tiles).
    pad, title = max(4, round(h / 7)), max(7, round(h / 4))
    cell_w, cell_h = w + pad, h + title + pad
    # NaN is drawn transparent (RGB tiles: alpha 0): white paper around the tiles.
    if tiles.ndim == 4:  # (n, h, w, 3) colours in [0, 1]
        canvas = np.zeros((rows * cell_h + pad, cols * cell_w + pad, 4), dtype=np.float32)
    else:
        canvas = np.full((rows * cell_h + pad, cols * cell_w + pad), np.nan, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = pad + r * cell_h + title, pad + c * cell_w
        if tiles.ndim == 4:
            canvas[top : top + h, left : left + w, :3] = tiles[i]
            canvas[top : top + h, left : left + w, 3] = 1.0
        else:
            canvas[top : top + h, left : left + w] = tiles[i]
    width = cols * scale
    fig = _figure(width, width * canvas.shape[0] / canvas.shape[1])
    ax = fig.add_axes((0, 0, 1, 1))
    im = ax.imshow(canvas, interpolation="nearest", **imshow)
    ax.set_axis_off()
    for i, text in enumerate(titles):
        r, c = divmod(i, cols)
        ax.text(
            pad + c * cell_w + (w - 1) / 2,
            pad + r * cell_h + title - 1.5,
            text,
            ha="center",
            va="bottom",
            fontsize=8,
            color=colors[i] if colors else "black",
            linespacing=1.0,
        )
    return fig, ax, im


def images(
    images: Any,
    titles: Sequence[str],
    *,
    cols: int = 6,
    scale: float = 1.5,
    red: Sequence[bool] | None = None,
) -> Figure:
    """A grid of 0-255 images with titles, like the book's ``show_images``: grayscale
    ``(n, H, W)`` or ``(n, 1, H, W)``, or colour ``(n, 3, H, W)``."""
    colors = ["red" if r else "black" for r in red] if red else None
    tiles = _array(images, np.float32)
    if tiles.ndim == 4 and tiles.shape[1] == 1:
        tiles = tiles[:, 0]
    if tiles.ndim == 4:
        tiles = tiles.transpose(0, 2, 3, 1) / 255.0
        fig, _, _ = _tile_grid(tiles, titles, cols, scale, colors)
        return fig
    fig, _, _ = _tile_grid(tiles, titles, cols, scale, colors, cmap="gray", vmin=0, vmax=255)
    return fig


def predictions(
    images_: Any, true: Sequence[str], predicted: Sequence[str], cols: int = 6
) -> Figure:
    """Like the book's ``predict_ch3``: each image titled "true\\npredicted" (wrong in red)."""
    titles = [f"{t}\n{p}" for t, p in zip(true, predicted, strict=True)]
    wrong = [t != p for t, p in zip(true, predicted, strict=True)]
    return images(images_, titles, cols=cols, red=wrong)


def confusion(matrix: Any, classes: Sequence[str]) -> Figure:
    """The confusion matrix (rows: true class, columns: predicted), counts written in."""
    m = _array(matrix, np.int64)
    fig = _figure(6.4, 5.6)
    ax = fig.add_axes((0.17, 0.17, 0.68, 0.78))
    im = ax.imshow(m, cmap="Blues")
    fig.colorbar(im, cax=fig.add_axes((0.88, 0.17, 0.025, 0.78)))
    k = len(classes)
    # Past a few dozen classes the names and counts would only overprint each other.
    if k <= MAX_LABELLED_CLASSES:
        ax.set_xticks(range(k), classes, rotation=45, ha="right")
        ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = m.max() / 2 if m.size else 0
    for i in range(k if k <= MAX_COUNTED_CLASSES else 0):
        for j in range(k):
            color = "white" if m[i, j] > threshold else "black"
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7, color=color)
    return fig


def weights(
    weight: Any, classes: Sequence[str], input_shape: Sequence[int] = (1, 28, 28)
) -> Figure:
    """Each class's weight vector as an image: red pixels vote for the class, blue against.

    ``input_shape`` is the images' (C, H, W); a colour model's three weights of a pixel are
    averaged (how much the pixel's brightness votes). At most :data:`MAX_WEIGHT_TILES`
    classes are drawn, the first ones.

    One colour scale for all ten, symmetric around 0, so the panels compare. It spans five
    robust standard deviations of the weights (1.4826 x their median absolute deviation), or
    the largest weight if that is smaller: a model fitted on standardised pixels has huge raw
    weights on the border pixels that are almost always black (its weight there is divided by
    their tiny spread), and a scale set by those would paint everything else white. Weights
    beyond the scale saturate, and the colour bar's pointed ends say so.
    """
    c, h, wd = (int(n) for n in input_shape)
    k = min(len(classes), MAX_WEIGHT_TILES)
    w = _array(weight, np.float32)[:k].reshape(k, c, h, wd).mean(1)
    classes = list(classes)[:k]
    magnitude = np.abs(w)
    spread = 1.4826 * float(np.median(np.abs(w - np.median(w))))
    bound = min(float(magnitude.max()), 5 * spread) or float(magnitude.max()) or 1.0
    fig, ax, im = _tile_grid(w, list(classes), 5, 1.5, None, cmap="RdBu_r", vmin=-bound, vmax=bound)
    # Make room on the right for the colour scale, keeping the tiles square.
    width, height = fig.get_size_inches()
    fig.set_size_inches(width + 0.9, height)
    ax.set_position((0, 0, width / (width + 0.9), 1))
    cax = fig.add_axes((width / (width + 0.9) + 0.02, 0.1, 0.025, 0.8))
    fig.colorbar(im, cax=cax, extend="both" if magnitude.max() > bound else "neither")
    return fig


def render_run(directory: str | Path, request: Mapping[str, Any]) -> list[Path]:
    """The four figures of a run (:data:`RUN_FIGURES`) from plain numbers, saved as PNGs.

    ``request`` holds ``history`` (column -> values), ``epochs``, ``classes``, ``confusion``,
    ``weight`` (classes x inputs), ``input_shape``, ``images`` (n x C x H x W or n x H x W,
    0-255) with their ``true`` and ``predicted`` class names. A model of features (an
    ``input_shape`` of one number, no ``images``) gets :data:`FEATURE_FIGURES` only, and a
    ``confusion`` of None (too many classes) no ``confusion.png``.
    """
    d = Path(directory)
    classes = list(request["classes"])
    shape = list(request.get("input_shape") or (1, 28, 28))
    matrix = request.get("confusion")  # None: too many classes for one (no confusion.png)
    makers = {
        "curves.png": lambda: curves(request["history"], request["epochs"]),
        "predictions.png": lambda: predictions(
            request["images"], request["true"], request["predicted"]
        ),
        "confusion.png": lambda: confusion(matrix, classes),
        "weights.png": lambda: weights(request["weight"], classes, shape),
    }
    names = RUN_FIGURES if len(shape) == 3 else FEATURE_FIGURES
    if matrix is None:
        names = tuple(n for n in names if n != "confusion.png")
    return [save(makers[name](), d / name) for name in names]


# Runs :func:`serve` in a fresh interpreter without executing the package's __init__ (which
# imports torch): the package is registered by its directory only, so this subpackage and
# _io import as usual and nothing else does.
WORKER_BOOT = (
    "import sys, types; pkg = types.ModuleType('softmax_regression'); "
    "pkg.__path__ = [sys.argv[1]]; sys.modules['softmax_regression'] = pkg; "
    "from softmax_regression.plots.run import serve; serve()"
)


def worker_command() -> list[str]:
    """The command line of a helper process running :func:`serve`."""
    return [sys.executable, "-c", WORKER_BOOT, str(Path(__file__).resolve().parents[1])]


def serve() -> None:
    """A figure-drawing helper process: import matplotlib at once, then read one JSON request
    ``{"directory": ..., **render_run's request}`` from stdin, draw, answer on stdout."""
    import matplotlib.backends.backend_agg  # noqa: F401  (the import is what takes time)
    import matplotlib.figure  # noqa: F401

    try:
        request = json.loads(sys.stdin.buffer.read())
        files = render_run(request.pop("directory"), request)
    except Exception as e:  # reported to the parent, which draws the figures itself
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return
    print(json.dumps({"files": [str(f) for f in files]}), flush=True)
