"""Sweeps: the grid, shared runs for epoch counts, the table and the files it writes."""

from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image

from softmax_regression import load_fashion_mnist
from softmax_regression.cli import main
from softmax_regression.config import TrainConfig
from softmax_regression.errors import ConfigError
from softmax_regression.sweep import Setting, grid, run_sweep
from softmax_regression.train import fit


@pytest.fixture(scope="module")
def data():
    # A slice of the real data keeps each run to a few hundred milliseconds.
    train = load_fashion_mnist("train", download=False).subset(range(12000))
    test = load_fashion_mnist("test", download=False).subset(range(2000))
    return train, test


def test_grid_is_every_combination_in_order_without_duplicates():
    g = grid([0.1, 0.3], [256, 64], [5, 5, 10])
    assert g[:3] == [Setting(0.1, 256, 5), Setting(0.1, 256, 10), Setting(0.1, 64, 5)]
    assert len(g) == 2 * 2 * 2
    with pytest.raises(ConfigError):
        grid([], [256], [1])


def test_shorter_settings_equal_their_own_runs(data):
    """A 1-epoch setting read from the 3-epoch run is exactly the 1-epoch run."""
    train, test = data
    base = TrainConfig(val_split=1000, device="cpu")
    result = run_sweep(base, grid([0.1], [256], [1, 3]), [0, 1], train, test)
    assert result.trained_epochs == 2 * 3  # each seed trained once, for 3 epochs
    short = result.results[0]
    assert short.setting.epochs == 1
    for seed, row in zip((0, 1), short.runs.per_seed, strict=True):
        direct = fit(base.replace(epochs=1, seed=seed), train, test).final
        assert row["train_loss"] == direct.train_loss
        assert row["train_acc"] == direct.train_acc
        assert row["test_acc"] == direct.test_acc
        assert row["val_acc"] == direct.val_acc
    long = result.results[1]
    assert len(long.curves["val_acc"]) == 3
    i = long.best_epoch - 1
    assert long.curves["val_acc"][i] == max(long.curves["val_acc"])
    assert long.test_acc_at_best_epoch == long.curves["test_acc"][i]
    seeds_mean = sum(r["test_acc"] for r in long.runs.per_seed) / 2
    assert long.runs.summary["test_acc"].mean == pytest.approx(seeds_mean, abs=1e-15)


def test_sweep_rejects_a_bad_setting_before_training(data):
    train, test = data
    with pytest.raises(ConfigError, match="lr"):
        run_sweep(TrainConfig(), grid([0.1, -1.0], [256], [1]), [0], train, test)


def test_cli_table_and_files_hold_the_same_numbers(tmp_path, capsys):
    out = tmp_path / "sw"
    argv = [
        "sweep",
        "--lr",
        "0.05,0.5",
        "--batch-size",
        "512",
        "--epochs",
        "1,2",
        "--seeds",
        "0,1",
        "--val-split",
        "5000",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    data = json.loads((out / "sweep.json").read_text())
    rows = list(csv.DictReader(io.StringIO((out / "sweep.csv").read_text())))
    assert len(data["settings"]) == len(rows) == 4
    assert data["trained_epochs"] == 2 * 2 * 2
    table = [ln for ln in text.splitlines() if ln.split()[:1] in (["0.05"], ["0.5"])]
    assert len(table) == 4
    for s, row, line in zip(data["settings"], rows, table, strict=True):
        assert (float(row["lr"]), int(row["batch_size"]), int(row["epochs"])) == (
            s["lr"],
            s["batch_size"],
            s["epochs"],
        )
        for m in ("train_loss", "train_acc", "val_acc", "test_acc"):
            mean, std = s["summary"][m]["mean"], s["summary"][m]["std"]
            assert float(row[f"{m}_mean"]) == mean and float(row[f"{m}_std"]) == std
            assert f"{mean:.4f} ± {std:.4f}" in line
        assert int(row["best_epoch"]) == s["best_epoch"]
        assert line.split()[-2:] == [str(s["best_epoch"]), f"{s['test_acc_at_best_epoch']:.4f}"]
        assert len(s["curves"]["train_loss"]) == s["epochs"]
    # lr 0.5 with batch 512 on these pixels still trains: accuracies far above chance.
    assert all(s["summary"]["test_acc"]["mean"] > 0.6 for s in data["settings"])
    with Image.open(out / "curves.png") as img:
        assert img.format == "PNG" and img.size[0] > 1000


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lr", "0.1,x"], "--lr must be a comma-separated list of numbers"),
        (["--batch-size", "0"], "batch size must be at least 1"),
        (["--epochs", "1.5"], "--epochs must be a comma-separated list of integers"),
        (["--seeds", "0"], "--seeds count must be at least 1"),
        (["--lr", "-0.1"], "lr must be positive"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "sw"
    assert main(["sweep", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()
