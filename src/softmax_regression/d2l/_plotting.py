"""Where the book's figures go: one live output in Jupyter; progress lines and a PNG elsewhere.

The package's own figures are plain :class:`matplotlib.figure.Figure` objects, never
pyplot's: pyplot would open a window in a desktop terminal, and in Jupyter its inline backend
would show every figure again at the end of the cell. (``plot`` in Jupyter draws on pyplot's
current axes, as the book's does, so that the inline backend shows it.)

Outside Jupyter a figure that may still change (an ``Animator`` between two ``add`` calls, or
a figure of the reader's own code passed to IPython's ``display``, see ``_ipython.py``) is
*held*: one line is printed per update, and the figure is saved as a PNG, its path printed
once, when another figure is shown or when the process ends. Figures the reader drew through
``d2l.plt`` and never showed (the book relies on Jupyter's inline backend for those) are saved
at the end of the process too.
"""

from __future__ import annotations

import atexit
import base64
import io
import os
import sys
import weakref
from collections.abc import Callable, Sequence
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
# Outside Jupyter: figures shown but maybe not final (see the module docstring), by id, with
# their name and what draws them before saving.
_held: dict[int, tuple[Figure, str, Callable[[], None] | None]] = {}
# Every figure saved so far, so that the end-of-process sweep of pyplot's figures skips them.
_saved_figures: weakref.WeakSet = weakref.WeakSet()
# pyplot figures that existed before the reader's code reached pyplot through d2l.plt are not
# the reader's: the sweep leaves them alone. None: no sweep (d2l.plt never used).
_pyplot_before: set[int] | None = None
_exit_hook = False


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
    from ._ipython import intercept_display

    intercept_display()  # the reader's own Animator is about to display a figure
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


def _has_one_axis(X) -> bool:
    # The book's test: a 1-D tensor or array, or a list of numbers.
    return (
        hasattr(X, "ndim") and X.ndim == 1 or isinstance(X, list) and not hasattr(X[0], "__len__")
    )


def plot(
    X,
    Y=None,
    xlabel=None,
    ylabel=None,
    legend=None,
    xlim=None,
    ylim=None,
    xscale="linear",
    yscale="linear",
    fmts=("-", "m--", "g-.", "r:"),
    figsize=(3.5, 2.5),
    axes=None,
):
    """Plot data points: one or more curves ``Y`` against ``X`` (the book's ``plot``).

    In Jupyter it draws on pyplot's current axes, which the notebook shows. Elsewhere it
    draws a new figure, saves it as a PNG and prints the path; on given ``axes`` it draws
    there, and their figure is saved once the reader moves on (or at exit).
    """
    if legend is None:
        legend = []
    set_figsize(figsize)
    fig = None
    if not axes:
        if in_notebook():
            from matplotlib import pyplot

            axes = pyplot.gca()
        else:
            fig = new_figure(figsize)
            axes = fig.add_subplot()
    if _has_one_axis(X):
        X = [X]
    if Y is None:
        X, Y = [[]] * len(X), X
    elif _has_one_axis(Y):
        Y = [Y]
    if len(X) != len(Y):
        X = X * len(Y)
    axes.cla()
    for x, y, fmt in zip(X, Y, fmts, strict=False):
        if len(x):
            axes.plot(x, y, fmt)
        else:
            axes.plot(y, fmt)
    set_axes(axes, xlabel, ylabel, xlim, ylim, xscale, yscale, legend)
    if fig is not None:
        show(fig, "plot", describe(fig) or "<plot>")
    elif not in_notebook():
        hold(axes.figure, "plot")


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
    _saved_figures.add(fig)
    return path


def _save_and_print(fig: Figure, name: str) -> Path:
    path = save_png(fig, name)
    print(f"figure saved to {path}", flush=True)
    return path


def _register_exit_hook() -> None:
    global _exit_hook
    if not _exit_hook:
        # Registered after pyplot's own hook (if pyplot is loaded), so it runs before it.
        atexit.register(_at_exit)
        _exit_hook = True


def hold(fig: Figure, name: str, draw: Callable[[], None] | None = None) -> None:
    """Outside Jupyter: keep ``fig`` to save later as ``<name>.png`` (``draw()`` first), and
    save every other held figure now (it is finished: the reader has moved on)."""
    release_others(fig)
    if id(fig) not in _held:
        _held[id(fig)] = (fig, name, draw)
        _register_exit_hook()


def release_others(keep: Figure | None = None) -> None:
    """Save and print every held figure except ``keep``."""
    for key in [k for k in _held if _held[k][0] is not keep]:
        fig, name, draw = _held.pop(key)
        if draw is not None:
            draw()
        _save_and_print(fig, name)


def unhold(fig: Figure) -> bool:
    """Forget ``fig`` (its owner saves it); True if it was held."""
    return _held.pop(id(fig), None) is not None


def watch_pyplot() -> None:
    """The reader's code uses pyplot through ``d2l.plt``: outside Jupyter, save its figures
    that nothing else saved when the process ends."""
    global _pyplot_before
    if _pyplot_before is not None or in_notebook():
        return
    from matplotlib import pyplot

    _pyplot_before = set(pyplot.get_fignums())
    _register_exit_hook()


def _unsaved_pyplot_figures() -> list[Figure]:
    if _pyplot_before is None or "matplotlib.pyplot" not in sys.modules:
        return []
    pyplot = sys.modules["matplotlib.pyplot"]
    figures = []
    for num in pyplot.get_fignums():
        fig = pyplot.figure(num)
        if num not in _pyplot_before and fig not in _saved_figures and fig.get_axes():
            figures.append(fig)
    return figures


def _at_exit() -> None:
    try:
        release_others()
        for fig in _unsaved_pyplot_figures():
            _save_and_print(fig, "figure")
    except ConfigError as e:  # an unwritable figure directory: one line, no traceback
        print(f"error: {e}", file=sys.stderr, flush=True)


def describe(fig: Figure) -> str | None:
    """One line about a figure of lines: the x label and last x, then each line's label (its
    legend entry) and last y, as the package's Animator prints them. None without lines."""
    for axes in fig.get_axes():
        lines = [line for line in axes.get_lines() if len(line.get_ydata())]
        if lines:
            break
    else:
        return None
    legend = axes.get_legend()
    labels = [t.get_text() for t in legend.get_texts()] if legend is not None else []
    labels += [f"y{i + 1}" for i in range(len(labels), len(lines))]
    x = max(float(line.get_xdata()[-1]) for line in lines)
    values = ", ".join(
        f"{label} {float(line.get_ydata()[-1]):.4f}"
        for label, line in zip(labels, lines, strict=False)
    )
    return f"{axes.get_xlabel() or 'x'} {x:g}: {values}"


def show_held(fig: Figure) -> None:
    """A figure of the reader's code displayed outside Jupyter: one line, saved later."""
    line = describe(fig)
    if line is not None:
        print(line, flush=True)
    hold(fig, "figure")


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
    release_others()
    return _save_and_print(fig, name)


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
            hold(self.fig, "animator", self._draw)  # drawn when saved, not on every add

    def finish(self, name: str = "animator") -> Path | None:
        """Outside Jupyter, save the figure as ``<name>.png``, print and return its path.

        Without ``finish`` the figure is saved as ``animator.png`` when another figure is
        shown or the process ends."""
        if self._output is not None or self.X is None:
            return None
        unhold(self.fig)
        release_others()
        self._draw()
        self.path = _save_and_print(self.fig, name)
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
