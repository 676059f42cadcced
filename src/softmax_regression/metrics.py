"""Metric definitions shared by the trainer and the book drop-in (identical to d2l 0.17.6)."""

from __future__ import annotations

import torch


def count_correct(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of correct predictions as a 0-d tensor on y_hat's device (no host sync).

    Like the book's ``accuracy``: argmax over dim 1 when y_hat is 2-D with more than one column.
    """
    if y_hat.dim() > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(dim=1)
    return (y_hat.to(y.dtype) == y).sum()


class EpochMeter:
    """Running sums of one epoch (loss sum, correct count, examples), kept on the device.

    ``update`` never synchronises with the host; only reading ``loss``/``accuracy`` does. This is
    what the book's ``Accumulator(3)`` records in ``train_epoch_ch3``, without a ``float()`` per
    batch.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self.count = 0

    def update(self, loss_sum: torch.Tensor, y_hat: torch.Tensor, y: torch.Tensor) -> None:
        """Add one batch: the summed per-example loss, the predictions and the labels."""
        self.loss_sum += loss_sum.detach().to(torch.float64)
        self.correct += count_correct(y_hat.detach(), y)
        self.count += int(y.numel())

    @property
    def loss(self) -> float:
        return float(self.loss_sum) / max(self.count, 1)

    @property
    def accuracy(self) -> float:
        return int(self.correct) / max(self.count, 1)
