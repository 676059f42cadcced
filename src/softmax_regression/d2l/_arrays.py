"""The book's regression helpers (chapters 3.2-3.3, 4.4-4.5): synthetic data, the linear model,
the squared loss, ``load_array`` and ``evaluate_loss``.

``load_array`` replaces ``DataLoader(TensorDataset(...))`` with index slicing, but draws from
torch's global generator exactly what the DataLoader draws (a base seed per pass, then the
sampler's seed when shuffling), so a seeded chapter gets the same batches in the same order,
and everything the chapter draws afterwards (initial weights, dropout masks) is the same too.
A batch of 10 costs microseconds here instead of the DataLoader's per-example indexing and
collation.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import ConfigError
from ._threads import paced, threads_for


def synthetic_data(w, b, num_examples):
    """Generate y = Xw + b + noise (X ~ N(0, 1), noise ~ N(0, 0.01)); y is a column."""
    X = torch.normal(0, 1, (num_examples, len(w)))
    y = torch.matmul(X, w) + b
    y += torch.normal(0, 0.01, y.shape)
    return X, y.reshape((-1, 1))


def linreg(X, w, b):
    """The linear regression model."""
    return torch.matmul(X, w) + b


def squared_loss(y_hat, y):
    """Squared loss, per example: (y_hat - y)^2 / 2 (y reshaped like y_hat)."""
    return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2


def _draw_seed() -> int:
    # What DataLoader and RandomSampler draw: one int64 from torch's global generator.
    return int(torch.empty((), dtype=torch.int64).random_().item())


class ArrayBatches:
    """Minibatches of tensors that share their first dimension, like the book's DataLoader.

    Re-iterable, ``len()`` in batches, the last batch partial. Each pass draws a base seed from
    torch's global generator, and when shuffling a second seed for the permutation, as
    ``DataLoader(TensorDataset(*tensors), batch_size, shuffle=...)`` does: same seed, same
    batches.
    """

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not tensors or not all(torch.is_tensor(t) for t in tensors):
            kinds = ", ".join(type(t).__name__ for t in tensors) or "nothing"
            raise ConfigError(f"load_array takes a tuple of tensors, got {kinds}")
        n = tensors[0].shape[0] if tensors[0].dim() else None
        if n is None or any(t.dim() == 0 or t.shape[0] != n for t in tensors):
            shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
            raise ConfigError(f"load_array: the tensors differ in their first dimension ({shapes})")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self) -> int:
        return -(-self.tensors[0].shape[0] // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        _draw_seed()  # the DataLoader iterator's base seed, drawn even without workers
        return paced(self, self._batches(), len(self))

    def _batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n, b = self.tensors[0].shape[0], self.batch_size
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(_draw_seed())
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, b):
                idx = order[start : start + b]
                yield tuple(t.index_select(0, idx) for t in self.tensors)
        else:
            for start in range(0, n, b):
                # Copies, as the DataLoader's collation makes: editing a batch leaves the data.
                yield tuple(t[start : start + b].clone() for t in self.tensors)


def load_array(data_arrays, batch_size, is_train=True):
    """Minibatches of ``data_arrays`` (a tuple of tensors), shuffled when ``is_train``."""
    return ArrayBatches(tuple(data_arrays), batch_size, shuffle=is_train)


def evaluate_loss(net, data_iter, loss):
    """The mean of ``loss(net(X), y)`` over ``data_iter`` (y reshaped like the output).

    As the book's: the net's train/eval mode is left as it is. Gradients are not recorded
    (the values are the same).
    """
    total, count = 0.0, 0
    with torch.no_grad(), threads_for(net) as threads:
        for X, y in data_iter:
            threads.batch(X.shape[0])
            out = net(X)
            l = loss(out, y.reshape(out.shape))  # noqa: E741 (the book's name)
            total += float(l.sum())
            count += l.numel()
    if count == 0:
        raise ConfigError("evaluate_loss: data_iter yielded no examples")
    return total / count
