"""The book's model: ``nn.Sequential(nn.Flatten(), nn.Linear(784, 10))``, and nothing else.

Of any size: ``SoftmaxRegression(num_inputs, num_classes)``; 784 and 10 are Fashion-MNIST's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NUM_INPUTS = 28 * 28
NUM_CLASSES = 10


class SoftmaxRegression(nn.Sequential):
    """Flatten + Linear(num_inputs -> num_classes), outputting unnormalised logits.

    A subclass of ``nn.Sequential`` with the book's two layers, so its state-dict keys
    (``1.weight``, ``1.bias``) load straight into the book's ``net`` and back.
    """

    def __init__(
        self,
        num_inputs: int = NUM_INPUTS,
        num_classes: int = NUM_CLASSES,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(nn.Flatten(), nn.Linear(num_inputs, num_classes, device=device))

    @classmethod
    def untouched_rng(
        cls, num_inputs: int = NUM_INPUTS, num_classes: int = NUM_CLASSES
    ) -> SoftmaxRegression:
        """A model built without consuming the global RNG (its values are to be overwritten).

        Cheaper than ``nn.utils.skip_init``, whose first use costs a third of a second here.
        """
        state = torch.random.get_rng_state()
        try:
            return cls(num_inputs, num_classes)
        finally:
            torch.random.set_rng_state(state)

    @classmethod
    def seeded(
        cls,
        generator: torch.Generator,
        num_inputs: int = NUM_INPUTS,
        num_classes: int = NUM_CLASSES,
    ) -> SoftmaxRegression:
        """The book's initialisation drawn from ``generator`` alone."""
        return cls.untouched_rng(num_inputs, num_classes).init_book(generator)

    @property
    def num_inputs(self) -> int:
        return self[1].in_features

    @property
    def num_classes(self) -> int:
        return self[1].out_features

    @property
    def linear(self) -> nn.Linear:
        return self[1]

    @property
    def weight(self) -> torch.Tensor:
        return self[1].weight

    @property
    def bias(self) -> torch.Tensor:
        return self[1].bias

    def init_book(self, generator: torch.Generator | None = None) -> SoftmaxRegression:
        """The chapter's initialisation: weights N(0, 0.01); the bias at PyTorch's default.

        PyTorch's default for a Linear bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)); it is drawn
        here again from ``generator`` so that a seed alone fixes the model.
        """
        with torch.no_grad():
            nn.init.normal_(self.weight, mean=0.0, std=0.01, generator=generator)
            bound = 1.0 / math.sqrt(self.weight.shape[1])
            nn.init.uniform_(self.bias, -bound, bound, generator=generator)
        return self


@torch.no_grad()
def class_scores(model: SoftmaxRegression, x: torch.Tensor) -> torch.Tensor:
    """Logits as a (classes, batch) matrix: ``W @ x.T + b``.

    The same numbers as ``model(x).T`` up to float rounding, computed in the layout that is
    about twice as fast for this thin matrix product on a CPU. Every prediction the package
    makes (training metrics, evaluate, predict) goes through here, so they always agree.
    """
    w, b = model.weight, model.bias
    return torch.addmm(b.unsqueeze(1), w, x.reshape(x.shape[0], -1).t())
