"""The trainer's parts: config validation, the lean SGD against torch.optim.SGD, the validation
split, the history, determinism, and the non-finite loss guard."""

from __future__ import annotations

import csv
import io
import math

import pytest
import torch

from softmax_regression import train as train_mod
from softmax_regression.config import TrainConfig, resolve_device
from softmax_regression.data import load_fashion_mnist
from softmax_regression.errors import ConfigError, DeviceError, NonFiniteLossError
from softmax_regression.train import (
    CHECK_EVERY,
    EpochRecord,
    History,
    LeanSGD,
    TorchOptimizer,
    cpu_threads,
    fit,
    split_validation,
)


@pytest.fixture(scope="module")
def small():
    """6,000 training and 1,000 test images of the real dataset (fast to train on)."""
    train = load_fashion_mnist("train")
    test = load_fashion_mnist("test")
    return train.subset(range(6000)), test.subset(range(1000))


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lr": 0}, "lr must be positive"),
        ({"lr": -0.1}, "lr must be positive"),
        ({"lr": math.nan}, "lr must be a finite number"),
        ({"lr": math.inf}, "lr must be a finite number"),
        ({"lr": "0.1"}, "lr must be a finite number"),
        ({"batch_size": 0}, "batch size must be at least 1"),
        ({"batch_size": 2.5}, "batch size must be an integer"),
        ({"batch_size": True}, "batch size must be an integer"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"seed": -1}, "seed must be at least 0"),
        ({"val_split": -5}, "val split must be at least 0"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam"),
        ({"device": "tpu"}, "device must be one of auto, cpu, cuda"),
        ({"loss": "mse"}, "loss must be one of torch, stable, naive"),
        ({"engine": "jit"}, "engine must be one of auto, fast, autograd"),
        ({"momentum": 1.0}, "momentum must be in [0, 1)"),
        ({"momentum": -0.5}, "momentum must not be negative"),
        ({"momentum": 0.9, "optimizer": "adam"}, "momentum applies to sgd only"),
        ({"weight_decay": -1e-4}, "weight decay must not be negative"),
        ({"normalize": "yes"}, "normalize must be true or false"),
        ({"engine": "fast", "loss": "stable"}, "needs engine 'autograd'"),
    ],
)
def test_bad_settings_are_one_line_config_errors(changes, message) -> None:
    with pytest.raises(ConfigError) as e:
        TrainConfig(**changes)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_config_defaults_are_the_books_and_round_trip() -> None:
    c = TrainConfig()
    assert (c.batch_size, c.optimizer, c.lr, c.epochs, c.momentum, c.weight_decay) == (
        256,
        "sgd",
        0.1,
        10,
        0.0,
        0.0,
    )
    assert (c.val_split, c.loss, c.normalize) == (0, "torch", True)
    assert c.resolved_engine == "fast"
    assert c.replace(loss="stable").resolved_engine == "autograd"
    assert TrainConfig.from_dict(c.replace(lr=0.5).to_dict()) == c.replace(lr=0.5)
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate'"):
        c.replace(learning_rate=0.1)


def test_cuda_without_a_gpu_is_a_device_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU is available"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


# --------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize(("momentum", "weight_decay"), [(0, 0), (0.9, 0), (0, 1e-3), (0.5, 5e-4)])
def test_lean_sgd_is_bit_identical_to_torch_optim_sgd(momentum, weight_decay) -> None:
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(10, 784, generator=g), torch.randn(10, generator=g)]
    grads = [[torch.randn_like(p) for p in init] for _ in range(6)]
    ref = [p.clone().requires_grad_(True) for p in init]
    ours = [p.clone().requires_grad_(True) for p in init]
    opt = torch.optim.SGD(ref, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    lean = LeanSGD(ours, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    for k, step in enumerate(grads):
        for p, gr in zip(ref, step, strict=True):
            p.grad = gr.clone()
        opt.step()
        if k % 2:  # both ways of passing the gradient
            lean.step([gr.clone() for gr in step])
        else:
            for p, gr in zip(ours, step, strict=True):
                p.grad = gr.clone()
            lean.step()
        for a, b in zip(ref, ours, strict=True):
            assert torch.equal(a, b)
        if k == 2:  # a resumed optimizer continues identically
            state = {k: v.clone() for k, v in lean.state_tensors().items()}
            lean = LeanSGD(ours, lr=0.1, momentum=momentum, weight_decay=weight_decay)
            lean.load_state_tensors(state)


def test_adam_state_round_trip_continues_identically() -> None:
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(5, generator=g) for _ in range(6)]
    a = torch.zeros(5, requires_grad=True)
    b = torch.zeros(5, requires_grad=True)
    opt_a = TorchOptimizer(torch.optim.Adam([a], lr=0.01))
    opt_b = TorchOptimizer(torch.optim.Adam([b], lr=0.01))
    for k, gr in enumerate(grads):
        opt_a.step([gr])
        opt_b.step([gr])
        if k == 2:
            state = opt_b.state_tensors()
            assert set(state) == {"step.0", "exp_avg.0", "exp_avg_sq.0"}
            opt_b = TorchOptimizer(torch.optim.Adam([b], lr=0.01))
            opt_b.load_state_tensors(state)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- validation split


def test_validation_split_is_stratified_seeded_and_disjoint(small) -> None:
    train, _ = small
    labels = train.labels
    tr, va = split_validation(600, labels, seed=0)
    assert len(va) == 600 and len(tr) == len(train) - 600
    assert torch.equal(torch.sort(torch.cat([tr, va])).values, torch.arange(len(train)))
    counts = torch.bincount(labels, minlength=10).double()
    val_counts = torch.bincount(labels[va], minlength=10).double()
    assert ((val_counts - 600 * counts / len(train)).abs() <= 1).all()
    tr2, va2 = split_validation(600, labels, seed=0)
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    assert not torch.equal(va, split_validation(600, labels, seed=1)[1])
    assert len(split_validation(7, labels, seed=0)[1]) == 7
    with pytest.raises(ConfigError, match="val split 6000 leaves no training images"):
        split_validation(6000, labels, seed=0)


# --------------------------------------------------------------------------- history


def test_history_round_trips_through_csv_and_dict() -> None:
    h = History(
        [
            EpochRecord(1, 0.7863137265523275, 0.7498, 0.7686, None, 0.25),
            EpochRecord(2, 0.5703282203674317, 0.8135166666666667, 0.8021, None, 0.24),
        ]
    )
    assert h.columns() == ["epoch", "train_loss", "train_acc", "test_acc", "seconds"]
    rows = list(csv.DictReader(io.StringIO(h.to_csv())))
    assert [float(r["train_loss"]) for r in rows] == h.series("train_loss")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert History.from_dict(h.to_dict()) == h
    assert "val_acc" not in h.to_dict()["epochs"][0]
    hv = History([EpochRecord(1, 0.5, 0.8, 0.79, 0.81, 0.1)])
    assert hv.columns()[-2] == "val_acc"


# --------------------------------------------------------------------------- fit


def _strip_seconds(history: History) -> list[tuple]:
    return [(r.epoch, r.train_loss, r.train_acc, r.test_acc, r.val_acc) for r in history]


def test_same_seed_same_bits_other_seed_other_run(small) -> None:
    train, test = small
    cfg = TrainConfig(epochs=2, seed=5)
    a, b = fit(cfg, train, test), fit(cfg, train, test)
    assert _strip_seconds(a.history) == _strip_seconds(b.history)
    assert torch.equal(a.model.weight, b.model.weight)
    assert torch.equal(a.model.bias, b.model.bias)
    c = fit(cfg.replace(seed=6), train, test)
    assert not torch.equal(a.model.weight, c.model.weight)
    assert len(a.history) == 2 and a.final.epoch == 2
    assert 0 < a.final.train_loss < 1 and 0.6 < a.final.test_acc <= 1


def test_fit_restores_the_thread_count_and_leaves_the_global_rng(small) -> None:
    train, test = small
    threads = torch.get_num_threads()
    rng = torch.random.get_rng_state()
    fit(TrainConfig(epochs=1), train.subset(range(512)), test.subset(range(100)))
    assert torch.get_num_threads() == threads
    assert torch.equal(rng, torch.random.get_rng_state())
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == threads


def test_validation_images_never_reach_training(small) -> None:
    train, test = small
    cfg = TrainConfig(epochs=2, val_split=500, seed=3)
    result = fit(cfg, train, test)
    assert all(r.val_acc is not None and 0.5 < r.val_acc <= 1 for r in result.history)
    assert len(result.val_indices) == 500
    # Scramble exactly the held-out images: training must not notice.
    images = train.images.clone()
    images[result.val_indices] = 255 - images[result.val_indices]
    scrambled = type(train)(images, train.labels, train.split, train.classes)
    other = fit(cfg, scrambled, test)
    assert torch.equal(other.model.weight, result.model.weight)
    assert [r.train_loss for r in other.history] == [r.train_loss for r in result.history]
    assert [r.val_acc for r in other.history] != [r.val_acc for r in result.history]


def test_no_test_set_means_no_test_accuracy(small) -> None:
    train, _ = small
    result = fit(TrainConfig(epochs=1), train)
    assert result.final.test_acc is None
    assert "test_acc" not in result.history.columns()


# --------------------------------------------------------------------------- non-finite losses


def test_naive_loss_on_raw_pixels_stops_with_epoch_and_step(small) -> None:
    train, test = small
    cfg = TrainConfig(loss="naive", normalize=False, epochs=3)
    seen = []

    class Recorder:
        def epoch_start(self, epoch, epochs, steps):
            seen.append(("start", epoch))

        def advance(self, steps):
            seen.append(("advance", steps))

        def epoch_end(self, record):
            seen.append(("end", record.epoch))

    with pytest.raises(NonFiniteLossError) as e:
        fit(cfg, train, test, progress=Recorder())
    msg = str(e.value)
    assert "\n" not in msg
    assert f"at epoch {e.value.epoch}, step {e.value.step} of 24" in msg
    assert "naive loss" in msg and "un-normalised" in msg and "learning rate" in msg
    # It stopped within one check window of the bad step, without finishing the epoch.
    advanced = sum(n for kind, n in seen if kind == "advance")
    assert e.value.step <= advanced + CHECK_EVERY
    assert ("end", e.value.epoch) not in seen


# docs/training.md, "The guard": a non-finite loss "stops the run within 16 steps".
PROMISED_STEPS = 16


@pytest.mark.parametrize(
    ("bad_call", "epoch", "step"), [(1, 1, 1), (5, 1, 5), (24 + 17, 2, 17), (24, 1, 24)]
)
def test_the_error_names_the_first_bad_step(small, monkeypatch, bad_call, epoch, step) -> None:
    """A loss that turns nan at a known call: the guard must name exactly that step, and
    stop fewer than CHECK_EVERY (at most the promised 16) steps after it."""
    train, test = small
    calls = [0]

    class NanAt(torch.nn.Module):
        def forward(self, logits, labels):
            calls[0] += 1
            losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
            if calls[0] >= bad_call:
                losses = losses + float("nan")
            return losses

    monkeypatch.setattr(train_mod, "make_loss", lambda name: NanAt())
    with pytest.raises(NonFiniteLossError) as e:
        fit(TrainConfig(engine="autograd", epochs=3), train, test)
    assert (e.value.epoch, e.value.step) == (epoch, step)
    assert f"training loss became nan at epoch {epoch}, step {step} of 24" in str(e.value)
    steps_after_the_bad_one = calls[0] - bad_call
    assert steps_after_the_bad_one < CHECK_EVERY <= PROMISED_STEPS


def test_the_fast_engine_stops_within_the_window_too(small, monkeypatch) -> None:
    train, test = small
    steps = [0]
    convert = train_mod.images_to_float

    def counting(images, normalize, out=None):
        steps[0] += out is not None  # a training batch (evaluation converts without out=)
        return convert(images, normalize, out=out)

    monkeypatch.setattr(train_mod, "images_to_float", counting)
    with pytest.raises(NonFiniteLossError) as e:
        fit(TrainConfig(lr=1e36, epochs=2, engine="fast"), train, test)
    first_bad = (e.value.epoch - 1) * 24 + e.value.step
    assert 0 <= steps[0] - first_bad < CHECK_EVERY <= PROMISED_STEPS


def test_a_huge_learning_rate_is_caught(small) -> None:
    train, test = small
    with pytest.raises(NonFiniteLossError, match="lr=1e\\+36"):
        fit(TrainConfig(lr=1e36, epochs=2), train, test)
