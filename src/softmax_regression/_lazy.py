"""Names a package re-exports, imported the first time they are used (PEP 562).

``import softmax_regression`` (and with it every command line start) then costs no torch
import; ``from softmax_regression import fit`` imports what ``fit`` needs, as before. Each
package also imports the same names under ``TYPE_CHECKING``, so type checkers and editors see
them, and ``dir()``/``help()`` list them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose ``names`` map each exported name
    to the submodule (relative, e.g. ``".train"``) that defines it."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(importlib.import_module(package), name, value)  # later look-ups skip this
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(names))

    return __getattr__, __dir__
