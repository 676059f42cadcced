"""softmax_regression.d2l against the real d2l 0.17.6 source.

d2l/torch.py imports torchvision at the top, so it cannot be imported here; the definitions
that matter are parsed out of the published wheel (fetched by ``make setup``) and executed
on their own. Both sides then run on the same inputs and must agree exactly.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import hashlib
import os
import sys
import time
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from softmax_regression import d2l
from softmax_regression.config import TrainConfig
from softmax_regression.data import load_fashion_mnist
from softmax_regression.errors import ConfigError
from softmax_regression.model import SoftmaxRegression
from softmax_regression.train import cpu_threads, fit

# Where `make setup` puts the wheel; $D2L_ORACLE_DIR names another place (a GPU machine
# without the virtual environment: benchmarks/gpu_check.sh).
WHEEL_DIR = Path(os.environ.get("D2L_ORACLE_DIR") or Path(sys.prefix) / "d2l-oracle")
TORCH_PY_SHA256 = "3c173de4ee169b383e82f37877113115e8ca47bbe00274afc9215d2e5a70dcca"
DEFINITIONS = {
    "Accumulator",
    "accuracy",
    "evaluate_accuracy",
    "get_fashion_mnist_labels",
    "sgd",
    "train_ch3",
    "train_epoch_ch3",
}
ALIASES = {"argmax", "astype", "numpy", "reduce_sum", "reshape", "size", "to", "transpose"}


@contextlib.contextmanager
def book_warnings_ignored():
    """The book's ``float(l.sum())`` on a tensor that requires grad warns on current torch."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Converting a tensor with requires_grad", UserWarning)
        yield


class RecordingAnimator:
    """Stands in for the book's Jupyter-only Animator: keeps what train_ch3 plots."""

    instances: list[RecordingAnimator] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.points: list[tuple] = []
        RecordingAnimator.instances.append(self)

    def add(self, x, y):
        self.points.append((x, tuple(y)))


def _defined_name(node: ast.stmt) -> str | None:
    """The name a top-level def, class or ``name = ...`` binds, else None."""
    if isinstance(node, ast.FunctionDef | ast.ClassDef):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        return target.id if isinstance(target, ast.Name) else None
    return None


@pytest.fixture(scope="module")
def book() -> types.ModuleType:
    wheels = sorted(WHEEL_DIR.glob("d2l-0.17.6-*.whl"))
    if not wheels:
        pytest.fail(
            f"the d2l 0.17.6 wheel (test oracle) is missing from {WHEEL_DIR}: run `make setup`, "
            f"or `python -m pip download --no-deps --dest {WHEEL_DIR} d2l==0.17.6`"
        )
    with zipfile.ZipFile(wheels[0]) as wheel:
        source = wheel.read("d2l/torch.py")
    assert hashlib.sha256(source).hexdigest() == TORCH_PY_SHA256, "not the published d2l/torch.py"
    keep = [node for node in ast.parse(source).body if _defined_name(node) in DEFINITIONS | ALIASES]
    module = types.ModuleType("d2l_0_17_6")
    module.__dict__.update(torch=torch, np=np, time=time, Animator=RecordingAnimator)
    module.d2l = module  # the book's functions call each other as d2l.<name>
    exec(compile(ast.Module(keep, type_ignores=[]), "d2l/torch.py (0.17.6)", "exec"), vars(module))
    missing = (DEFINITIONS | ALIASES) - set(vars(module))
    assert not missing, f"not found in d2l/torch.py: {sorted(missing)}"
    return module


@pytest.fixture(autouse=True)
def same_threads_as_ours():
    """Float sums depend on the thread count; ours train and evaluate on one thread."""
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    train_iter, test_iter = d2l.load_data_fashion_mnist(256)
    # Lists: both sides must see the same batches in the same order.
    return list(train_iter), list(test_iter)


def softmax_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    nn.init.normal_(net[1].weight, std=0.01)
    return net


class Scratch:
    """Chapter 3.6's model: W, b, the naive softmax and cross-entropy, updated by sgd."""

    def __init__(self, sgd, seed: int = 0):
        torch.manual_seed(seed)
        self.W = torch.normal(0, 0.01, size=(784, 10), requires_grad=True)
        self.b = torch.zeros(10, requires_grad=True)
        self.sgd = sgd

    def net(self, X):
        e = torch.exp(torch.matmul(X.reshape((-1, 784)), self.W) + self.b)
        return e / e.sum(1, keepdim=True)

    @staticmethod
    def loss(y_hat, y):
        return -torch.log(y_hat[range(len(y_hat)), y])

    def updater(self, batch_size):
        return self.sgd([self.W, self.b], 0.1, batch_size)


@st.composite
def predictions(draw):
    n = draw(st.integers(1, 40))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    kind = draw(st.sampled_from(["scores", "one column", "labels"]))
    k = draw(st.integers(2, 12))
    if kind == "scores":
        y_hat = torch.randn(n, k, generator=gen)
    elif kind == "one column":
        y_hat = torch.randint(0, k, (n, 1), generator=gen).float()
    else:
        y_hat = torch.randint(0, k, (n,), generator=gen)
    y = torch.randint(0, k, (n,), generator=gen)
    if draw(st.booleans()):
        y = y.float()
    return y_hat, y


@settings(max_examples=60, deadline=None)
@given(predictions())
def test_accuracy_matches_the_book(book, pair):
    y_hat, y = pair
    ours, theirs = d2l.accuracy(y_hat, y), book.accuracy(y_hat, y)
    assert type(ours) is float
    assert ours == theirs


def test_evaluate_accuracy_matches_the_book(book, data):
    _, test = data
    net_a, net_b = softmax_net(1), softmax_net(1)
    net_a.train()
    net_b.train()
    ours, theirs = d2l.evaluate_accuracy(net_a, test), book.evaluate_accuracy(net_b, test)
    assert ours == theirs
    assert 0.0 < ours < 0.5  # an untrained net: near chance, and not a count
    assert not net_a.training and not net_b.training
    scratch = Scratch(d2l.sgd, seed=2)
    assert d2l.evaluate_accuracy(scratch.net, test) == book.evaluate_accuracy(scratch.net, test)


def test_accumulator_matches_the_book(book):
    ours, theirs = d2l.Accumulator(3), book.Accumulator(3)
    rows = [(1, 2.5, torch.tensor(3)), (torch.tensor(0.25), 7, 1e-3), (2, 2, np.int64(5))]
    for row in rows:
        ours.add(*row)
        theirs.add(*row)
        assert ours.data == theirs.data
        assert all(type(v) is float for v in ours.data)
    assert [ours[i] for i in (0, 1, 2, -1)] == [theirs[i] for i in (0, 1, 2, -1)]
    assert ours[0:2] == theirs[0:2]
    ours.reset()
    theirs.reset()
    assert ours.data == theirs.data == [0.0, 0.0, 0.0]
    # Where the book's zip() silently drops a sum, ours refuses.
    theirs.add(1, 2)
    assert len(theirs.data) == 2
    with pytest.raises(ConfigError, match=r"Accumulator\(3\)\.add takes 3 values, got 2"):
        ours.add(1, 2)
    assert ours.data == [0.0, 0.0, 0.0]


def test_fashion_mnist_labels_match_the_book(book):
    for labels in (torch.arange(10), list(range(9, -1, -1)), np.array([3, 3, 0]), torch.tensor([])):
        assert d2l.get_fashion_mnist_labels(labels) == book.get_fashion_mnist_labels(labels)


def test_tensor_aliases_match_the_book(book):
    x = torch.arange(12.0).reshape(3, 4).requires_grad_()
    for name, args in {
        "argmax": ((), {"axis": 1}),
        "astype": ((torch.int32,), {}),
        "numpy": ((), {}),
        "reduce_sum": ((0,), {}),
        "reshape": (((4, 3),), {}),
        "size": ((), {}),
        "to": ((torch.float64,), {}),
        "transpose": ((), {}),
    }.items():
        pos, kw = args
        ours, theirs = getattr(d2l, name)(x, *pos, **kw), getattr(book, name)(x, *pos, **kw)
        if isinstance(ours, torch.Tensor):
            assert ours.dtype == theirs.dtype and torch.equal(ours, theirs), name
        else:
            np.testing.assert_array_equal(ours, theirs, err_msg=name)


def test_train_epoch_with_an_optimizer_matches_the_book(book, data):
    train, _ = data
    net_a = softmax_net(3)
    net_b = copy.deepcopy(net_a)
    loss = nn.CrossEntropyLoss(reduction="none")
    opt_a = torch.optim.SGD(net_a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(net_b.parameters(), lr=0.1)
    ours = d2l.train_epoch_ch3(net_a, train, loss, opt_a)
    with book_warnings_ignored():
        theirs = book.train_epoch_ch3(net_b, train, loss, opt_b)
    assert ours == theirs
    assert 0.5 < ours[0] < 1.2 and 0.6 < ours[1] < 0.85  # one epoch: the book's first point
    for p, q in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_train_epoch_from_scratch_matches_the_book(book, data):
    train, _ = data
    ours_model, book_model = Scratch(d2l.sgd, seed=4), Scratch(book.sgd, seed=4)
    ours = d2l.train_epoch_ch3(ours_model.net, train, Scratch.loss, ours_model.updater)
    with book_warnings_ignored():
        theirs = book.train_epoch_ch3(book_model.net, train, Scratch.loss, book_model.updater)
    assert ours == theirs
    assert torch.equal(ours_model.W, book_model.W) and torch.equal(ours_model.b, book_model.b)
    assert ours_model.W.grad.abs().sum() == 0  # sgd zeroes the gradient, as the book's does


def test_train_ch3_history_is_what_the_book_plots(book, data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOFTMAX_REGRESSION_FIGURES", str(tmp_path))
    train, test = data
    net_a = softmax_net(5)
    net_b = copy.deepcopy(net_a)
    loss = nn.CrossEntropyLoss(reduction="none")
    RecordingAnimator.instances.clear()
    # Two epochs do not reach the book's target loss: both sides raise an AssertionError.
    with pytest.raises(AssertionError), book_warnings_ignored():
        book.train_ch3(net_b, train, test, loss, 2, torch.optim.SGD(net_b.parameters(), lr=0.1))
    with pytest.raises(AssertionError) as caught:
        d2l.train_ch3(net_a, train, test, loss, 2, torch.optim.SGD(net_a.parameters(), lr=0.1))
    (recorder,) = RecordingAnimator.instances
    history = caught.value.history
    assert recorder.points == [
        (epoch + 1, (history.train_loss[epoch], history.train_acc[epoch], history.test_acc[epoch]))
        for epoch in range(2)
    ]
    assert recorder.kwargs["legend"] == ["train loss", "train acc", "test acc"]


# --------------------------------------------------------------------------- the trainer


@pytest.fixture(scope="module")
def subset():
    train = load_fashion_mnist("train").subset(range(12000))
    test = load_fashion_mnist("test").subset(range(2000))
    return train, test


def to_tensor(images: torch.Tensor) -> torch.Tensor:
    """torchvision's ToTensor on uint8 images, written out: ``img.to(float32).div(255)``."""
    return images.unsqueeze(1).to(torch.float32).div(255)


def book_run(book, config: TrainConfig, train, test, device: str = "cpu"):
    """The book's own ``train_epoch_ch3`` and ``evaluate_accuracy`` (d2l 0.17.6's source), with
    the chapter's net, loss and ``torch.optim.SGD``, fed the batches ``fit`` draws and started
    from the weights ``fit`` draws: one generator, the weights first, then one permutation
    per epoch."""
    gen = torch.Generator().manual_seed(config.seed)
    init = SoftmaxRegression.seeded(gen)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        net[1].weight.copy_(init.weight)
        net[1].bias.copy_(init.bias)
    net.to(device)
    loss = nn.CrossEntropyLoss(reduction="none")
    trainer = torch.optim.SGD(
        net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    test_iter = [
        (to_tensor(test.images[i : i + 256]).to(device), test.labels[i : i + 256].to(device))
        for i in range(0, len(test), 256)
    ]
    history = []
    for _ in range(config.epochs):
        perm = torch.randperm(len(train), generator=gen)
        train_iter = [
            (to_tensor(train.images[idx]).to(device), train.labels[idx].to(device))
            for idx in perm.split(config.batch_size)
        ]
        with book_warnings_ignored():
            train_loss, train_acc = book.train_epoch_ch3(net, train_iter, loss, trainer)
        history.append((train_loss, train_acc, book.evaluate_accuracy(net, test_iter)))
    return net, history


def numbers(result) -> list[tuple[float, float, float]]:
    return [(r.train_loss, r.train_acc, r.test_acc) for r in result.history]


# Every device: without a GPU the cuda cases show as skipped, with the reason (pytest -ra).
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


@pytest.mark.parametrize(
    "changes",
    [{}, {"momentum": 0.9, "weight_decay": 1e-3}, {"batch_size": 100, "lr": 0.05, "seed": 7}],
    ids=["book", "momentum+wd", "other-batch"],
)
@pytest.mark.parametrize("device", DEVICES)
def test_the_autograd_engine_is_the_books_training_bit_for_bit(book, subset, changes, device):
    train, test = subset
    config = TrainConfig(engine="autograd", epochs=2, device=device, **changes)
    net, expected = book_run(book, config, train, test, device)
    result = fit(config, train, test)
    assert torch.equal(result.model.weight, net[1].weight.detach().cpu())
    assert torch.equal(result.model.bias, net[1].bias.detach().cpu())
    assert numbers(result) == expected


def test_the_fast_engine_is_the_books_training_to_float_rounding(book, subset, float_rounding):
    """README: the default engine is the same run up to float rounding: the same accuracies,
    train losses within ``float_rounding`` (the full 10-epoch runs: test_train_book.py)."""
    train, test = subset
    config = TrainConfig(epochs=3)
    _, expected = book_run(book, config, train, test)
    got = numbers(fit(config.replace(engine="fast"), train, test))
    for (loss, acc, test_acc), (book_loss, book_acc, book_test_acc) in zip(
        got, expected, strict=True
    ):
        assert abs(loss - book_loss) <= float_rounding
        assert (acc, test_acc) == (book_acc, book_test_acc)
