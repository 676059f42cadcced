"""Softmax and cross-entropy written out: the stable versions the chapter argues for, and the
naive ones it warns about (kept for teaching and for the numerics report).

No ``torch.nn.functional`` softmax or cross-entropy is used here; tests compare against it.
"""

from __future__ import annotations

import torch

from .errors import ConfigError

_REDUCTIONS = ("mean", "sum", "none")


def softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(o - max o) / sum exp(o - max o): the same value, but exp never sees a large number."""
    shifted = logits - logits.amax(dim=dim, keepdim=True).detach()
    e = shifted.exp()
    return e / e.sum(dim=dim, keepdim=True)


def logsumexp(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log sum exp(o) = m + log sum exp(o - m), m = max o (finite for any finite logits)."""
    m = logits.amax(dim=dim, keepdim=True).detach()
    # A row whose max is +-inf would give inf - inf = nan; shifting it by 0 instead returns
    # -inf for an all -inf (fully masked) row and inf for a row holding +inf, as torch does.
    m = torch.where(m.isinf(), torch.zeros_like(m), m)
    return (logits - m).exp().sum(dim=dim, keepdim=True).log().add(m).squeeze(dim)


def log_softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """(o - m) - log sum exp(o - m): log-probabilities without forming a probability that
    rounds to 0. Subtracting m first matters: o - logsumexp(o) cancels two numbers of the size
    of the logits, losing |o| * eps (about 1e-3 at logits of 1e4 in float32)."""
    m = logits.amax(dim=dim, keepdim=True).detach()
    shifted = logits - torch.where(m.isinf(), torch.zeros_like(m), m)
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ConfigError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """-log softmax(o)[y] from unnormalised logits, via the stable :func:`log_softmax`.

    Low-precision inputs (float16, bfloat16) are computed in float32 and returned in their
    own dtype, as PyTorch's kernels do.
    """
    work = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    losses = -log_softmax(work, dim=-1).gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)
    return _reduce(losses, reduction).to(logits.dtype)


def naive_softmax(logits: torch.Tensor) -> torch.Tensor:
    """The book's from-scratch softmax: exp(X) / exp(X).sum(1). Overflows for logits above ~88."""
    e = logits.exp()
    return e / e.sum(dim=1, keepdim=True)


def naive_cross_entropy(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The book's from-scratch loss: -log(y_hat[range(n), y]). Gives inf once a probability is 0."""
    return -torch.log(probs[torch.arange(probs.shape[0], device=probs.device), labels])


class CrossEntropyLoss(torch.nn.Module):
    """The stable :func:`cross_entropy` as a module, a drop-in for ``nn.CrossEntropyLoss``."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ConfigError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, labels, self.reduction)


class NaiveCrossEntropyLoss(torch.nn.Module):
    """naive_cross_entropy(naive_softmax(o), y): the loss the chapter shows going to nan."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ConfigError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _reduce(naive_cross_entropy(naive_softmax(logits), labels), self.reduction)
