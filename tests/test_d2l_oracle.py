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
import re
import sys
import tarfile
import time
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib import pyplot
from torch import nn

from softmax_regression import d2l
from softmax_regression import errors as d2l_errors
from softmax_regression.config import TrainConfig
from softmax_regression.d2l import _plotting
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
    "Timer",
    "accuracy",
    "download",
    "download_extract",
    "evaluate_accuracy",
    "evaluate_loss",
    "get_fashion_mnist_labels",
    "linreg",
    "load_array",
    "plot",
    "set_axes",
    "set_figsize",
    "sgd",
    "squared_loss",
    "synthetic_data",
    "train_ch3",
    "train_epoch_ch3",
}
# The book's alias block: names bound to torch's own objects, then its lambdas.
SAME_OBJECTS = {
    "ones", "zeros", "tensor", "arange", "meshgrid", "sin", "sinh", "cos", "cosh", "tanh",
    "linspace", "exp", "log", "normal", "rand", "matmul", "int32", "float32", "concat", "stack",
    "abs", "eye",
}  # fmt: skip
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
    names = DEFINITIONS | SAME_OBJECTS | ALIASES | {"DATA_HUB", "DATA_URL"}
    keep = [node for node in ast.parse(source).body if _defined_name(node) in names]
    keep += [node for node in ast.parse(source).body if _sets_data_hub_entry(node)]
    module = types.ModuleType("d2l_0_17_6")
    module.__dict__.update(
        torch=torch,
        np=np,
        time=time,
        os=os,
        hashlib=hashlib,
        requests=requests,
        zipfile=zipfile,
        tarfile=tarfile,
        data=torch.utils.data,
        plt=pyplot,
        Animator=RecordingAnimator,
    )
    module.d2l = module  # the book's functions call each other as d2l.<name>
    exec(compile(ast.Module(keep, type_ignores=[]), "d2l/torch.py (0.17.6)", "exec"), vars(module))
    missing = names - set(vars(module))
    assert not missing, f"not found in d2l/torch.py: {sorted(missing)}"
    # Its use_svg_display needs a running IPython (backend_inline); figures are compared here.
    module.use_svg_display = lambda: None
    return module


def _sets_data_hub_entry(node: ast.stmt) -> bool:
    """``DATA_HUB['kaggle_house_...'] = ...``: the registry entries of chapter 4."""
    if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript)):
        return False
    target = node.targets[0]
    return "DATA_HUB" in ast.unparse(target.value) and "kaggle_house" in ast.unparse(target.slice)


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
    """docs/training.md, "The two engines": the default engine is the same run up to float
    rounding: the same accuracies, train losses within ``float_rounding`` (the full 10-epoch
    runs: test_train_book.py)."""
    train, test = subset
    config = TrainConfig(epochs=3)
    _, expected = book_run(book, config, train, test)
    got = numbers(fit(config.replace(engine="fast"), train, test))
    for (loss, acc, test_acc), (book_loss, book_acc, book_test_acc) in zip(
        got, expected, strict=True
    ):
        assert abs(loss - book_loss) <= float_rounding
        assert (acc, test_acc) == (book_acc, book_test_acc)


@pytest.fixture(autouse=True)
def no_figures_left(tmp_path, monkeypatch):
    """Figures go to the test's directory; none is left held or open for the end of pytest."""
    monkeypatch.setenv("SOFTMAX_REGRESSION_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setattr(_plotting, "_saved", {})
    yield
    _plotting._held.clear()
    pyplot.close("all")


def test_the_alias_block_is_the_books(book):
    for name in SAME_OBJECTS:
        assert getattr(d2l, name) is getattr(book, name), name


def test_synthetic_data_linreg_and_squared_loss_match_the_book(book):
    w, b = torch.tensor([2, -3.4]), 4.2
    torch.manual_seed(3)
    X, y = d2l.synthetic_data(w, b, 50)
    after_ours = torch.rand(3)
    torch.manual_seed(3)
    X_b, y_b = book.synthetic_data(w, b, 50)
    assert torch.equal(after_ours, torch.rand(3))  # the same draws from the global generator
    assert torch.equal(X, X_b) and torch.equal(y, y_b) and y.shape == (50, 1)
    w_col = torch.tensor([[2.0], [-3.4]])
    assert torch.equal(d2l.linreg(X, w_col, b), book.linreg(X, w_col, b))
    y_hat = d2l.linreg(X, w_col, b)
    for target in (y, y.reshape(-1)):  # the label vector is reshaped like the predictions
        assert torch.equal(d2l.squared_loss(y_hat, target), book.squared_loss(y_hat, target))
    assert float(d2l.squared_loss(y_hat, y).mean()) < 1e-3  # noise of std 0.01


@pytest.mark.parametrize(
    ("n", "batch_size", "is_train"), [(103, 10, True), (20, 5, False), (7, 9, True)]
)
def test_load_array_gives_the_books_batches(book, n, batch_size, is_train):
    X, y = torch.randn(n, 3), torch.randn(n, 1)
    for seed in (0, 1):
        torch.manual_seed(seed)
        ours = [list(d2l.load_array((X, y), batch_size, is_train)) for _ in range(2)]
        after_ours = torch.rand(4)
        torch.manual_seed(seed)
        loader = book.load_array((X, y), batch_size, is_train)
        theirs = [list(loader) for _ in range(2)]
        assert torch.equal(after_ours, torch.rand(4))  # same draws, so the chapter's next too
        assert len(d2l.load_array((X, y), batch_size, is_train)) == len(loader)
        for pass_ours, pass_theirs in zip(ours, theirs, strict=True):
            assert len(pass_ours) == len(pass_theirs)
            for (xa, ya), (xb, yb) in zip(pass_ours, pass_theirs, strict=True):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)
    if is_train:
        assert not all(torch.equal(a[0], b[0]) for a, b in zip(*ours, strict=True))


def test_load_array_refuses_what_is_not_a_tuple_of_same_length_tensors():
    with pytest.raises(ConfigError, match=r"first dimension \(\(3, 2\), \(4, 1\)\)"):
        d2l.load_array((torch.zeros(3, 2), torch.zeros(4, 1)), 2)
    with pytest.raises(ConfigError, match="a tuple of tensors, got ndarray"):
        d2l.load_array((np.zeros(3),), 2)
    with pytest.raises(ConfigError, match="batch_size must be a positive integer, got 0"):
        d2l.load_array((torch.zeros(3),), 0)


def test_evaluate_loss_and_a_regression_epoch_match_the_book(book):
    """Chapter 4.4's use: nn.MSELoss(reduction='none'), train_epoch_ch3 with an optimizer."""
    features, labels = torch.randn(100, 4), torch.randn(100, 1)
    torch.manual_seed(5)
    net_a = nn.Sequential(nn.Linear(4, 1, bias=False))
    net_b = copy.deepcopy(net_a)
    loss = nn.MSELoss(reduction="none")
    results = {}
    for side, net, lib in (("ours", net_a, d2l), ("book", net_b, book)):
        torch.manual_seed(6)
        train_iter = lib.load_array((features, labels), 10)
        test_iter = lib.load_array((features, labels), 10, is_train=False)
        trainer = torch.optim.SGD(net.parameters(), lr=0.01)
        with book_warnings_ignored():
            epochs = [lib.train_epoch_ch3(net, train_iter, loss, trainer) for _ in range(3)]
        results[side] = (
            epochs,
            lib.evaluate_loss(net, train_iter, loss),
            lib.evaluate_loss(net, test_iter, loss),
        )
    assert results["ours"] == results["book"]
    assert torch.equal(net_a[0].weight, net_b[0].weight)
    # The from-scratch form of chapter 4.5: a function net and squared_loss.
    w, b = torch.ones(4, 1), torch.zeros(1)
    test_iter = list(d2l.load_array((features, labels), 7, is_train=False))
    net = lambda X: d2l.linreg(X, w, b)  # noqa: E731
    ours = d2l.evaluate_loss(net, test_iter, d2l.squared_loss)
    assert ours == book.evaluate_loss(net, test_iter, book.squared_loss) and ours > 1


def _drawn(axes) -> dict:
    """Everything plot and set_axes put on an Axes."""
    legend = axes.get_legend()
    return {
        "lines": [
            (
                line.get_xdata().tolist(),
                line.get_ydata().tolist(),
                line.get_color(),
                line.get_linestyle(),
            )
            for line in axes.get_lines()
        ],
        "labels": (axes.get_xlabel(), axes.get_ylabel()),
        "scales": (axes.get_xscale(), axes.get_yscale()),
        "limits": (axes.get_xlim(), axes.get_ylim()),
        "legend": [t.get_text() for t in legend.get_texts()] if legend else None,
        "grid": axes.xaxis.get_gridlines()[0].get_visible(),
    }


PLOT_CASES = [
    ((np.arange(0, 3, 0.1), [np.arange(0, 3, 0.1) ** 2, 2 * np.arange(0, 3, 0.1) - 3]),
     {"xlabel": "x", "ylabel": "f(x)", "legend": ["f(x)", "Tangent line (x=1)"]}),
    ((torch.arange(-8.0, 8.0, 0.1), torch.relu(torch.arange(-8.0, 8.0, 0.1)), "x", "relu(x)"),
     {"figsize": (5, 2.5)}),
    (([1.0, 2.0, 4.0],), {"yscale": "log", "xlim": [0, 3], "ylim": [0.5, 5]}),
    (([[1, 2, 3], [3, 2, 1]],), {"fmts": ("r:", "-")}),
    ((list(range(1, 6)), [[0.5, 0.4, 0.3, 0.25, 0.2], [0.6, 0.5, 0.45, 0.4, 0.41]]),
     {"xlabel": "epoch", "ylabel": "rmse", "xlim": [1, 5], "legend": ["train", "valid"],
      "yscale": "log"}),
]  # fmt: skip


@pytest.mark.parametrize(("args", "kwargs"), PLOT_CASES)
def test_plot_draws_what_the_book_draws(book, args, kwargs, capsys):
    import matplotlib

    ours_fig, book_fig = pyplot.figure(), pyplot.figure()
    ours_axes, book_axes = ours_fig.add_subplot(), book_fig.add_subplot()
    d2l.plot(*args, axes=ours_axes, **kwargs)
    book.plot(*args, axes=book_axes, **kwargs)
    assert _drawn(ours_axes) == _drawn(book_axes)
    assert list(matplotlib.rcParams["figure.figsize"]) == list(kwargs.get("figsize", (3.5, 2.5)))
    # Without axes: a figure of its own, saved, and the same drawing. (The figure of the
    # given axes was held; moving on to another figure saves it first.)
    pyplot.figure(book_fig.number)
    book.plot(*args, **kwargs)
    d2l.plot(*args, **kwargs)
    paths = re.findall(r"^figure saved to (.+)$", capsys.readouterr().out, re.M)
    assert [Path(p).name for p in paths] == ["plot.png", "plot-2.png"]
    assert all(Path(p).is_file() for p in paths)
    saved = [f for f in _plotting._saved_figures if f is not ours_fig]
    (fig,) = [f for f in saved if f.axes and _drawn(f.axes[0]) == _drawn(book_fig.axes[0])]
    assert tuple(fig.get_size_inches()) == tuple(kwargs.get("figsize", (3.5, 2.5)))


def test_set_axes_matches_the_book(book):
    args = ("epoch", "loss", [1, 10], [1e-3, 1e2], "linear", "log", ["train", "test"])
    ours, theirs = pyplot.figure().add_subplot(), pyplot.figure().add_subplot()
    for axes in (ours, theirs):
        axes.plot([1, 5, 10], [1, 0.1, 0.01])
        axes.plot([1, 5, 10], [2, 0.2, 0.05])
    d2l.set_axes(ours, *args)
    book.set_axes(theirs, *args)
    assert _drawn(ours) == _drawn(theirs)


def test_timer_matches_the_book(book):
    for timer in (d2l.Timer(), book.Timer()):
        timer.times = [0.5, 0.25, 1.0]
        assert (timer.avg(), timer.sum(), timer.cumsum()) == (
            0.5833333333333334,
            1.75,
            [0.5, 0.75, 1.75],
        )


@pytest.fixture
def http_files(tmp_path):
    """A local HTTP server over a directory: (directory, base URL)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _hub_entry(root: Path, base: str, name: str, payload: bytes) -> tuple[str, str]:
    (root / name).write_bytes(payload)
    return base + name, hashlib.sha1(payload).hexdigest()


def test_data_hub_and_download_match_the_book(book, http_files, tmp_path, monkeypatch, capsys):
    assert d2l.DATA_URL == book.DATA_URL
    assert d2l.DATA_HUB == book.DATA_HUB  # the two house-price files of chapter 4.10
    root, base = http_files
    entry = _hub_entry(root, base, "house.csv", b"Id,SalePrice\n1,208500\n")
    monkeypatch.setitem(d2l.DATA_HUB, "house", entry)
    monkeypatch.setitem(book.DATA_HUB, "house", entry)
    monkeypatch.chdir(tmp_path)
    ours = d2l.download("house", cache_dir=str(tmp_path / "ours"))
    theirs = book.download("house", cache_dir=str(tmp_path / "book"))
    assert Path(ours).name == Path(theirs).name == "house.csv"
    assert Path(ours).read_bytes() == Path(theirs).read_bytes()
    assert capsys.readouterr().out.splitlines() == [
        f"Downloading {ours} from {entry[0]}...",
        f"Downloading {theirs} from {entry[0]}...",
    ]
    # The default cache is ../data, as the book's; a cached file with the right SHA-1 is
    # used without asking the network.
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    first = d2l.download("house")
    assert first == os.path.join("..", "data", "house.csv") == book.download("house")
    (root / "house.csv").unlink()
    capsys.readouterr()
    assert d2l.download("house") == first and capsys.readouterr().out == ""
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]


def test_a_bad_download_leaves_nothing_and_says_how_to_fix_it(http_files, tmp_path, monkeypatch):
    root, base = http_files
    url, _ = _hub_entry(root, base, "corrupt.csv", b"not what was published")
    monkeypatch.setitem(d2l.DATA_HUB, "corrupt", (url, "0" * 40))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "corrupt.csv").write_bytes(b"an old, wrong copy")
    with pytest.raises(d2l_errors.DownloadError) as caught:
        d2l.download("corrupt", cache_dir=str(cache))
    message = str(caught.value)
    assert "\n" not in message and url in message and "not 0000000000" in message
    assert f"put it at {cache / 'corrupt.csv'} (SHA-1 {'0' * 40})" in message
    # The wrong copy is neither used nor replaced by the corrupt download; no partial file.
    assert [p.name for p in cache.iterdir()] == ["corrupt.csv"]
    assert (cache / "corrupt.csv").read_bytes() == b"an old, wrong copy"
    # Offline (nothing listens there): one line with the URL and the way out.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    offline = f"http://127.0.0.1:{port}/house.csv"
    monkeypatch.setitem(d2l.DATA_HUB, "offline", (offline, "1" * 40))
    with pytest.raises(d2l_errors.DownloadError, match=r"^could not download http://127") as e:
        d2l.download("offline", cache_dir=str(cache))
    assert "\n" not in str(e.value) and "put it at" in str(e.value)
    assert [p.name for p in cache.iterdir()] == ["corrupt.csv"]
    with pytest.raises(ConfigError, match="'nothing' is not in DATA_HUB"):
        d2l.download("nothing")


# The book's download_extract never closes its archive (a ResourceWarning when collected).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_download_extract_matches_the_book(book, http_files, tmp_path, monkeypatch, kind):
    import io

    root, base = http_files
    buf = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("pack/a.txt", "alpha")
            zf.writestr("pack/sub/b.txt", "beta")
    else:
        with tarfile.open(fileobj=buf, mode="w:gz" if kind == "tar.gz" else "w") as tf:
            for name, text in (("pack/a.txt", b"alpha"), ("pack/sub/b.txt", b"beta")):
                info = tarfile.TarInfo(name)
                info.size = len(text)
                tf.addfile(info, io.BytesIO(text))
    entry = _hub_entry(root, base, f"pack.{kind}", buf.getvalue())
    monkeypatch.setitem(d2l.DATA_HUB, "pack", entry)
    monkeypatch.setitem(book.DATA_HUB, "pack", entry)
    results = {}
    for side, lib in (("ours", d2l), ("book", book)):
        (tmp_path / side / "work").mkdir(parents=True)
        monkeypatch.chdir(tmp_path / side / "work")
        results[side] = (lib.download_extract("pack"), lib.download_extract("pack", "pack"))
        data = tmp_path / side / "data"
        assert (data / "pack" / "sub" / "b.txt").read_text() == "beta"
    assert results["ours"] == results["book"]
