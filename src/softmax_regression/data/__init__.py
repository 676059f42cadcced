"""Fashion-MNIST: discovery, verified IDX reading, and in-memory batches."""

from .dataset import CLASSES, Batches, FashionMNIST, load_fashion_mnist, to_float
from .idx import read_idx, write_idx
from .sources import locate

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
