"""The trainer computes the book's training run.

* The ``autograd`` engine is bit for bit the book's loop written out (``nn.CrossEntropyLoss
  (reduction='none')``, ``l.mean().backward()``, the real ``torch.optim.SGD``, the metrics
  accumulated by ``EpochMeter``), fed the same batches.
* The ``fast`` engine (closed-form gradient) is the same run up to float rounding, and so is
  the from-scratch ``stable`` loss.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from softmax_regression.config import TrainConfig
from softmax_regression.data import load_fashion_mnist, to_float
from softmax_regression.metrics import EpochMeter
from softmax_regression.model import SoftmaxRegression
from softmax_regression.train import cpu_threads, fit


@pytest.fixture(scope="module")
def data():
    train = load_fashion_mnist("train").subset(range(12000))
    test = load_fashion_mnist("test").subset(range(2000))
    return train, test


# Every device: the book's loop and the engine must agree on each. Without a GPU the cuda
# cases show as skipped with the reason (``pytest -ra``); benchmarks/gpu_check.sh runs them.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(),
            reason="needs a CUDA GPU (none here; benchmarks/gpu_check.sh runs it on one)",
        ),
    ),
]


def book_loop(config: TrainConfig, train, test, device: str = "cpu"):
    """The chapter's ``train_ch3`` with a torch optimizer, batches in the trainer's order."""
    train, test = train.to(device), test.to(device)
    with cpu_threads(1):
        gen = torch.Generator().manual_seed(config.seed)
        net = SoftmaxRegression.seeded(gen).to(device)
        loss = nn.CrossEntropyLoss(reduction="none")
        trainer = torch.optim.SGD(
            net.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        out = []
        for _ in range(config.epochs):
            net.train()
            meter = EpochMeter(device)
            perm = torch.randperm(len(train), generator=gen).to(device)
            for idx in perm.split(config.batch_size):
                X, y = to_float(train.images[idx]), train.labels[idx]
                y_hat = net(X)
                l = loss(y_hat, y)  # noqa: E741 (the book's name)
                trainer.zero_grad()
                l.mean().backward()
                trainer.step()
                meter.update(l.sum(), y_hat, y)
            net.eval()
            with torch.no_grad():
                correct = (net(to_float(test.images)).argmax(1) == test.labels).sum()
            out.append((meter.loss, meter.accuracy, int(correct) / len(test)))
    return net, out


def numbers(result):
    return [(r.train_loss, r.train_acc, r.test_acc) for r in result.history]


@pytest.mark.parametrize(
    "changes",
    [{}, {"momentum": 0.9, "weight_decay": 1e-3}, {"batch_size": 100, "lr": 0.05, "seed": 7}],
    ids=["book", "momentum+wd", "other-batch"],
)
@pytest.mark.parametrize("device", DEVICES)
def test_autograd_engine_is_the_books_loop_bit_for_bit(data, changes, device) -> None:
    train, test = data
    config = TrainConfig(engine="autograd", epochs=2, device=device, **changes)
    net, expected = book_loop(config, train, test, device)
    result = fit(config, train, test)
    assert torch.equal(result.model.weight.cpu(), net[1].weight.detach().cpu())
    assert torch.equal(result.model.bias.cpu(), net[1].bias.detach().cpu())
    got = numbers(result)
    assert [(loss, acc) for loss, acc, _ in got] == [(loss, acc) for loss, acc, _ in expected]
    # Test accuracy is scored in another matrix layout: equal unless a logit pair ties to
    # within rounding, i.e. at most an image or two apart.
    for (_, _, a), (_, _, b) in zip(got, expected, strict=True):
        assert abs(a - b) <= 2 / len(test)


@pytest.mark.parametrize(
    "changes",
    [{}, {"momentum": 0.9, "weight_decay": 1e-3}, {"optimizer": "adam", "lr": 1e-3}],
    ids=["book", "momentum+wd", "adam"],
)
def test_fast_engine_is_the_same_run_up_to_rounding(data, changes) -> None:
    train, test = data
    config = TrainConfig(epochs=3, **changes)
    fast = fit(config.replace(engine="fast"), train, test)
    slow = fit(config.replace(engine="autograd"), train, test)
    torch.testing.assert_close(fast.model.weight, slow.model.weight, rtol=1e-4, atol=2e-6)
    torch.testing.assert_close(fast.model.bias, slow.model.bias, rtol=1e-4, atol=2e-6)
    for a, b in zip(numbers(fast), numbers(slow), strict=True):
        assert a[0] == pytest.approx(b[0], rel=1e-5)
        assert a[1] == pytest.approx(b[1], abs=3 / len(train))
        assert a[2] == pytest.approx(b[2], abs=3 / len(test))


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


def test_stable_and_torch_losses_give_the_same_run(data) -> None:
    train, test = data
    config = TrainConfig(epochs=3, engine="autograd")
    ours = fit(config.replace(loss="stable"), train, test)
    torchs = fit(config.replace(loss="torch"), train, test)
    torch.testing.assert_close(ours.model.weight, torchs.model.weight, rtol=1e-4, atol=2e-6)
    for a, b in zip(numbers(ours), numbers(torchs), strict=True):
        assert a[0] == pytest.approx(b[0], rel=1e-5)
        assert a[1] == pytest.approx(b[1], abs=3 / len(train))
        assert a[2] == pytest.approx(b[2], abs=3 / len(test))


def test_batches_are_the_books_tensors(data) -> None:
    """The trainer's uint8 -> float conversion is ToTensor's, bit for bit."""
    from softmax_regression.train import images_to_float

    train, _ = data
    u8 = train.images[:300]
    expected = to_float(u8).reshape(300, -1)
    assert torch.equal(images_to_float(u8.reshape(300, -1), True), expected)
    assert torch.equal(images_to_float(u8.reshape(300, -1), False), u8.reshape(300, -1).float())
