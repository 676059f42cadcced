"""IPython's ``display`` and ``clear_output`` outside Jupyter, for the reader's own figures.

Chapter 3.6 defines its own ``Animator``, which calls ``IPython.display.display(fig)`` and
``display.clear_output(wait=True)`` after every point. Without a kernel, IPython's
``display`` prints the figure's repr (``Figure(350x250)``) and ``clear_output`` writes
erase-line escape codes, once per epoch. No hook of IPython or matplotlib changes that, so
this module wraps the two functions where the reader's code finds them
(``IPython.display`` and ``IPython.core.display_functions``), and only while no kernel runs:

- ``display(obj)`` of a matplotlib figure prints one line describing it (the last point of
  each line, labelled by its legend) and keeps the figure to save as a PNG once the reader
  moves on (``_plotting.hold``); anything else is displayed by IPython as before;
- ``clear_output`` does nothing (there is no output area to clear).

Inside a kernel both wrappers call IPython's own functions, so a notebook shows what the
book shows. The wrapping is installed when the reader reaches matplotlib through the
drop-in (``d2l.plt``, ``d2l.use_svg_display``, ``d2l.set_figsize``) or imports the drop-in
after IPython: never merely by importing IPython, and never in a kernel.
"""

from __future__ import annotations

import functools
import sys

from ._plotting import in_notebook, show_held

_WRAPPED = "__softmax_regression_d2l__"


def _display(original):
    @functools.wraps(original)
    def display(*objs, **kwargs):
        if in_notebook() or "matplotlib.figure" not in sys.modules:
            return original(*objs, **kwargs)
        from matplotlib.figure import Figure

        rest = [obj for obj in objs if not isinstance(obj, Figure)]
        for obj in objs:
            if isinstance(obj, Figure):
                show_held(obj)
        if rest or not objs:
            return original(*rest, **kwargs)
        return None

    setattr(display, _WRAPPED, True)
    return display


def _clear_output(original):
    @functools.wraps(original)
    def clear_output(*args, **kwargs):
        if in_notebook():
            return original(*args, **kwargs)
        return None

    setattr(clear_output, _WRAPPED, True)
    return clear_output


def intercept_display() -> None:
    """Wrap IPython's ``display`` and ``clear_output`` if IPython is loaded and no kernel runs."""
    if in_notebook():
        return
    for module_name in ("IPython.display", "IPython.core.display_functions"):
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for name, wrap in (("display", _display), ("clear_output", _clear_output)):
            original = getattr(module, name, None)
            if original is not None and not getattr(original, _WRAPPED, False):
                setattr(module, name, wrap(original))
