"""The book's chapter-3 training helpers, over any user net, loss and updater.

The loops call the user's ``net``, ``loss`` and ``updater`` exactly as d2l 0.17.6 does (that is
their contract); what is counted per batch is the package's shared metric code.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..errors import ConfigError, NonFiniteLossError, SoftmaxRegressionError
from ..metrics import EpochMeter, count_correct
from ..train import EpochRecord
from ..train import History as RunHistory
from ._data import get_fashion_mnist_labels
from ._plotting import Animator, image_grid, show
from ._threads import threads_for


class Timer:
    """Record multiple running times."""

    def __init__(self):
        self.times = []
        self.start()

    def start(self):
        """Start the timer."""
        self.tik = time.perf_counter()

    def stop(self):
        """Stop the timer, record the time in a list and return it."""
        self.times.append(time.perf_counter() - self.tik)
        return self.times[-1]

    def avg(self):
        """The average time."""
        return sum(self.times) / len(self.times)

    def sum(self):
        """The sum of the times."""
        return sum(self.times)

    def cumsum(self):
        """The accumulated times."""
        return np.array(self.times).cumsum().tolist()


class Accumulator:
    """Sums over ``n`` variables, as Python floats."""

    def __init__(self, n):
        self.data = [0.0] * n

    def add(self, *args):
        if len(args) != len(self.data):  # the book's zip() would silently drop sums
            raise ConfigError(
                f"Accumulator({len(self.data)}).add takes {len(self.data)} values, got {len(args)}"
            )
        # detach(): the book's code adds loss tensors that require grad; float() of those
        # warns on current torch, and the value is the same.
        self.data = [
            a + float(b.detach() if torch.is_tensor(b) else b)
            for a, b in zip(self.data, args, strict=True)
        ]

    def reset(self):
        self.data = [0.0] * len(self.data)

    def __getitem__(self, idx):
        return self.data[idx]


def sgd(params, lr, batch_size):
    """Minibatch SGD: ``param -= lr * param.grad / batch_size``, then zero the gradient."""
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


def accuracy(y_hat, y):
    """The number of correct predictions, as a float (argmax over dim 1 for 2-D scores)."""
    return float(count_correct(y_hat, y))


def evaluate_accuracy(net, data_iter):
    """The fraction of correct predictions of ``net`` over ``data_iter`` (eval mode, no grad)."""
    if isinstance(net, torch.nn.Module):
        net.eval()
    correct, count = 0, 0
    with torch.no_grad(), threads_for(net) as threads:
        for X, y in data_iter:
            threads.batch(X.shape[0])
            correct += count_correct(net(X), y)  # a tensor: read back once, after the loop
            count += y.numel()
    if count == 0:
        raise ConfigError("evaluate_accuracy: data_iter yielded no examples")
    return int(correct) / count


def train_epoch_ch3(net, train_iter, loss, updater):
    """Train one epoch; return (mean training loss, training accuracy).

    ``updater`` is a ``torch.optim.Optimizer`` (stepped on the mean of the per-example loss) or
    a function ``updater(batch_size)`` called after ``l.sum().backward()``. Both figures are
    running averages over the epoch, from each batch's predictions before its update.
    """
    if isinstance(net, torch.nn.Module):
        net.train()
    meter = None
    with threads_for(net) as threads:
        for X, y in train_iter:
            y_hat = net(X)
            l = loss(y_hat, y)  # noqa: E741 (the book's name)
            threads.batch(X.shape[0], l)
            if isinstance(updater, torch.optim.Optimizer):
                updater.zero_grad()
                l.mean().backward()
                updater.step()
            else:
                l.sum().backward()
                updater(X.shape[0])
            if meter is None:
                meter = EpochMeter(y_hat.device)
            meter.update(l.sum(), y_hat, y)
    if meter is None:
        raise ConfigError("train_epoch_ch3: train_iter yielded no batches")
    return meter.loss, meter.accuracy


class History(RunHistory):
    """The package's run history (``to_dict``, ``to_csv``, ``plots.curves`` take it), with the
    book's three curves as lists (``train_loss``, ``train_acc``, ``test_acc``; index 0 is
    epoch 1) and a one-line repr, which is what a notebook shows under the plot."""

    @property
    def train_loss(self) -> list[float]:
        return self.series("train_loss")

    @property
    def train_acc(self) -> list[float]:
        return self.series("train_acc")

    @property
    def test_acc(self) -> list[float]:
        return self.series("test_acc")

    def __repr__(self) -> str:
        last = self.last
        if last is None:
            return "History(no epochs)"
        return (
            f"History({len(self)} epochs; last: train loss {last.train_loss:.4f}, "
            f"train acc {last.train_acc:.4f}, test acc {last.test_acc:.4f})"
        )


class FinalCheckError(SoftmaxRegressionError, AssertionError):
    """``train_ch3``'s final checks (the book's asserts) failed; ``history`` holds the run.

    An AssertionError too, so code written for the book's ``assert`` still catches it, but
    raised explicitly, so it is not skipped under ``python -O``.
    """

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


def final_check_failures(train_loss: float, train_acc: float, test_acc: float) -> list[str]:
    """The book's end-of-training checks, each failure described with its margin."""
    failures = []
    if not train_loss < 0.5:
        failures.append(f"train loss {train_loss:.4f} is not below 0.5 (by {train_loss - 0.5:.4f})")
    for name, value in (("train acc", train_acc), ("test acc", test_acc)):
        if not value > 0.7:
            failures.append(f"{name} {value:.4f} is not above 0.7 (short by {0.7 - value:.4f})")
        elif not value <= 1:
            failures.append(f"{name} {value:.4f} is above 1 (by {value - 1:.4f})")
    return failures


def train_ch3(net, train_iter, test_iter, loss, num_epochs, updater):
    """Train ``net`` for ``num_epochs``, show the curves, check the result; return the history.

    Raises :class:`FinalCheckError` when the book's final checks fail (train loss < 0.5,
    0.7 < train and test accuracy <= 1) and :class:`NonFiniteLossError` as soon as an epoch's
    training loss is nan or infinite.
    """
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise ConfigError(f"num_epochs must be a positive integer, got {num_epochs!r}")
    animator = Animator(
        xlabel="epoch",
        xlim=[1, num_epochs],
        ylim=[0.3, 0.9],
        legend=["train loss", "train acc", "test acc"],
    )
    history = History()
    for epoch in range(1, num_epochs + 1):
        start = time.perf_counter()
        train_loss, train_acc = train_epoch_ch3(net, train_iter, loss, updater)
        if not math.isfinite(train_loss):
            animator.finish("train_ch3")
            raise NonFiniteLossError(
                f"epoch {epoch}: the training loss is {train_loss}; lower the learning rate "
                f"or compute the loss from logits (nn.CrossEntropyLoss)"
            )
        test_acc = evaluate_accuracy(net, test_iter)
        seconds = time.perf_counter() - start
        history.records.append(EpochRecord(epoch, train_loss, train_acc, test_acc, None, seconds))
        animator.add(epoch, (train_loss, train_acc, test_acc))
    animator.finish("train_ch3")
    failures = final_check_failures(train_loss, train_acc, test_acc)
    if failures:
        epochs = f"{num_epochs} epoch{'s' if num_epochs > 1 else ''}"
        raise FinalCheckError(
            f"train_ch3's final checks failed after {epochs}: " + "; ".join(failures), history
        )
    return history


def predict_ch3(net, test_iter, n=6):
    """Show the first ``n`` test images with their true and predicted labels."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    try:
        X, y = next(iter(test_iter))
    except StopIteration:
        raise ConfigError("predict_ch3: test_iter yielded no batches") from None
    with torch.no_grad():
        preds = get_fashion_mnist_labels(net(X).argmax(axis=1))
    trues = get_fashion_mnist_labels(y)
    titles = [true + "\n" + pred for true, pred in zip(trues, preds, strict=True)]
    n = min(n, X.shape[0])
    # The real image size, so that resized data works too (the book hard-codes 28x28).
    if X.dim() >= 3:
        height, width = X.shape[-2:]
    else:
        height = width = math.isqrt(X[0].numel())
    fig, _ = image_grid(X[0:n].reshape(n, height, width), 1, n, titles=titles[0:n])
    show(fig, "predict_ch3", "; ".join(t.replace("\n", " -> ") for t in titles[0:n]))
