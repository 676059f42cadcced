"""The best-linear recipe: exact folding, the written-out gradient, honest selection, accuracy."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import json

import pytest
import torch

from softmax_regression import load_fashion_mnist
from softmax_regression.best_linear import (
    BestLinearConfig,
    Spectrum,
    Standardizer,
    fit_best_linear,
    objective_and_gradient,
    pixels,
    run_best_linear,
    select_weight_decay,
    solve,
)
from softmax_regression.data import FashionMNIST
from softmax_regression.errors import ConfigError
from softmax_regression.train import cpu_threads, split_validation


@pytest.fixture(scope="module")
def train():
    return load_fashion_mnist("train", download=False)


@pytest.fixture(scope="module")
def test_split():
    return load_fashion_mnist("test", download=False)


@pytest.fixture(scope="module")
def small(train):
    # 4,000 real images: the solver's behaviour in well under a second per fit.
    return train.subset(range(4000))


def test_standardizer_guards_pixels_that_never_vary(small):
    x = pixels(small, torch.float64)
    assert bool((x[:, 0] == 0).all())  # the corner pixel is black in every image
    s = Standardizer.fit(x)
    assert s.std[0] == 1.0
    z = s(x)
    assert bool(torch.isfinite(z).all())
    varying = x.std(0) > 1e-6
    assert torch.allclose(z[:, varying].mean(0), torch.zeros((), dtype=z.dtype), atol=1e-12)
    assert torch.allclose(z[:, varying].std(0), torch.ones((), dtype=z.dtype), atol=1e-12)


def test_folding_is_exact_to_float_rounding(small):
    x = pixels(small, torch.float64)
    s = Standardizer.fit(x)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(10, 784, generator=g, dtype=torch.float64)
    b = torch.randn(10, generator=g, dtype=torch.float64)
    standardised = s(x) @ w.T + b
    fw, fb = s.fold(w, b)
    raw = x @ fw.T + fb
    assert torch.allclose(raw, standardised, rtol=0, atol=1e-10)
    uw, ub = s.unfold(fw, fb)
    assert torch.allclose(uw, w, atol=1e-12) and torch.allclose(ub, b, atol=1e-12)
    # And in float32, as the saved model runs: within float32 rounding of the logits.
    raw32 = pixels(small) @ fw.float().T + fb.float()
    scale = standardised.abs().max()
    assert float((raw32.double() - standardised).abs().max() / scale) < 1e-5


def test_gradient_matches_autograd(small):
    x = Standardizer.fit(pixels(small, torch.float64))(pixels(small, torch.float64))
    y = small.labels
    g = torch.Generator().manual_seed(1)
    w = (0.05 * torch.randn(10, 784, generator=g, dtype=torch.float64)).requires_grad_(True)
    b = torch.randn(10, generator=g, dtype=torch.float64).requires_grad_(True)
    wd = 3e-3
    ref = torch.nn.functional.cross_entropy(x @ w.T + b, y) + 0.5 * wd * (w * w).sum()
    ref.backward()
    with torch.no_grad():
        loss, gw, gb = objective_and_gradient(x, y, w, b, wd)
    assert float(loss) == pytest.approx(float(ref.detach()), rel=1e-12)
    assert torch.allclose(gw, w.grad, rtol=1e-10, atol=1e-14)
    assert torch.allclose(gb, b.grad, rtol=1e-10, atol=1e-14)


def test_gradient_with_the_correlation_metric_matches_autograd(small):
    x = Standardizer.fit(pixels(small, torch.float64))(pixels(small, torch.float64))
    spectrum = Spectrum(x, power=1.0, floor=0.01)
    r = spectrum.penalty()
    assert torch.allclose(r, r.T) and float(torch.linalg.eigvalsh(r).min()) > 0
    # Dear where images do not vary, cheap where they do: r_k falls as eigenvalue c_k grows.
    assert bool((spectrum.relative[:-1] >= spectrum.relative[1:]).all())
    assert Spectrum(x, power=0.0).penalty() is None  # plain L2
    g = torch.Generator().manual_seed(2)
    w = (0.05 * torch.randn(10, 784, generator=g, dtype=torch.float64)).requires_grad_(True)
    b = torch.randn(10, generator=g, dtype=torch.float64).requires_grad_(True)
    wd = 3e-3
    ref = torch.nn.functional.cross_entropy(x @ w.T + b, small.labels)
    ref = ref + 0.5 * wd * torch.trace(w @ r @ w.T)
    ref.backward()
    with torch.no_grad():
        loss, gw, gb = objective_and_gradient(x, small.labels, w, b, wd, r)
    assert float(loss) == pytest.approx(float(ref.detach()), rel=1e-12)
    assert torch.allclose(gw, w.grad, rtol=1e-10, atol=1e-14)
    assert torch.allclose(gb, b.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("block_rows", [None, 1000, 4096])
def test_gradient_with_a_margin_matches_autograd(small, block_rows):
    # The margin lowers the true class's logit inside the loss; blocks change nothing.
    x = Standardizer.fit(pixels(small, torch.float64))(pixels(small, torch.float64))
    y, margin, wd = small.labels, 2.0, 1e-3
    g = torch.Generator().manual_seed(3)
    w = (0.05 * torch.randn(10, 784, generator=g, dtype=torch.float64)).requires_grad_(True)
    b = torch.randn(10, generator=g, dtype=torch.float64).requires_grad_(True)
    shift = margin * torch.nn.functional.one_hot(y, 10).double()
    ref = torch.nn.functional.cross_entropy(x @ w.T + b - shift, y) + 0.5 * wd * (w * w).sum()
    ref.backward()
    with torch.no_grad():
        loss, gw, gb = objective_and_gradient(x, y, w, b, wd, None, block_rows, margin)
        plain, _, _ = objective_and_gradient(x, y, w, b, wd, None, block_rows)
    assert float(loss) == pytest.approx(float(ref.detach()), rel=1e-12)
    assert torch.allclose(gw, w.grad, rtol=1e-10, atol=1e-14)
    assert torch.allclose(gb, b.grad, rtol=1e-10, atol=1e-14)
    assert float(loss) > float(plain)  # the margin makes every image's loss larger


def test_preconditioning_changes_the_path_not_the_minimum(train):
    data = train.subset(range(2000))
    x = Standardizer.fit(pixels(data, torch.float64))(pixels(data, torch.float64))
    y = data.labels
    init = (torch.zeros(10, 784, dtype=torch.float64), torch.zeros(10, dtype=torch.float64))
    with cpu_threads(1):
        # Plain L2.
        spectrum, wd = Spectrum(x, power=0.0), 0.1
        a = solve(x, y, wd, 150, init=init, spectrum=spectrum)
        b = solve(x, y, wd, 400, init=init, spectrum=spectrum, precondition=False)
        # The point of the preconditioner: far fewer passes over the data to the same place.
        few = solve(x, y, wd, 30, init=init, spectrum=spectrum)
        plain = solve(x, y, wd, 30, init=init, spectrum=spectrum, precondition=False)
        assert a.objective == pytest.approx(b.objective, rel=1e-8)
        assert torch.allclose(a.weight, b.weight, atol=1e-4)
        assert few.objective - a.objective < (plain.objective - a.objective) / 3
        # The correlation metric: a harder problem, where the gain shows near the minimum:
        # 250 preconditioned iterations end at least as low as 800 plain ones, at the same
        # weights, while 250 plain ones are still far above.
        spectrum, wd = Spectrum(x, power=1.0), 0.3
        a = solve(x, y, wd, 250, init=init, spectrum=spectrum)
        b = solve(x, y, wd, 800, init=init, spectrum=spectrum, precondition=False)
        plain = solve(x, y, wd, 250, init=init, spectrum=spectrum, precondition=False)
    assert a.objective <= b.objective * (1 + 1e-6)
    assert torch.allclose(a.weight, b.weight, atol=5e-3)
    assert plain.objective - a.objective > 100 * abs(b.objective - a.objective)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="weight decays"):
        BestLinearConfig(weight_decays=(1e-3, -1.0))
    with pytest.raises(ConfigError, match="at least one"):
        BestLinearConfig(weight_decays=())
    with pytest.raises(ConfigError, match="select iters"):
        BestLinearConfig(select_iters=0)
    with pytest.raises(ConfigError, match="dtype"):
        BestLinearConfig(dtype="float16")
    with pytest.raises(ConfigError, match="penalty power must be a finite number >= 0"):
        BestLinearConfig(penalty_power=-1.0)
    with pytest.raises(ConfigError, match="penalty floor must be positive"):
        BestLinearConfig(penalty_floor=0.0)
    with pytest.raises(ConfigError, match="margin must be a finite number >= 0"):
        BestLinearConfig(margin=-1.0)
    with pytest.raises(ConfigError, match="margin must be a number"):
        BestLinearConfig(margin="2")


def test_validation_split_too_large_is_a_config_error(small):
    with pytest.raises(ConfigError, match="validation split"):
        fit_best_linear(small, BestLinearConfig(val_split=4000))


class _Poisoned(FashionMNIST):
    """A split whose data cannot be read: any use of it raises."""

    def __getattribute__(self, name):
        if name in ("images", "labels"):
            raise AssertionError(f"the test split's {name} were read")
        return object.__getattribute__(self, name)


def _poison(data: FashionMNIST) -> FashionMNIST:
    return _Poisoned(**{f.name: getattr(data, f.name) for f in dataclasses.fields(data)})


def test_selection_never_reads_the_test_split(train, test_split):
    # By construction: neither function has a place to put test data.
    for fn in (fit_best_linear, select_weight_decay):
        assert not any("test" in p for p in inspect.signature(fn).parameters)
    cfg = BestLinearConfig(weight_decays=(1e-2, 1e-3), select_iters=5, refit_iters=5)
    sub = train.subset(range(4000))
    # And in use: the whole recipe with a test split that cannot be read gets as far as the
    # single evaluation at the end, and no further.
    with pytest.raises(AssertionError, match="test split") as info:
        run_best_linear(sub, _poison(test_split), dataclasses.replace(cfg, val_split=2000))
    frames = [f.name for f in info.traceback]
    assert "evaluate_linear" in frames and "fit_best_linear" not in frames
    # The choice is a function of the training split alone: the same with any test split.
    cfg = dataclasses.replace(cfg, val_split=2000)
    a = run_best_linear(sub, test_split, cfg)
    b = run_best_linear(sub, test_split.subset(range(100)), cfg)
    assert a.model.selection == b.model.selection
    assert torch.equal(a.model.weight, b.model.weight)


def test_selection_uses_the_trainers_validation_split(train):
    cfg = BestLinearConfig(weight_decays=(1e-2,), select_iters=3, refit_iters=3, val_split=2000)
    sub = train.subset(range(8000))
    fit_idx, val_idx = split_validation(2000, sub.labels, cfg.seed)
    direct = select_weight_decay(sub.subset(fit_idx), sub.subset(val_idx), cfg)
    model = fit_best_linear(sub, cfg)
    assert model.selection == direct
    assert direct.n_fit == 6000 and direct.n_val == 2000
    assert "the test split was not used" in model.how_chosen()


def test_run_directory_holds_a_book_format_model_and_the_choice(tmp_path, train, test_split):
    from softmax_regression.evaluation import evaluate
    from softmax_regression.runs.artifacts import load_model
    from softmax_regression.runs.best_linear import best_linear_run

    cfg = BestLinearConfig(
        weight_decays=(1e-2, 1e-3), select_iters=10, refit_iters=10, val_split=2000, device="cpu"
    )
    sub = train.subset(range(10000))
    out = best_linear_run(cfg, out=tmp_path / "run", train=sub, test=test_split)
    names = {p.name for p in out.files}
    assert {
        "model.safetensors",
        "model.json",
        "best_linear.json",
        "candidates.csv",
        "config.json",
        "status.json",
        "weights.png",
        "selection.png",
    } <= names
    saved = load_model(out.directory)
    assert saved.normalize is True
    # The saved model is the folded one: the same test accuracy as reported, recomputed.
    ev = evaluate(saved.model, test_split, normalize=True)
    assert ev.accuracy == out.metrics["test_acc"] > 0.7
    report = json.loads((out.directory / "best_linear.json").read_text())
    assert report["selection"]["chosen_weight_decay"] == out.model.selection.chosen_weight_decay
    assert len(report["selection"]["candidates"]) == 2
    assert report["validation"]["accuracy"] == out.metrics["val_acc"]
    assert report["test"]["accuracy"] == ev.accuracy
    assert "test split was not used" in report["how_chosen"]
    assert "pixel-correlation metric, power 1" in report["how_chosen"]
    assert "cross-entropy with margin 2" in report["how_chosen"]
    assert report["config"]["penalty_power"] == 1.0 and report["config"]["margin"] == 2.0
    rows = list(csv.DictReader(io.StringIO((out.directory / "candidates.csv").read_text())))
    assert [float(r["val_acc"]) for r in rows] == [
        c.val_acc for c in out.model.selection.candidates
    ]
    assert sum(int(r["chosen"]) for r in rows) == 1
    config = json.loads((out.directory / "config.json").read_text())
    assert config["config"]["recipe"] == "best-linear"
    assert json.loads((out.directory / "status.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_train_recipe_best_linear_on_the_real_data(tmp_path, capsys):
    """One seed of the recipe end to end (about 25 s here); the 3-seed figures are in
    BENCHMARKS.md. Above the best linear result of the Fashion-MNIST benchmark (0.842)."""
    from softmax_regression.cli import main
    from softmax_regression.evaluation import evaluate
    from softmax_regression.runs.artifacts import load_model

    out = tmp_path / "best"
    assert (
        main(["train", "--recipe", "best-linear", "--seed", "1", "--no-plots", "--out", str(out)])
        == 0
    )
    text = capsys.readouterr().out
    report = json.loads((out / "best_linear.json").read_text())
    test_acc = report["test"]["accuracy"]
    assert test_acc >= 0.845
    assert report["validation"]["accuracy"] >= 0.855
    assert f"test acc {test_acc:.4f}" in text and "chosen by validation accuracy" in text
    saved = load_model(out)
    assert evaluate(saved.model, load_fashion_mnist("test")).accuracy == test_acc


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "0.1"], "--lr does not apply to --recipe best-linear"),
        (["--no-normalize"], "--no-normalize does not apply"),
        (["--val-split", "0"], "--val-split must be at least 1"),
        (["--device", "tpu"], "device must be one of"),
    ],
)
def test_train_recipe_best_linear_bad_input(tmp_path, capsys, argv, message):
    from softmax_regression.cli import main

    assert main(["train", "--recipe", "best-linear", "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
