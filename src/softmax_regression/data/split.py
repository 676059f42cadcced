"""The stratified split of a dataset's rows (the trainer's validation split, a test split of
data of your own)."""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from ..model import NUM_CLASSES


def split_validation(
    n_val: int, labels: torch.Tensor, seed: int, num_classes: int = NUM_CLASSES
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices), sorted: ``n_val`` examples stratified by class.

    Each class gives its share of ``n_val`` (largest remainder, ties to the lower class),
    picked by a permutation seeded with ``seed``; the rest stay for training.
    """
    labels = labels.cpu()
    n = labels.shape[0]
    if n_val >= n:
        raise ConfigError(f"val split {n_val} leaves no training images ({n} available)")
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    exact = [n_val * c / n for c in counts]
    quota = [math.floor(e) for e in exact]
    order = sorted(range(len(counts)), key=lambda k: (-(exact[k] - quota[k]), k))
    for k in order[: n_val - sum(quota)]:
        quota[k] += 1
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    picked = []
    for k, q in enumerate(quota):
        if q:
            picked.append(perm[labels[perm] == k][:q])
    val = torch.sort(torch.cat(picked)).values if picked else torch.empty(0, dtype=torch.long)
    mask = torch.ones(n, dtype=torch.bool)
    mask[val] = False
    return mask.nonzero().squeeze(1), val
