"""softmax_regression.d2l outside Jupyter: data, training figures, errors and output."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image
from torch import nn

import softmax_regression
from softmax_regression import d2l, plots
from softmax_regression.d2l import _plotting, _training
from softmax_regression.errors import ConfigError, NonFiniteLossError, SoftmaxRegressionError
from softmax_regression.train import EpochRecord

SAVED = re.compile(r"^figure saved to (.+\.png)$", re.M)


@pytest.fixture(autouse=True)
def figures(tmp_path, monkeypatch):
    """Each test saves its figures in its own directory."""
    directory = tmp_path / "figures"
    monkeypatch.setenv(_plotting.FIGURES_ENV, str(directory))
    return directory


@pytest.fixture(scope="module")
def fashion():
    return d2l.load_data_fashion_mnist(256)


def saved_pngs(out: str) -> list[Image.Image]:
    """The PNG files whose paths ``out`` printed, opened and checked."""
    images = []
    for path in SAVED.findall(out):
        with Image.open(path) as img:
            img.load()
            assert img.format == "PNG"
            images.append(img)
    return images


def linear_net(inputs: int = 784, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(inputs, 10))
    nn.init.normal_(net[1].weight, std=0.01)
    return net


def test_load_data_matches_the_books_loaders(fashion):
    train_iter, test_iter = fashion
    assert (len(train_iter), len(test_iter)) == (235, 40)
    sizes = []
    for X, y in test_iter:
        assert X.dtype == torch.float32 and y.dtype == torch.int64
        assert X.shape[1:] == (1, 28, 28) and X.shape[0] == y.shape[0]
        assert float(X.min()) >= 0.0 and float(X.max()) <= 1.0
        sizes.append(len(y))
    assert sizes == [256] * 39 + [16]
    assert [len(y) for _, y in train_iter][-1] == 96  # no drop_last, as the book
    assert d2l.get_dataloader_workers() == 0


def test_training_batches_reshuffle_every_pass_and_test_batches_do_not(fashion):
    train_iter, test_iter = fashion
    first = [next(iter(train_iter))[1] for _ in range(2)]
    assert not torch.equal(first[0], first[1])
    labels = [torch.cat([y for _, y in test_iter]) for _ in range(2)]
    assert torch.equal(labels[0], labels[1])
    # The training pass covers each example once.
    assert torch.bincount(torch.cat([y for _, y in train_iter])).tolist() == [6000] * 10


def test_torch_manual_seed_makes_the_order_repeatable():
    orders = []
    for _ in range(2):
        torch.manual_seed(7)
        train_iter, _ = d2l.load_data_fashion_mnist(64)
        orders.append([y for _, (_, y) in zip(range(3), train_iter, strict=False)])
    assert all(torch.equal(a, b) for a, b in zip(*orders, strict=True))


@pytest.mark.parametrize(("resize", "shape"), [(32, (32, 32)), ((20, 24), (20, 24)), (0, (28, 28))])
def test_resize(resize, shape):
    train_iter, test_iter = d2l.load_data_fashion_mnist(100, resize=resize)
    for X, _ in (next(iter(train_iter)), next(iter(test_iter))):
        assert X.shape == (100, 1, *shape) and X.dtype == torch.float32
        assert float(X.min()) >= 0.0 and float(X.max()) <= 1.0


def test_bad_batch_size_is_a_one_line_error():
    with pytest.raises(ConfigError, match="batch size must be a positive integer, got 0"):
        d2l.load_data_fashion_mnist(0)


def test_train_ch3_prints_one_line_per_epoch_and_saves_the_figure(fashion, figures, capsys):
    train_iter, test_iter = fashion
    net = linear_net()
    loss = nn.CrossEntropyLoss(reduction="none")
    trainer = torch.optim.SGD(net.parameters(), lr=0.1)
    threads = torch.get_num_threads()
    # Two epochs do not reach the book's train loss < 0.5: the figure is still saved first.
    with pytest.raises(d2l.FinalCheckError) as caught:
        d2l.train_ch3(net, train_iter, test_iter, loss, 2, trainer)
    assert torch.get_num_threads() == threads
    err = caught.value
    assert isinstance(err, AssertionError) and isinstance(err, SoftmaxRegressionError)
    history = err.history
    assert [r.epoch for r in history] == [1, 2] and all(r.seconds > 0 for r in history)
    loss_2 = history.train_loss[1]
    assert str(err) == (
        f"train_ch3's final checks failed after 2 epochs: train loss {loss_2:.4f} is not "
        f"below 0.5 (by {loss_2 - 0.5:.4f})"
    )
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:2] == [
        f"epoch {e + 1}: train loss {history.train_loss[e]:.4f}, train acc "
        f"{history.train_acc[e]:.4f}, test acc {history.test_acc[e]:.4f}"
        for e in range(2)
    ]
    assert lines[2] == f"figure saved to {figures / 'train_ch3.png'}" and len(lines) == 3
    (png,) = saved_pngs(out)
    assert png.width > 300 and png.height > 200
    assert "<Figure" not in out
    # The history is the book's per-epoch figures: evaluate_accuracy agrees with the last one.
    assert d2l.evaluate_accuracy(net, test_iter) == history.test_acc[-1]
    assert 0.5 < history.train_loss[-1] < history.train_loss[0] < 1.2


def test_final_checks_say_which_failed_and_by_how_much():
    check = _training.final_check_failures
    assert check(0.45, 0.85, 0.83) == []
    assert check(0.5, 0.7, 0.8) == [
        "train loss 0.5000 is not below 0.5 (by 0.0000)",
        "train acc 0.7000 is not above 0.7 (short by 0.0000)",
    ]
    assert check(0.3, 1.25, 0.65) == [
        "train acc 1.2500 is above 1 (by 0.2500)",
        "test acc 0.6500 is not above 0.7 (short by 0.0500)",
    ]
    assert check(math.nan, 0.8, 0.8) == ["train loss nan is not below 0.5 (by nan)"]


def test_a_nan_loss_stops_training_at_once(figures, capsys):
    X, y = torch.ones(8, 1, 2, 2), torch.zeros(8, dtype=torch.long)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 10))
    with pytest.raises(NonFiniteLossError, match=r"^epoch 1: the training loss is nan"):
        d2l.train_ch3(
            net, [(X, y)], [(X, y)], lambda y_hat, y: y_hat.sum(1) * math.nan, 5, lambda n: None
        )
    assert capsys.readouterr().out.splitlines() == []  # no epoch finished, nothing to plot


@pytest.mark.parametrize("num_epochs", [0, -1, 2.0, True])
def test_bad_num_epochs(num_epochs):
    with pytest.raises(ConfigError, match="num_epochs must be a positive integer"):
        d2l.train_ch3(None, [], [], None, num_epochs, None)


def test_empty_iterables_are_errors_not_zero_division():
    with pytest.raises(ConfigError, match="evaluate_accuracy: data_iter yielded no examples"):
        d2l.evaluate_accuracy(lambda X: X, [])
    with pytest.raises(ConfigError, match="train_epoch_ch3: train_iter yielded no batches"):
        d2l.train_epoch_ch3(lambda X: X, [], None, None)
    with pytest.raises(ConfigError, match="predict_ch3: test_iter yielded no batches"):
        d2l.predict_ch3(lambda X: X, [])


def test_unwritable_figure_directory_fails_before_training(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(_plotting.FIGURES_ENV, str(blocker / "figures"))
    calls = []
    with pytest.raises(
        ConfigError, match=r"cannot create the figure directory .*SOFTMAX_REGRESSION_FIGURES"
    ):
        d2l.train_ch3(lambda X: calls.append(X), [], [], None, 10, None)
    assert calls == [] and capsys.readouterr().out == ""


def test_predict_ch3_shows_true_and_predicted_labels_even_after_resize(monkeypatch, capsys):
    _, test_iter = d2l.load_data_fashion_mnist(50, resize=32)
    net = linear_net(32 * 32)
    shown = []
    real_show = _training.show
    monkeypatch.setattr(_training, "show", lambda fig, *a: shown.append(fig) or real_show(fig, *a))
    assert d2l.predict_ch3(net, test_iter, n=4) is None
    X, y = next(iter(test_iter))
    preds = d2l.get_fashion_mnist_labels(net(X).argmax(1))
    trues = d2l.get_fashion_mnist_labels(y)
    (fig,) = shown
    assert [ax.get_title() for ax in fig.axes] == [
        f"{t}\n{p}" for t, p in zip(trues, preds, strict=False)
    ][:4]
    assert [ax.get_images()[0].get_array().shape for ax in fig.axes] == [(32, 32)] * 4
    (png,) = saved_pngs(capsys.readouterr().out)
    assert png.width > 2 * png.height


def test_show_images_returns_the_axes_and_saves_a_png(figures, capsys):
    imgs = torch.rand(3, 1, 5, 5, requires_grad=True)  # (1, H, W) images, still tracking grad
    axes = d2l.show_images(imgs, 2, 2, titles=["a", "b", "c"])
    assert len(axes) == 4 and [ax.get_title() for ax in axes] == ["a", "b", "c", ""]
    single = d2l.show_images([torch.zeros(4, 4)], 1, 1)  # the book fails on a 1x1 grid
    assert len(single) == 1
    out = capsys.readouterr().out
    assert SAVED.findall(out) == [
        str(figures / "show_images.png"),
        str(figures / "show_images-2.png"),
    ]
    assert len(saved_pngs(out)) == 2
    with pytest.raises(ConfigError, match="num_cols must be a positive integer, got 0"):
        d2l.show_images(imgs, 1, 0)


def test_animator_prints_its_points_and_saves_on_finish(figures, capsys):
    animator = d2l.Animator(xlabel="step", legend=["loss"], fmts=("-", "r:"))
    animator.add(0.5, (1.25, 3))
    animator.add(1, (None, 2))
    assert animator.X == [[0.5], [0.5, 1]] and animator.Y == [[1.25], [3, 2]]
    path = animator.finish()
    assert capsys.readouterr().out.splitlines() == [
        "step 0.5: loss 1.2500, y2 3.0000",
        "step 1: y2 2.0000",
        f"figure saved to {path}",
    ]
    assert path == figures / "animator.png" and path.is_file()
    assert d2l.Animator().finish() is None  # nothing plotted, nothing saved


def test_figures_never_go_through_pyplot(fashion, capsys):
    plt = d2l.plt
    before = plt.get_fignums()
    d2l.show_images(torch.zeros(2, 3, 3), 1, 2)
    d2l.predict_ch3(linear_net(), fashion[1])
    assert plt.get_fignums() == before  # nothing for a GUI or Jupyter's inline backend to show


def test_set_figsize_and_use_svg_display(monkeypatch):
    import matplotlib

    monkeypatch.setattr(_plotting, "_notebook_format", "png")
    monkeypatch.setitem(matplotlib.rcParams, "figure.figsize", [6.4, 4.8])
    d2l.set_figsize((2, 3))
    assert list(matplotlib.rcParams["figure.figsize"]) == [2, 3]
    assert _plotting._notebook_format == "svg"


def test_timer_records_durations():
    timer = d2l.Timer()
    first = timer.stop()
    timer.start()
    second = timer.stop()
    assert first >= 0 and second >= 0 and timer.times == [first, second]
    assert timer.sum() == first + second and timer.avg() == (first + second) / 2
    assert timer.cumsum() == [first, first + second]


def test_sgd_steps_and_zeroes_the_gradient():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    (w * torch.tensor([3.0, 4.0])).sum().backward()
    d2l.sgd([w], 0.5, 2)
    assert w.tolist() == [1.0 - 0.5 * 3 / 2, 2.0 - 0.5 * 4 / 2] and w.grad.tolist() == [0.0, 0.0]


def test_history_is_the_packages_run_history_with_a_one_line_repr():
    records = [
        EpochRecord(1, 0.5, 0.8, 0.75, None, 1.5),
        EpochRecord(2, 0.25, 0.875, 0.8, None, 1.0),
    ]
    history = d2l.History(records)
    assert isinstance(history, softmax_regression.History)
    assert (history.train_loss, history.train_acc, history.test_acc) == (
        [0.5, 0.25],
        [0.8, 0.875],
        [0.75, 0.8],
    )
    assert repr(history) == (
        "History(2 epochs; last: train loss 0.2500, train acc 0.8750, test acc 0.8000)"
    )
    assert repr(d2l.History()) == "History(no epochs)"
    assert history.to_csv().splitlines()[0] == "epoch,train_loss,train_acc,test_acc,seconds"
    assert plots.curves(history).axes[0].get_lines()[2].get_ydata().tolist() == [0.75, 0.8]


def test_import_is_light_and_checks_survive_python_O(tmp_path):
    """No pyplot or IPython on import; the final checks are raised, not asserted (-O)."""
    code = textwrap.dedent(
        """
        import json, sys, torch
        from torch import nn
        from softmax_regression import d2l
        loaded = {m: m in sys.modules for m in ("matplotlib.pyplot", "IPython")}
        X, y = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
        net = nn.Sequential(nn.Flatten(), nn.Linear(4, 10))
        try:  # a custom updater: creating a torch.optim optimizer imports torch._dynamo (slow)
            d2l.train_ch3(net, [(X, y)], [(X, y)], nn.CrossEntropyLoss(reduction="none"), 1,
                          lambda batch_size: None)
            raised = None
        except AssertionError as e:
            raised = type(e).__name__
        loaded["pyplot after training"] = "matplotlib.pyplot" in sys.modules
        print(json.dumps({"loaded": loaded, "raised": raised}))
        """
    )
    env = {**os.environ, _plotting.FIGURES_ENV: str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result == {
        "loaded": {"matplotlib.pyplot": False, "IPython": False, "pyplot after training": False},
        "raised": "FinalCheckError",
    }


def test_the_readers_own_figures_in_a_terminal(tmp_path):
    """IPython's display of a figure made through d2l.plt prints one line, clear_output writes
    nothing; the figure is saved when another is shown, and figures never shown at exit."""
    code = textwrap.dedent(
        """
        from IPython import display
        from softmax_regression import d2l

        d2l.use_svg_display()
        fig, axes = d2l.plt.subplots(1, 1, figsize=(3.5, 2.5))
        for x in (1, 2, 3):
            axes.cla()
            axes.plot([1, 2, 3][:x], [0.9, 0.5, 0.25][:x], "-")
            axes.plot([1, 2, 3][:x], [0.6, 0.7, 0.75][:x], "m--")
            d2l.set_axes(axes, "epoch", None, [1, 3], [0, 1], "linear", "linear",
                         ["train loss", "train acc"])
            display.display(fig)
            display.clear_output(wait=True)
        display.display("not a figure")
        d2l.show_images([d2l.zeros(2, 2)], 1, 1)
        d2l.plt.figure()
        d2l.plt.plot([1, 2], [3, 4])
        print("end of script")
        """
    )
    env = {**os.environ, _plotting.FIGURES_ENV: str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "epoch 1: train loss 0.9000, train acc 0.6000",
        "epoch 2: train loss 0.5000, train acc 0.7000",
        "epoch 3: train loss 0.2500, train acc 0.7500",
        "not a figure",
        f"figure saved to {tmp_path / 'figure.png'}",
        f"figure saved to {tmp_path / 'show_images.png'}",
        "end of script",
        f"figure saved to {tmp_path / 'figure-2.png'}",
    ]
    assert run.stderr == ""
    assert len(saved_pngs(run.stdout)) == 3


def test_display_is_ipythons_own_until_the_code_reaches_matplotlib_through_d2l():
    code = textwrap.dedent(
        """
        from softmax_regression import d2l
        import IPython.display
        before = hasattr(IPython.display.display, "__wrapped__")
        d2l.plt  # the chapter's figures start here
        after = hasattr(IPython.display.display, "__wrapped__")
        print(before, after)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "True"]


def test_the_readers_own_loop_runs_on_the_threads_that_suit_it():
    """Chapter 3.6 loops over the batches itself: one thread for three batches, torch's
    setting for three, then the faster; restored after the pass, even one cut short."""
    from softmax_regression.d2l import _threads
    from softmax_regression.train import cpu_threads

    _, test_iter = d2l.load_data_fashion_mnist(256)
    with cpu_threads(2):
        for _ in test_iter:
            break
        assert torch.get_num_threads() == 2
        seen = [torch.get_num_threads() for _ in test_iter]
        assert torch.get_num_threads() == 2
        chosen = _threads.chosen_threads(test_iter)
        assert seen[:6] == [1, 1, 1, 2, 2, 2] and set(seen[6:]) == {chosen}
        assert [torch.get_num_threads() for _ in test_iter] == [chosen] * 40  # kept
        small = d2l.load_array((torch.zeros(20, 2), torch.zeros(20, 1)), 5)  # 4 batches
        assert [torch.get_num_threads() for _ in small] == [1] * 4
        assert torch.get_num_threads() == 2
