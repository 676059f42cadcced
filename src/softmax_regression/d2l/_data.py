"""The book's data helpers, backed by the package's in-memory Fashion-MNIST."""

from __future__ import annotations

import torch

from ..data import CLASSES, Batches, load_fashion_mnist
from ._threads import paced


class BookBatches:
    """One split's batches as the book's loaders give them: ``len()``, re-iterable. A pass
    runs the reader's loop on the thread count that suits it (``_threads.paced``)."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return paced(self, iter(self.batches), len(self.batches))

    def __getattr__(self, name: str):
        if name == "batches":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.batches, name)


def get_fashion_mnist_labels(labels):
    """Text labels of Fashion-MNIST class indices."""
    return [CLASSES[int(i)] for i in labels]


def get_dataloader_workers():
    """0: batches are sliced from tensors in memory, so there is nothing for workers to do."""
    return 0


def load_data_fashion_mnist(batch_size, resize=None) -> tuple[BookBatches, BookBatches]:
    """Fashion-MNIST as (train, test) batch iterables, like the book's pair of DataLoaders.

    Re-iterable, with ``len()`` in batches (235 and 40 for 256; the last batch is partial).
    Batches are (X float32 (B, 1, H, W) in [0, 1], y int64 (B,)); the training batches come
    in a new order every pass, drawn from torch's global generator so that
    ``torch.manual_seed`` makes a run repeatable. ``resize`` is torchvision's ``Resize``.
    The data is looked up as the package does (``../data/FashionMNIST/raw`` first).
    """
    resize = resize or None  # the book ignores a falsy resize
    train = load_fashion_mnist("train")
    test = load_fashion_mnist("test")
    return (
        BookBatches(
            train.batches(
                batch_size, shuffle=True, generator=torch.default_generator, resize=resize
            )
        ),
        BookBatches(test.batches(batch_size, shuffle=False, resize=resize)),
    )
