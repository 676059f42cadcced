"""Fashion-MNIST: discovery, verified IDX reading, and in-memory batches.

The names below are imported on first use: ``data where`` finds the files (``sources``)
without importing torch, which only the reading and batching need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import exports

if TYPE_CHECKING:
    from .dataset import CLASSES, Batches, FashionMNIST, load_fashion_mnist, to_float
    from .idx import read_idx, write_idx
    from .sources import locate

_EXPORTS = {
    "CLASSES": ".dataset",
    "Batches": ".dataset",
    "FashionMNIST": ".dataset",
    "load_fashion_mnist": ".dataset",
    "to_float": ".dataset",
    "read_idx": ".idx",
    "write_idx": ".idx",
    "locate": ".sources",
}
__all__ = [
    "CLASSES",
    "Batches",
    "FashionMNIST",
    "load_fashion_mnist",
    "locate",
    "read_idx",
    "to_float",
    "write_idx",
]
__getattr__, __dir__ = exports(__name__, _EXPORTS)
