"""Where the book's figures go: one live output in Jupyter; progress lines and a PNG elsewhere.

Figures are plain :class:`matplotlib.figure.Figure` objects, never pyplot's: pyplot would
open a window in a desktop terminal, and in Jupyter its inline backend would show every
figure again at the end of the cell.
"""

from __future__ import annotations

import base64
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_path
from ..errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURES_ENV = "SOFTMAX_REGRESSION_FIGURES"
DEFAULT_FIGURES_DIR = "d2l-figures"
PNG_DPI = 150

# The image format of notebook output. PNG until use_svg_display(), as with the book, whose
# Animator switches to SVG.
_notebook_format = "png"
# How many figures of each name this process saved: later ones get "-2", "-3"... so that one
# script's figures do not overwrite each other, while a rerun overwrites the previous run's.
_saved: dict[str, int] = {}


def in_notebook() -> bool:
    """True inside a Jupyter kernel (notebook, lab, VS Code, Colab); False in a terminal."""
    ipython = sys.modules.get("IPython")  # never imported here: scripts should not pay for it
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def use_svg_display() -> None:
    """Show figures as SVG in Jupyter (the book's default for its plots)."""
    global _notebook_format
    _notebook_format = "svg"
    if in_notebook():
        try:
            from matplotlib_inline.backend_inline import set_matplotlib_formats
        except ImportError:  # no inline backend: only our own figures are affected
            return
        set_matplotlib_formats("svg")


def set_figsize(figsize: tuple[float, float] = (3.5, 2.5)) -> None:
    """Set matplotlib's default figure size (and SVG display, as the book does)."""
    import matplotlib

    use_svg_display()
    matplotlib.rcParams["figure.figsize"] = figsize


def set_axes(axes, xlabel, ylabel, xlim, ylim, xscale, yscale, legend) -> None:
    """Label, scale and limit one matplotlib Axes; add a legend and a grid."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_xscale(xscale)
    axes.set_yscale(yscale)
    axes.set_xlim(xlim)
    axes.set_ylim(ylim)
    if legend:
        axes.legend(legend)
    axes.grid()


def new_figure(figsize: tuple[float, float] | None = None) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def figures_dir() -> Path:
    """Where figures are saved outside Jupyter: $SOFTMAX_REGRESSION_FIGURES, else ./d2l-figures."""
    path = Path(os.environ.get(FIGURES_ENV) or DEFAULT_FIGURES_DIR)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"cannot create the figure directory {path} ({e.strerror or e}); set "
            f"${FIGURES_ENV} to a writable directory"
        ) from None
    return path


def save_png(fig: Figure, name: str) -> Path:
    """Save ``fig`` as ``<figures dir>/<name>.png`` (atomically) and return the path."""
    directory = figures_dir()
    count = _saved.get(name, 0) + 1
    path = directory / (f"{name}.png" if count == 1 else f"{name}-{count}.png")
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=PNG_DPI, bbox_inches="tight")
    except OSError as e:
        raise ConfigError(
            f"cannot write {path} ({e.strerror or e}); set ${FIGURES_ENV} to a writable directory"
        ) from None
    _saved[name] = count
    return path


def _bundle(fig: Figure, text: str) -> dict[str, str]:
    buf = io.BytesIO()
    fig.savefig(buf, format=_notebook_format, bbox_inches="tight")
    if _notebook_format == "svg":
        image = {"image/svg+xml": buf.getvalue().decode("utf-8")}
    else:
        image = {"image/png": base64.b64encode(buf.getvalue()).decode("ascii")}
    return {**image, "text/plain": text}


class LiveOutput:
    """One notebook output that shows the latest state of a figure, replaced in place.

    Updating a display id replaces the image without clearing the cell first, so nothing
    flickers and earlier frames do not pile up.
    """

    def __init__(self) -> None:
        self._handle: Any = None

    def show(self, fig: Figure, text: str) -> None:
        from IPython.display import display

        bundle = _bundle(fig, text)
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


def show(fig: Figure, name: str, text: str) -> Path | None:
    """Show a figure: in Jupyter as cell output; elsewhere as a PNG whose path is printed."""
    if in_notebook():
        LiveOutput().show(fig, text)
        return None
    path = save_png(fig, name)
    print(f"figure saved to {path}", flush=True)
    return path


class Animator:
    """Plot data points as they arrive (the book's ``Animator``, same arguments).

    In Jupyter the plot is one output, redrawn in place on every ``add``. Elsewhere ``add``
    prints one line (``epoch 3: train loss 0.5012, train acc 0.8321, ...``) and ``finish``
    saves the figure as a PNG and prints its path.
    """

    def __init__(
        self,
        xlabel=None,
        ylabel=None,
        legend=None,
        xlim=None,
        ylim=None,
        xscale="linear",
        yscale="linear",
        fmts=("-", "m--", "g-.", "r:"),
        nrows=1,
        ncols=1,
        figsize=(3.5, 2.5),
    ):
        if legend is None:
            legend = []
        use_svg_display()
        self._output = LiveOutput() if in_notebook() else None
        if self._output is None:
            figures_dir()  # a bad figure directory should fail now, not after training
        self.fig = new_figure(figsize)
        self.axes = self.fig.subplots(nrows, ncols)
        if nrows * ncols == 1:
            self.axes = [self.axes]
        self.config_axes = lambda: set_axes(
            self.axes[0], xlabel, ylabel, xlim, ylim, xscale, yscale, legend
        )
        self.xlabel = xlabel or "x"
        self.legend = list(legend)
        self.X, self.Y, self.fmts = None, None, fmts
        self.path: Path | None = None

    def add(self, x, y) -> None:
        """Add one point to each line (``y`` may be a sequence; ``None`` skips a line)."""
        if not hasattr(y, "__len__"):
            y = [y]
        n = len(y)
        if not hasattr(x, "__len__"):
            x = [x] * n
        if not self.X:
            self.X = [[] for _ in range(n)]
        if not self.Y:
            self.Y = [[] for _ in range(n)]
        for i, (a, b) in enumerate(zip(x, y, strict=False)):
            if a is not None and b is not None:
                self.X[i].append(a)
                self.Y[i].append(b)
        line = self._describe(x, y)
        if self._output is not None:
            self._draw()
            self._output.show(self.fig, line)
        else:
            print(line, flush=True)

    def finish(self, name: str = "animator") -> Path | None:
        """Outside Jupyter, save the figure as ``<name>.png``, print and return its path."""
        if self._output is not None or self.X is None:
            return None
        self._draw()
        self.path = save_png(self.fig, name)
        print(f"figure saved to {self.path}", flush=True)
        return self.path

    def _draw(self) -> None:
        self.axes[0].cla()
        for x, y, fmt in zip(self.X, self.Y, self.fmts, strict=False):
            self.axes[0].plot(x, y, fmt)
        self.config_axes()

    def _describe(self, x: Sequence[Any], y: Sequence[Any]) -> str:
        labels = self.legend + [f"y{i + 1}" for i in range(len(self.legend), len(y))]
        values = ", ".join(
            f"{label} {b:.4f}" for label, b in zip(labels, y, strict=True) if b is not None
        )
        return f"{self.xlabel} {x[0]:g}: {values}"


def image_grid(imgs, num_rows: int, num_cols: int, titles=None, scale: float = 1.5):
    """The book's ``show_images`` layout on a new figure: returns (figure, flat axes)."""
    import torch

    for what, value in (("num_rows", num_rows), ("num_cols", num_cols)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    fig = new_figure((num_cols * scale, num_rows * scale))
    axes = fig.subplots(num_rows, num_cols, squeeze=False).flatten()
    for i, (ax, img) in enumerate(zip(axes, imgs, strict=False)):
        if torch.is_tensor(img):
            img = img.detach().cpu()
            if img.dim() == 3 and img.shape[0] == 1:  # a (1, H, W) tensor image
                img = img[0]
            ax.imshow(img.numpy())
        else:
            ax.imshow(img)  # a PIL image or an array
        ax.axes.get_xaxis().set_visible(False)
        ax.axes.get_yaxis().set_visible(False)
        if titles:
            ax.set_title(titles[i])
    return fig, axes


def show_images(imgs, num_rows, num_cols, titles=None, scale=1.5):
    """Plot a grid of images; shown in Jupyter, saved as a PNG elsewhere. Returns the axes."""
    fig, axes = image_grid(imgs, num_rows, num_cols, titles, scale)
    show(fig, "show_images", f"<{num_rows}x{num_cols} images>")
    return axes
