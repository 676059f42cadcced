"""The trainer's engines compute the same training run.

* The ``autograd`` engine is bit for bit the book's own ``train_epoch_ch3`` and
  ``evaluate_accuracy``: tests/test_d2l_oracle.py runs d2l 0.17.6's source beside it.
* The ``fast`` engine (closed-form gradient) is the same run up to float rounding, with every
  optimizer, and so is the from-scratch ``stable`` loss: train losses within
  ``float_rounding`` (conftest.py), the same train and test accuracies.
"""

from __future__ import annotations

import pytest
import torch

from softmax_regression.config import TrainConfig
from softmax_regression.data import load_fashion_mnist, to_float
from softmax_regression.model import SoftmaxRegression
from softmax_regression.train import fit


@pytest.fixture(scope="module")
def data():
    train = load_fashion_mnist("train").subset(range(12000))
    test = load_fashion_mnist("test").subset(range(2000))
    return train, test


def numbers(result):
    return [(r.train_loss, r.train_acc, r.test_acc) for r in result.history]


@pytest.mark.parametrize(
    "changes",
    [{}, {"momentum": 0.9, "weight_decay": 1e-3}, {"optimizer": "adam", "lr": 1e-3}],
    ids=["book", "momentum+wd", "adam"],
)
def test_fast_engine_is_the_same_run_up_to_rounding(data, changes, float_rounding) -> None:
    train, test = data
    config = TrainConfig(epochs=3, **changes)
    fast = fit(config.replace(engine="fast"), train, test)
    slow = fit(config.replace(engine="autograd"), train, test)
    torch.testing.assert_close(fast.model.weight, slow.model.weight, rtol=1e-4, atol=2e-6)
    torch.testing.assert_close(fast.model.bias, slow.model.bias, rtol=1e-4, atol=2e-6)
    for a, b in zip(numbers(fast), numbers(slow), strict=True):
        assert abs(a[0] - b[0]) <= float_rounding
        assert a[1:] == b[1:]


def test_one_fast_step_is_one_autograd_step(data) -> None:
    """A single batch and a single step: the closed-form gradient is autograd's, to rounding."""
    train, test = data
    one = train.subset(range(256))
    for lr in (0.1, 1000.0):  # a huge step magnifies any difference in the gradient
        config = TrainConfig(epochs=1, lr=lr)
        fast = fit(config.replace(engine="fast"), one, test)
        slow = fit(config.replace(engine="autograd"), one, test)
        init = SoftmaxRegression.seeded(torch.Generator().manual_seed(0))
        step_fast = fast.model.weight - init.weight.detach()
        step_slow = slow.model.weight - init.weight.detach()
        torch.testing.assert_close(step_fast, step_slow, rtol=1e-5, atol=1e-6 * lr)
        assert fast.final.train_loss == pytest.approx(slow.final.train_loss, rel=1e-6)
        assert fast.final.train_acc == slow.final.train_acc


def test_stable_and_torch_losses_give_the_same_run(data, float_rounding) -> None:
    train, test = data
    config = TrainConfig(epochs=3, engine="autograd")
    ours = fit(config.replace(loss="stable"), train, test)
    torchs = fit(config.replace(loss="torch"), train, test)
    torch.testing.assert_close(ours.model.weight, torchs.model.weight, rtol=1e-4, atol=2e-6)
    for a, b in zip(numbers(ours), numbers(torchs), strict=True):
        assert abs(a[0] - b[0]) <= float_rounding
        assert a[1:] == b[1:]


def test_batches_are_the_books_tensors(data) -> None:
    """The trainer's uint8 -> float conversion is ToTensor's, bit for bit."""
    from softmax_regression.train import images_to_float

    train, _ = data
    u8 = train.images[:300]
    expected = to_float(u8).reshape(300, -1)
    assert torch.equal(images_to_float(u8.reshape(300, -1), True), expected)
    assert torch.equal(images_to_float(u8.reshape(300, -1), False), u8.reshape(300, -1).float())
