"""Several seeds of a recipe: parsing --seeds, mean ± std, the files that hold them."""

from __future__ import annotations

import csv
import io
import statistics

import numpy as np
import pytest

from softmax_regression.cli._options import parse_seeds
from softmax_regression.errors import ConfigError
from softmax_regression.seeds import MeanStd, SeedRuns, final_metrics, summarize
from softmax_regression.train import EpochRecord, History


@pytest.mark.parametrize(
    "text, seeds",
    [("0,1,2", (0, 1, 2)), ("5", (0, 1, 2, 3, 4)), ("1", (0,)), (" 3, 7 ", (3, 7))],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    "text, message",
    [("a,b", "count"), ("0", "at least 1"), ("1,1", "twice"), ("-1,2", "negative"), ("", "count")],
)
def test_parse_seeds_rejects(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_seeds(text)


def test_mean_std_is_the_sample_standard_deviation():
    vals = [0.8312, 0.8275, 0.8350]
    ms = MeanStd.of(vals)
    assert ms.mean == pytest.approx(np.mean(vals), abs=1e-15)
    assert ms.std == pytest.approx(np.std(vals, ddof=1), abs=1e-15)
    assert MeanStd.of([0.5]).std == 0.0
    assert ms.format(3) == f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f}"


def _history(vals, tests):
    return History(
        [
            EpochRecord(i + 1, 1.0 / (i + 1), 0.7 + 0.01 * i, t, v, 0.5)
            for i, (v, t) in enumerate(zip(vals, tests, strict=True))
        ]
    )


def test_final_metrics_picks_the_first_best_validation_epoch():
    h = _history([0.80, 0.83, 0.82, 0.83], [0.79, 0.81, 0.84, 0.80])
    m = final_metrics(h)
    assert m["best_epoch"] == 2 and m["test_acc_at_best_epoch"] == 0.81
    assert m["test_acc"] == 0.80 and m["val_acc"] == 0.83
    assert m["seconds"] == pytest.approx(2.0)
    no_val = final_metrics(_history([None, None], [0.8, 0.82]))
    assert "best_epoch" not in no_val and "val_acc" not in no_val


def test_summary_and_csv_hold_the_same_numbers():
    rows = [
        {"train_loss": 0.45, "test_acc": 0.83, "val_acc": None},
        {"train_loss": 0.44, "test_acc": 0.82, "val_acc": None},
        {"train_loss": 0.46, "test_acc": 0.84, "val_acc": None},
    ]
    runs = SeedRuns.from_rows([0, 1, 2], rows)
    assert set(runs.summary) == {"train_loss", "test_acc"}  # absent metrics are not averaged
    table = list(csv.reader(io.StringIO(runs.to_csv())))
    assert table[0] == ["seed", "train_loss", "test_acc"]
    assert [r[0] for r in table[1:]] == ["0", "1", "2", "mean", "std"]
    assert float(table[4][2]) == statistics.fmean([0.83, 0.82, 0.84])
    assert float(table[5][2]) == statistics.stdev([0.83, 0.82, 0.84])
    text = "\n".join(runs.lines())
    assert f"test_acc    {runs.summary['test_acc'].format()}" in text
    assert runs.to_dict()["summary"]["train_loss"]["values"] == [0.45, 0.44, 0.46]


def test_summarize_needs_runs():
    with pytest.raises(ValueError):
        summarize([])


def test_seed_runs_write_mean_and_std_beside_the_runs(tmp_path):
    import json

    from softmax_regression.runs.seeds import seed_runs

    seen = []

    def run_one(seed, directory):
        directory.mkdir(parents=True)
        seen.append((seed, directory.name))
        return {"train_loss": 0.4 + seed / 100, "test_acc": 0.8 + seed / 1000, "seconds": 1.0}

    result = seed_runs(tmp_path, (0, 2, 5), run_one, description={"recipe": "book"})
    assert seen == [(0, "seed-0"), (2, "seed-2"), (5, "seed-5")]
    data = json.loads((tmp_path / "seeds.json").read_text())
    assert data["recipe"] == "book" and data["seeds"] == [0, 2, 5]
    assert data["summary"]["test_acc"]["mean"] == statistics.fmean([0.8, 0.802, 0.805])
    assert data["summary"]["test_acc"]["std"] == statistics.stdev([0.8, 0.802, 0.805])
    assert data["runs"] == ["seed-0", "seed-2", "seed-5"]
    table = list(csv.reader(io.StringIO((tmp_path / "seeds.csv").read_text())))
    assert table[-2][0] == "mean" and float(table[-2][1]) == result.summary["train_loss"].mean


def test_train_seeds_reports_mean_and_std_in_terminal_and_files(tmp_path, capsys):
    import json

    from softmax_regression.cli import main

    out = tmp_path / "runs"
    argv = [
        "train",
        "--seeds",
        "0,1",
        "--epochs",
        "2",
        "--val-split",
        "5000",
        "--device",
        "cpu",
        "--no-plots",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    data = json.loads((out / "seeds.json").read_text())
    assert data["seeds"] == [0, 1] and data["recipe"] == "book"
    assert data["config"]["val_split"] == 5000 and "seed" not in data["config"]
    for seed in (0, 1):
        run = out / f"seed-{seed}"
        cfg = json.loads((run / "config.json").read_text())["config"]
        assert cfg["seed"] == seed and cfg["epochs"] == 2
        history = json.loads((run / "history.json").read_text())["epochs"]
        row = data["per_seed"][seed]
        assert row["test_acc"] == history[-1]["test_acc"]
        assert row["val_acc"] == history[-1]["val_acc"]
        assert (run / "model.safetensors").exists()
    assert data["per_seed"][0]["train_loss"] != data["per_seed"][1]["train_loss"]
    for name in ("train_loss", "train_acc", "val_acc", "test_acc", "best_epoch"):
        s = data["summary"][name]
        vals = [r[name] for r in data["per_seed"]]
        assert s["mean"] == statistics.fmean(vals) and s["std"] == statistics.stdev(vals)
        digits = 2 if name == "best_epoch" else 4
        assert f"{name} " in text and f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}" in text
    assert "seeds.json" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "0,1", "--seed", "3"], "either --seed or --seeds"),
        (["--seeds", "x"], "--seeds must be a count"),
        (["--seeds", "2", "--resume", "somewhere"], "--resume continues one run"),
    ],
)
def test_train_seeds_bad_input(tmp_path, capsys, argv, message):
    from softmax_regression.cli import main

    assert main(["train", "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
