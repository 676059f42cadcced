"""Every way a run can end leaves ``status.json`` final, with the reason: an error in the middle
of an epoch, a nan loss, a failed save, a failed background write that only surfaces when the
writes are waited for, Ctrl-C. A run that did not complete keeps the history of its
checkpointed epochs and that checkpoint, has no model file, and resumes once the cause is gone.
"""

from __future__ import annotations

import errno
import os

import pytest
import torch

from softmax_regression import train as train_mod
from softmax_regression.best_linear import BestLinearConfig
from softmax_regression.config import TrainConfig
from softmax_regression.data import load_fashion_mnist, sources
from softmax_regression.data.idx import write_idx
from softmax_regression.errors import ConfigError, NonFiniteLossError, ResumeError
from softmax_regression.runs import artifacts
from softmax_regression.runs import best_linear as best_linear_runs
from softmax_regression.runs import book as book_runs
from softmax_regression.runs.book import train_run
from softmax_regression.runs.directory import resume_config
from softmax_regression.train import fit


@pytest.fixture(scope="module")
def data():
    train = load_fashion_mnist("train").subset(range(6000))  # 24 steps of 256
    test = load_fashion_mnist("test").subset(range(1000))
    return train, test


def _numbers(history) -> list[tuple]:
    return [(r.epoch, r.train_loss, r.train_acc, r.test_acc, r.val_acc) for r in history]


def _no_model(directory) -> bool:
    return (
        not (directory / artifacts.MODEL_FILE).exists()
        and not (directory / artifacts.MODEL_JSON).exists()
    )


def _no_leftovers(directory) -> bool:
    return not any(p.name.startswith(".") for p in directory.iterdir())


class _RaiseIn:
    """Progress that raises ``error`` at the first progress report of epoch ``epoch``: after
    :data:`CHECK_EVERY` steps of it, in the middle of the epoch."""

    def __init__(self, epoch: int, error: BaseException) -> None:
        self.epoch, self.error, self.now = epoch, error, 0

    def epoch_start(self, epoch, epochs, steps) -> None:
        self.now = epoch

    def advance(self, steps) -> None:
        if self.now == self.epoch:
            raise self.error

    def epoch_end(self, record) -> None:
        pass


class _NanFromCall(torch.nn.Module):
    """The book's per-example cross-entropy, turned nan from the ``bad``-th call on."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.bad, self.calls = bad, 0

    def forward(self, logits, labels):
        self.calls += 1
        losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        return losses + float("nan") if self.calls >= self.bad else losses


@pytest.mark.parametrize("cause", ["exception", "nan"])
def test_a_failure_in_epoch_3_keeps_two_epochs_and_resumes_once_fixed(
    data, tmp_path, monkeypatch, cause
) -> None:
    train, test = data
    config = TrainConfig(epochs=4, seed=3, engine="autograd")
    out = tmp_path / "run"
    if cause == "exception":
        progress = _RaiseIn(3, RuntimeError("CUDA out of memory"))
        expected_error, reason = RuntimeError, "RuntimeError: CUDA out of memory"
    else:
        progress = None
        monkeypatch.setattr(train_mod, "make_loss", lambda name: _NanFromCall(2 * 24 + 5))
        expected_error, reason = NonFiniteLossError, "training loss became nan at epoch 3, step 5"
    with pytest.raises(expected_error):
        train_run(config, out=out, train=train, test=test, progress=progress, plots=False)
    monkeypatch.undo()  # the cause removed

    status = artifacts.read_status(out)
    assert status["status"] == "failed" and status["epochs_completed"] == 2
    assert status["error"].startswith(reason) and "finished" in status
    if cause == "nan":
        assert (status["epoch"], status["step"]) == (3, 5)
    two = fit(config.replace(epochs=2), train, test)
    assert _numbers(artifacts.read_history(out)) == _numbers(two.history)
    state, _ = artifacts.load_checkpoint(out)
    assert state.epoch == 2 and torch.equal(state.weight, two.model.weight)
    assert _no_model(out) and _no_leftovers(out)

    resumed = train_run(resume_config(out), resume=out, train=train, test=test, plots=False)
    whole = fit(config, train, test)
    assert torch.equal(resumed.result.model.weight, whole.model.weight)
    assert artifacts.read_status(out)["status"] == "completed"
    assert _numbers(artifacts.read_history(out)) == _numbers(whole.history)


def test_an_os_error_saving_the_model_fails_the_run(data, tmp_path, monkeypatch) -> None:
    train, test = data
    out = tmp_path / "run"

    def disk_full(directory, *args, **kwargs):
        path = str(directory / artifacts.MODEL_FILE)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(artifacts, "save_model", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train_run(TrainConfig(epochs=2), out=out, train=train, test=test, plots=False)
    status = artifacts.read_status(out)
    assert status["status"] == "failed" and status["epochs_completed"] == 2
    assert status["error"] == f"{out / artifacts.MODEL_FILE}: {os.strerror(errno.ENOSPC)}"
    assert len(artifacts.read_history(out)) == 2
    assert _no_model(out) and _no_leftovers(out)


def test_a_background_write_error_surfaces_at_close_and_fails_the_run(
    data, tmp_path, monkeypatch
) -> None:
    """Epoch 2's checkpoint fails on the writer thread; training goes on, and the error is
    raised when the writes are waited for: the run is failed, its history stops at epoch 1."""
    train, test = data
    out = tmp_path / "run"
    save = artifacts.save_checkpoint

    def fails_at_epoch_2(directory, state, config):
        if state.epoch == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(directory / "checkpoint"))
        return save(directory, state, config)

    monkeypatch.setattr(artifacts, "save_checkpoint", fails_at_epoch_2)
    with pytest.raises(OSError, match=os.strerror(errno.EIO)):
        train_run(TrainConfig(epochs=3), out=out, train=train, test=test, plots=False)
    status = artifacts.read_status(out)
    assert status["status"] == "failed" and status["epochs_completed"] == 1
    assert os.strerror(errno.EIO) in status["error"]
    assert len(artifacts.read_history(out)) == 1
    assert artifacts.load_checkpoint(out)[0].epoch == 1
    assert _no_model(out) and _no_leftovers(out)


def test_an_error_after_the_model_was_written_removes_it(data, tmp_path, monkeypatch) -> None:
    train, test = data
    out = tmp_path / "run"

    def broken_figures(self, directory, request):
        raise MemoryError

    monkeypatch.setattr(book_runs._PlotWorker, "draw", broken_figures)
    with pytest.raises(MemoryError):
        train_run(TrainConfig(epochs=1), out=out, train=train, test=test)
    status = artifacts.read_status(out)
    assert (status["status"], status["error"]) == ("failed", "MemoryError")
    assert _no_model(out) and _no_leftovers(out)


def test_an_empty_training_set_and_ctrl_c_and_a_closed_pipe(data, tmp_path) -> None:
    train, test = data
    with pytest.raises(ConfigError, match="the training set is empty"):
        train_run(TrainConfig(), out=tmp_path / "a", train=train.subset([]), test=test)
    status = artifacts.read_status(tmp_path / "a")
    assert (status["status"], status["error"]) == ("failed", "the training set is empty")

    for name, error, reason in [
        ("b", KeyboardInterrupt(), "interrupted"),
        ("c", BrokenPipeError(errno.EPIPE, "Broken pipe"), "output closed (broken pipe)"),
    ]:
        with pytest.raises(type(error)):
            train_run(
                TrainConfig(epochs=3),
                out=tmp_path / name,
                train=train,
                test=test,
                progress=_RaiseIn(2, error),
                plots=False,
            )
        status = artifacts.read_status(tmp_path / name)
        assert (status["status"], status["error"]) == ("interrupted", reason)
        assert status["epochs_completed"] == 1


def test_resuming_with_other_data_is_refused(
    make_dataset, isolated_cache, tmp_path, monkeypatch
) -> None:
    """Two data directories with the same shapes and one training pixel apart: a run trained
    on the first does not resume on the second, and is left as it was."""
    first = make_dataset(tmp_path / "first", n_train=300, n_test=50)
    second = make_dataset(tmp_path / "second", n_train=300, n_test=50)  # the same arrays
    stem = sources.FILES["train"][0]
    second.arrays[stem][17, 3, 4] ^= 1
    write_idx(second.files[stem], second.arrays[stem], compress=True)
    assert second.sha256(stem) != first.sha256(stem)

    first.publish(monkeypatch)
    out = tmp_path / "run"
    train_run(TrainConfig(epochs=1, data_dir=str(first.directory)), out=out, plots=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    second.publish(monkeypatch)
    config = resume_config(out, {"epochs": 2, "data_dir": str(second.directory)})
    with pytest.raises(ResumeError, match=f"was trained on different data \\({stem} differs\\)"):
        train_run(config, resume=out, plots=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (RuntimeError("out of memory"), "failed", "RuntimeError: out of memory"),
        (KeyboardInterrupt(), "interrupted", "interrupted"),
    ],
)
def test_best_linear_run_ends_with_a_final_status(
    data, tmp_path, monkeypatch, error, status, reason
) -> None:
    train, test = data

    def fit_best_linear(train, config):
        raise error

    monkeypatch.setattr(best_linear_runs, "fit_best_linear", fit_best_linear)
    with pytest.raises(type(error)):
        best_linear_runs.best_linear_run(
            BestLinearConfig(), out=tmp_path / "r", train=train, test=test, plots=False
        )
    written = artifacts.read_status(tmp_path / "r")
    assert (written["status"], written["error"]) == (status, reason)
    assert _no_model(tmp_path / "r")
