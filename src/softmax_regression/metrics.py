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
