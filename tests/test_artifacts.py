"""What a run leaves on disk: every file, holding the numbers the run returned; models that
load back (and refuse to load when they are not ours); resume, bit for bit."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from softmax_regression.config import TrainConfig, resolve_device
from softmax_regression.data import load_fashion_mnist
from softmax_regression.errors import ModelFileError, NonFiniteLossError, ResumeError
from softmax_regression.evaluation import evaluate
from softmax_regression.model import SoftmaxRegression
from softmax_regression.runs import artifacts
from softmax_regression.runs.book import RUN_FILES, train_run
from softmax_regression.runs.directory import resume_config


@pytest.fixture(scope="module")
def data():
    train = load_fashion_mnist("train").subset(range(6000))
    test = load_fashion_mnist("test").subset(range(1000))
    return train, test


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    train, test = data
    out = tmp_path_factory.mktemp("runs") / "run"
    return train_run(TrainConfig(epochs=3), out=out, train=train, test=test)


def _numbers(history):
    return [(r.epoch, r.train_loss, r.train_acc, r.test_acc, r.val_acc) for r in history]


def test_a_run_leaves_every_file(run) -> None:
    names = {p.name for p in run.directory.iterdir()}
    assert names == set(RUN_FILES)
    assert {p.name for p in run.files} == set(RUN_FILES)
    for name in ("curves.png", "predictions.png", "confusion.png", "weights.png"):
        with Image.open(run.directory / name) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 200


def test_the_files_hold_the_runs_numbers(run, data) -> None:
    d, history = run.directory, run.result.history
    rows = list(csv.DictReader((d / "metrics.csv").read_text().splitlines()))
    assert [
        (int(r["epoch"]), float(r["train_loss"]), float(r["train_acc"]), float(r["test_acc"]))
        for r in rows
    ] == [(r.epoch, r.train_loss, r.train_acc, r.test_acc) for r in history]
    assert artifacts.read_history(d) == history
    status = json.loads((d / "status.json").read_text())
    assert status["status"] == "completed" and status["epochs_completed"] == 3
    info = json.loads((d / "model.json").read_text())
    assert info["metrics"]["test_acc"] == history.last.test_acc
    assert info["metrics"]["train_loss"] == history.last.train_loss
    assert info["classes"][0] == "t-shirt" and info["input_shape"] == [1, 28, 28]
    assert info["preprocessing"]["scale"] == "divide by 255"
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["config"] == TrainConfig(epochs=3).to_dict() and cfg["seed"] == 0
    assert cfg["device"] == resolve_device("auto").type  # the run's config says auto
    assert cfg["versions"]["torch"] == torch.__version__
    train, test = data
    assert cfg["data_sha256"] == {**train.sha256, **test.sha256} and len(cfg["data_sha256"]) == 4


def test_the_saved_model_scores_what_the_run_reported(run, data) -> None:
    _, test = data
    saved = artifacts.load_model(run.directory)
    assert saved.path == run.directory / "model.safetensors"
    assert saved.classes[9] == "ankle boot" and saved.normalize is True
    assert torch.equal(saved.model.weight, run.result.model.weight)
    ev = evaluate(saved.model, test)
    assert ev.accuracy == run.result.final.test_acc == run.evaluation.accuracy
    assert sum(map(sum, ev.confusion)) == len(test)


def test_the_model_file_loads_into_the_books_net(run) -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    net.load_state_dict(load_file(run.directory / "model.safetensors"))
    assert torch.equal(net[1].weight, run.result.model.weight)


# --------------------------------------------------------------------------- bad model files


def _ours(tmp_path: Path) -> Path:
    model = SoftmaxRegression().init_book(torch.Generator().manual_seed(0))
    return artifacts.save_model(tmp_path / "m", model)


def _write_like_ours(path: Path, tensors, **meta) -> Path:
    base = {"format": artifacts.MODEL_FORMAT, "format_version": "1"}
    base.update({"classes": json.dumps(["a"] * 10), "normalize": "true"})
    base.update(meta)
    save_file(tensors, path, metadata={k: v for k, v in base.items() if v is not None})
    return path


def _good_tensors():
    return {"1.weight": torch.zeros(10, 784), "1.bias": torch.zeros(10)}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.safetensors", "no such file"),
        (lambda p: p, "no model.safetensors in this directory"),
        (lambda p: _bytes(p / "junk.safetensors", b"\x00" * 100), "not a valid safetensors file"),
        (lambda p: _bytes(p / "text.safetensors", b"hello"), "not a valid safetensors file"),
        (lambda p: _truncated(p), "not a valid safetensors file"),
        (lambda p: _foreign(p), "not a softmax-regression model file (no format tag)"),
        (
            lambda p: _write_like_ours(p / "v.safetensors", _good_tensors(), format_version="9"),
            "format version '9' is not supported",
        ),
        (
            lambda p: _write_like_ours(
                p / "s.safetensors", {"1.weight": torch.zeros(10, 100), "1.bias": torch.zeros(10)}
            ),
            "weights take 100 inputs, but the input shape is [1, 28, 28]",
        ),
        (
            lambda p: _write_like_ours(p / "b.safetensors", {"1.weight": torch.zeros(10, 784)}),
            "tensor '1.bias' is missing",
        ),
        (
            lambda p: _write_like_ours(
                p / "n.safetensors",
                {"1.weight": torch.full((10, 784), float("nan")), "1.bias": torch.zeros(10)},
            ),
            "holds nan or inf",
        ),
        (
            lambda p: _write_like_ours(p / "c.safetensors", _good_tensors(), classes="[1, 2]"),
            "expected 10 class names",
        ),
    ],
    ids=[
        "missing",
        "empty-dir",
        "zeros",
        "text",
        "truncated",
        "foreign",
        "version",
        "shape",
        "no-bias",
        "nan",
        "classes",
    ],
)
def test_bad_model_files_are_one_line_errors(tmp_path, make, message) -> None:
    path = make(tmp_path)
    with pytest.raises(ModelFileError) as e:
        artifacts.load_model(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated(tmp_path: Path) -> Path:
    good = _ours(tmp_path).read_bytes()
    return _bytes(tmp_path / "cut.safetensors", good[: len(good) // 2])


def _foreign(tmp_path: Path) -> Path:
    path = tmp_path / "foreign.safetensors"
    save_file(_good_tensors(), path)
    return path


def test_a_run_dir_without_a_model_says_why(tmp_path) -> None:
    artifacts.write_status(tmp_path, "failed", error="boom")
    with pytest.raises(
        ModelFileError, match="no model.safetensors in this directory .the run failed"
    ):
        artifacts.load_model(tmp_path)


# --------------------------------------------------------------------------- resume


class _StopAfter:
    """A progress reporter that interrupts the run after ``n`` completed epochs (a Ctrl-C)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def epoch_start(self, epoch, epochs, steps) -> None:
        if epoch == self.n + 1:
            raise KeyboardInterrupt

    def advance(self, steps) -> None:
        pass

    def epoch_end(self, record) -> None:
        pass


@pytest.mark.parametrize(
    "changes", [{}, {"momentum": 0.9, "val_split": 600}, {"optimizer": "adam", "lr": 0.003}]
)
def test_resume_is_bit_identical_to_an_uninterrupted_run(data, tmp_path, changes) -> None:
    train, test = data
    config = TrainConfig(epochs=3, seed=4, **changes)
    whole = train_run(config, out=tmp_path / "whole", train=train, test=test, plots=False)
    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        train_run(config, out=broken, train=train, test=test, progress=_StopAfter(1), plots=False)
    status = artifacts.read_status(broken)
    assert status["status"] == "interrupted" and status["epochs_completed"] == 1
    assert not (broken / "model.safetensors").exists()
    resumed = train_run(resume_config(broken), resume=broken, train=train, test=test, plots=False)
    assert resumed.directory == broken
    assert torch.equal(resumed.result.model.weight, whole.result.model.weight)
    assert torch.equal(resumed.result.model.bias, whole.result.model.bias)
    assert _numbers(resumed.result.history) == _numbers(whole.result.history)
    assert artifacts.read_status(broken)["status"] == "completed"
    assert load_file(broken / "model.safetensors")["1.weight"].equal(whole.result.model.weight)


def test_resume_with_more_epochs_continues_a_finished_run(data, tmp_path) -> None:
    train, test = data
    short = train_run(
        TrainConfig(epochs=2), out=tmp_path / "r", train=train, test=test, plots=False
    )
    longer = train_run(
        resume_config(short.directory, {"epochs": 3}),
        resume=short.directory,
        train=train,
        test=test,
        plots=False,
    )
    whole = train_run(
        TrainConfig(epochs=3), out=tmp_path / "w", train=train, test=test, plots=False
    )
    assert torch.equal(longer.result.model.weight, whole.result.model.weight)
    assert len(artifacts.read_history(short.directory)) == 3


def test_resume_refuses_another_config_and_missing_checkpoints(run, data, tmp_path) -> None:
    train, test = data
    with pytest.raises(ResumeError, match=r"was trained with lr=0.1, not 0.5; a resumed run keeps"):
        resume_config(run.directory, {"lr": 0.5})
    with pytest.raises(ResumeError, match="was trained with seed=0, not 1"):
        train_run(TrainConfig(epochs=5, seed=1), resume=run.directory, train=train, test=test)
    with pytest.raises(ResumeError, match="already has 3 epochs; pass --epochs above 3"):
        train_run(TrainConfig(epochs=3), resume=run.directory, train=train, test=test)
    with pytest.raises(ResumeError, match="no such run directory"):
        train_run(TrainConfig(), resume=tmp_path / "nope", train=train, test=test)
    with pytest.raises(ResumeError, match="no config.json"):
        resume_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ResumeError, match="no checkpoint.safetensors"):
        train_run(TrainConfig(), resume=tmp_path, train=train, test=test)
    (tmp_path / "checkpoint.safetensors").write_bytes(b"garbage!" * 10)
    with pytest.raises(ResumeError, match="not a valid safetensors file"):
        train_run(TrainConfig(), resume=tmp_path, train=train, test=test)


def test_a_failed_run_is_marked_and_writes_no_model(data, tmp_path) -> None:
    train, test = data
    out = tmp_path / "bad"
    with pytest.raises(NonFiniteLossError) as e:
        train_run(TrainConfig(loss="naive", normalize=False), out=out, train=train, test=test)
    status = artifacts.read_status(out)
    assert status["status"] == "failed"
    assert status["error"] == str(e.value)
    assert (status["epoch"], status["step"]) == (e.value.epoch, e.value.step)
    assert not (out / "model.safetensors").exists() and not (out / "model.json").exists()
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temporary leftovers
    with pytest.raises(ModelFileError, match="the run failed"):
        artifacts.load_model(out)


def test_out_must_be_new(run, data) -> None:
    from softmax_regression.errors import ConfigError

    train, test = data
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        train_run(TrainConfig(epochs=1), out=run.directory, train=train, test=test)
