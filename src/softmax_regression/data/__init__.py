"""Data: Fashion-MNIST (discovery, verified IDX reading), data of your own (``DataSpec``:
image folders, IDX files, arrays, tables), in-memory batches, and features read from disk
block by block (``RowSource``, ``StreamedDataset``: docs/bigger-than-memory.md).

The names below are imported on first use: ``data where`` finds the files (``sources``)
without importing torch, which only the reading and batching need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import exports

if TYPE_CHECKING:
    from .dataset import CLASSES, Batches, Dataset, FashionMNIST, load_fashion_mnist, to_float
    from .export import export_fashion_mnist
    from .idx import read_idx, write_idx
    from .sources import locate
    from .spec import DataSpec, LoadedData, load_data
    from .stream import RowSource
    from .streamed import StreamedDataset

_EXPORTS = {
    "CLASSES": ".dataset",
    "Batches": ".dataset",
    "Dataset": ".dataset",
    "FashionMNIST": ".dataset",
    "load_fashion_mnist": ".dataset",
    "to_float": ".dataset",
    "read_idx": ".idx",
    "write_idx": ".idx",
    "locate": ".sources",
    "RowSource": ".stream",
    "StreamedDataset": ".streamed",
    "DataSpec": ".spec",
    "LoadedData": ".spec",
    "load_data": ".spec",
    "export_fashion_mnist": ".export",
}
__all__ = [
    "CLASSES",
    "Batches",
    "DataSpec",
    "Dataset",
    "FashionMNIST",
    "LoadedData",
    "RowSource",
    "StreamedDataset",
    "export_fashion_mnist",
    "load_data",
    "load_fashion_mnist",
    "locate",
    "read_idx",
    "to_float",
    "write_idx",
]
__getattr__, __dir__ = exports(__name__, _EXPORTS)
