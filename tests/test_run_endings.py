"""Every way a run can end leaves ``status.json`` final, with the reason: an error in the middle
of an epoch, a nan loss, a failed save, a failed background write that only surfaces when the
writes are waited for, Ctrl-C. A run that did not complete keeps the history of its
checkpointed epochs and that checkpoint, has no model file, and resumes once the cause is gone.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from softmax_regression import cli, stopping
from softmax_regression import train as train_mod
from softmax_regression.best_linear import BestLinearConfig
from softmax_regression.config import TrainConfig
from softmax_regression.data import Dataset, load_fashion_mnist, sources
from softmax_regression.data.idx import write_idx
from softmax_regression.errors import ConfigError, NonFiniteLossError, ResumeError
from softmax_regression.report import collect
from softmax_regression.runs import artifacts, liveness
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

    def fit_best_linear(train, config, **kwargs):
        raise error

    monkeypatch.setattr(best_linear_runs, "fit_best_linear", fit_best_linear)
    with pytest.raises(type(error)):
        best_linear_runs.best_linear_run(
            BestLinearConfig(), out=tmp_path / "r", train=train, test=test, plots=False
        )
    written = artifacts.read_status(tmp_path / "r")
    assert (written["status"], written["error"]) == (status, reason)
    assert _no_model(tmp_path / "r")


# --------------------------------------------------------------------------- real processes
# A run is stopped where the test says (SOFTMAX_REGRESSION_TEST_PAUSE: the process writes a
# marker at the end of that epoch, its checkpoint on disk, and waits), then signalled.

ENV = {**os.environ, "PYTHONWARNINGS": "error"}
ENV.pop(stopping.PAUSE_ENV, None)
SMALL = ["--epochs", "4", "--no-plots", "--no-report", "--quiet"]


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    """A small feature set (3 classes, 20 features) with its own test split: a run of four
    epochs takes a moment, and the one line on stderr is the only one."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 700)
    x = (rng.normal(size=(3, 20))[y] * 0.7 + rng.normal(size=(700, 20))).astype(np.float32)
    path = tmp_path_factory.mktemp("features") / "small.npz"
    np.savez(path, x_train=x[:600], y_train=y[:600], x_test=x[600:], y_test=y[600:])
    return path


def _as_from_a_terminal() -> None:
    """In the child: SIGHUP as a terminal's shell leaves it (the default), whatever the test
    runner inherited. Under ``nohup`` it would stay ignored, as a run started that way should
    (:func:`test_a_sighup_that_nohup_ignores_stays_ignored`)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _start(argv: list[str], cwd: Path, pause: str | None = None) -> subprocess.Popen:
    env = dict(ENV)
    if pause is not None:
        env.update({stopping.PAUSE_ENV: pause, stopping.PAUSE_MARKER_ENV: str(cwd / "paused")})
    return subprocess.Popen(
        [sys.executable, "-m", "softmax_regression", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_from_a_terminal,
    )


def test_a_sighup_that_nohup_ignores_stays_ignored() -> None:
    """``nohup`` starts a run with SIGHUP ignored: installing the handlers keeps it so, while
    SIGTERM still stops the run."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stopping.install()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is stopping._handler
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        stopping.install()
        assert signal.getsignal(signal.SIGHUP) is stopping._handler
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _stop_at(argv: list[str], cwd: Path, pause: str, signum: int) -> tuple[int, str]:
    """Run the CLI until it pauses at ``pause``, send it ``signum``: (exit status, stderr)."""
    proc = _start(argv, cwd, pause)
    marker = cwd / "paused"
    deadline = time.monotonic() + 300
    while not marker.exists():  # waiting for the run to get there, not deciding anything
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"the run ended before its pause ({proc.returncode}): {err}")
        time.sleep(0.02)
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _run(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    proc = _start(argv, cwd)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def whole(features, tmp_path_factory) -> Path:
    """The uninterrupted run every stopped one must end up as."""
    cwd = tmp_path_factory.mktemp("whole")
    code, _, err = _run(["train", "--data", str(features), "--out", "run", *SMALL], cwd)
    assert code == 0, err
    return cwd / "run"


def _same_run(resumed: Path, whole: Path, rel: float = 0.0) -> None:
    """The same numbers and weights (``rel``: up to the float rounding of another number of
    ranks summing the gradient)."""
    got, want = _numbers(artifacts.read_history(resumed)), _numbers(artifacts.read_history(whole))
    if rel == 0:
        assert got == want
    else:
        assert [r[0] for r in got] == [r[0] for r in want]
        flat = [[v for r in h for v in r[1:4]] for h in (got, want)]
        assert flat[0] == pytest.approx(flat[1], rel=rel)
    a, b = artifacts.load_model(resumed).model, artifacts.load_model(whole).model
    for x, y in ((a.weight, b.weight), (a.bias, b.bias)):
        assert torch.equal(x, y) if rel == 0 else torch.allclose(x, y, rtol=rel, atol=rel)


@pytest.mark.parametrize(
    ("signum", "code", "word", "line"),
    [
        (signal.SIGTERM, 143, "terminated", "terminated by SIGTERM"),
        (signal.SIGHUP, 129, "terminated", "terminated by SIGHUP"),
        (signal.SIGINT, 130, "interrupted", "interrupted"),
        (signal.SIGKILL, -signal.SIGKILL, "died", None),
    ],
    ids=["TERM", "HUP", "INT", "KILL"],
)
def test_a_signal_leaves_a_true_status_and_a_run_that_resumes(
    features, whole, tmp_path, capsys, signum, code, word, line
) -> None:
    argv = ["train", "--data", str(features), "--out", "run", *SMALL]
    got, err = _stop_at(argv, tmp_path, "epoch:2", signum)
    run = tmp_path / "run"
    assert got == code
    assert "Traceback" not in err
    if line is None:  # SIGKILL: nothing could be said or written
        assert err == ""
        assert artifacts.read_status(run, as_written=True)["status"] == "running"
    else:
        hint = "; resume with `softmax-regression train --resume run`"
        assert err.splitlines() == [f"softmax-regression: {line}{hint}"]
    status = artifacts.read_status(run)
    assert status["status"] == word and status["epochs_completed"] == 2
    if word == "terminated":
        assert status["signal"] == signal.Signals(signum).name
    if word == "died":
        assert status["error"] == (
            f"its process ({status['pid']}) is gone; last completed epoch 2; "
            f"resume with `train --resume {run}`"
        )
    # The readers: the runs index, evaluate (no model), and the run's page.
    (row,) = collect.index_data(tmp_path)["rows"]
    assert row["status"] == word
    assert collect.run_data(run)["status"]["status"] == word
    assert cli.main(["evaluate", str(run)]) == 4
    assert f"(the run {word}" in capsys.readouterr().err

    got, out, err = _run(["train", "--resume", "run", "--quiet"], tmp_path)
    assert (got, err) == (0, "")
    assert artifacts.read_status(run)["status"] == "completed"
    _same_run(run, whole)
    # The run's own options kept: still no figures and no page.
    assert not (run / "curves.png").exists() and not (run / "report.html").exists()


def test_sigterm_to_the_launcher_of_two_ranks_ends_both_and_resumes(
    features, whole, tmp_path
) -> None:
    argv = ["train", "--nproc", "2", "--data", str(features), "--out", "run", *SMALL]
    got, err = _stop_at(argv, tmp_path, "epoch:2", signal.SIGTERM)
    assert got == 143
    hint = "; resume with `softmax-regression train --resume run`"
    assert err.splitlines() == [f"softmax-regression: terminated by SIGTERM{hint}"]
    status = artifacts.read_status(tmp_path / "run")
    assert (status["status"], status["signal"], status["epochs_completed"]) == (
        "terminated",
        "SIGTERM",
        2,
    )
    got, _, err = _run(["train", "--resume", "run", "--quiet"], tmp_path)
    assert (got, err) == (0, "")
    _same_run(tmp_path / "run", whole, rel=1e-5)  # resumed as one process


def test_sigterm_ends_seeds_and_a_sweep_in_one_line(features, tmp_path) -> None:
    """Commands with no single run to resume end the same way: the signal's exit status, one
    line, and every run directory they started left with a final status."""
    for argv, pause, status_dir in [
        (
            ["train", "--seeds", "2", "--data", str(features), "--out", "s", *SMALL],
            "epoch:2",
            "s/seed-0",
        ),
        (
            [
                "sweep",
                "--lr",
                "0.1",
                "--epochs",
                "3",
                "--seeds",
                "1",
                "--out",
                "sw",
                "--data",
                str(features),
            ],
            "epoch:2",
            None,
        ),
    ]:
        (tmp_path / "paused").unlink(missing_ok=True)
        got, err = _stop_at(argv, tmp_path, pause, signal.SIGTERM)
        assert got == 143, err
        assert len(err.splitlines()) == 1 and "terminated by SIGTERM" in err, err
        if status_dir is not None:
            assert artifacts.read_status(tmp_path / status_dir)["status"] == "terminated"


def test_a_signal_after_the_command_has_its_answer_is_no_traceback(tmp_path) -> None:
    """torchrun stops the ranks of a failed job with SIGTERM, which can reach a rank that has
    printed its one line and is shutting down: it leaves with its own status, quietly."""
    script = tmp_path / "late.py"
    script.write_text(
        "import os, signal, sys, threading, time\n"
        "from softmax_regression.cli import main\n"
        f"code = main(['evaluate', {str(tmp_path / 'none')!r}])\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(0.3)\n"
        "threading.Thread(target=late).start()  # the interpreter's exit waits for it\n"
        "sys.exit(code)\n",
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "error:" in done.stderr, done.stderr


# --------------------------------------------------------------------------- who writes a run


def _status(run: Path, **fields) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "status.json").write_text(json.dumps({"status": "running", **fields}))


def test_a_run_written_on_another_host_died_when_its_heartbeat_is_old(tmp_path, capsys) -> None:
    old = liveness.stamp(datetime.now().astimezone() - timedelta(minutes=10))
    _status(tmp_path / "old", pid=1, host="elsewhere.invalid", heartbeat=old, epochs_completed=7)
    fresh = liveness.stamp()
    _status(tmp_path / "fresh", pid=1, host="elsewhere.invalid", heartbeat=fresh)

    status = artifacts.read_status(tmp_path / "old")
    assert status["status"] == "died"
    assert status["error"] == (
        f"no heartbeat from elsewhere.invalid since {old}; last completed epoch 7; "
        f"resume with `train --resume {tmp_path / 'old'}`"
    )
    assert artifacts.read_status(tmp_path / "fresh")["status"] == "running"
    rows = {r["name"]: r["status"] for r in collect.index_data(tmp_path)["rows"]}
    assert rows == {"old": "died", "fresh": "running"}
    # A best-linear fit says where its kept solver state is instead of an epoch.
    solver = {"stage": 2, "iterations": 31}
    _status(tmp_path / "fit", pid=1, host="elsewhere.invalid", heartbeat=old, solver=solver)
    assert artifacts.read_status(tmp_path / "fit")["error"] == (
        f"no heartbeat from elsewhere.invalid since {old}; solver state kept at L-BFGS "
        f"iteration 31; resume with `train --resume {tmp_path / 'fit'}`"
    )
    shutil.rmtree(tmp_path / "fit")

    # A run whose writer is alive (there, or here: this very process) is not resumed.
    _status(tmp_path / "here", **liveness.identity(), heartbeat=fresh)
    for name, who in [("fresh", "pid 1 on elsewhere.invalid"), ("here", f"pid {os.getpid()}")]:
        assert cli.main(["train", "--resume", str(tmp_path / name)]) == 5
        err = capsys.readouterr().err
        assert err.startswith(f"softmax-regression: error: {tmp_path / name} is still running")
        assert who in err and len(err.splitlines()) == 1


def test_the_same_host_knows_a_reused_pid_from_its_process(tmp_path) -> None:
    me = liveness.identity()
    _status(tmp_path / "a", **{**me, "process_start": me["process_start"] - 1})
    assert artifacts.read_status(tmp_path / "a")["status"] == "died"
    _status(tmp_path / "b", **me)
    assert artifacts.read_status(tmp_path / "b")["status"] == "running"
    _status(tmp_path / "c")  # written before statuses said who wrote them: taken as it says
    assert artifacts.read_status(tmp_path / "c")["status"] == "running"


def test_the_heartbeat_beats_until_the_final_status(tmp_path) -> None:
    live = liveness.LiveStatus(tmp_path, every=0.01)
    live.start(started="then")
    first = artifacts.read_status(tmp_path, as_written=True)["heartbeat"]
    deadline = time.monotonic() + 60
    while artifacts.read_status(tmp_path, as_written=True)["heartbeat"] == first:
        assert time.monotonic() < deadline, "no heartbeat"
        time.sleep(0.01)
    live.end("completed", started="then")
    assert live._thread is not None and not live._thread.is_alive()  # nothing can beat now
    written = artifacts.read_status(tmp_path, as_written=True)
    assert written["status"] == "completed" and "heartbeat" not in written
    assert written["pid"] == os.getpid()


# --------------------------------------------------------------------------- full and read-only


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 120 KB tmpfs (root only: CI runs as root), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_a_report_over_read_only_runs_writes_its_file_and_nothing_else(
    whole, small_disk, tmp_path, capsys
) -> None:
    shutil.copytree(whole, small_disk / "a")
    (small_disk / "a" / "report.html").unlink(missing_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    before = _files(small_disk)

    out = tmp_path / "pages" / "index.html"
    assert cli.main(["report", str(small_disk), "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    assert _files(small_disk) == before
    page = out.parent / "index-pages" / "a" / "report.html"
    assert page.exists() and '"a-pages' not in out.read_text()
    assert "index-pages/a/report.html" in out.read_text()

    # Asked to write into them: one line naming the first page that could not be written.
    for argv in (["report", str(small_disk)], ["report", str(small_disk / "a")]):
        assert cli.main(argv) == 1
        assert capsys.readouterr().err == (
            f"softmax-regression: error: cannot write {small_disk / 'a' / 'report.html'}: "
            "Read-only file system\n"
        )
    assert _files(small_disk) == before


def test_a_full_disk_ends_a_run_in_one_line_and_its_readers_too(
    features, small_disk, tmp_path
) -> None:
    (small_disk / "filler").write_bytes(bytes(120 * 1024 - 8 * 4096))  # 32 KB left
    argv = ["train", "--data", str(features), "--out", str(small_disk / "run"), *SMALL]
    code, _, err = _run(argv, tmp_path)
    assert code == 1 and "Traceback" not in err
    assert err.startswith("softmax-regression: error: cannot write ")
    assert err.endswith(": No space left on device\n") and len(err.splitlines()) == 1
    assert artifacts.read_status(small_disk / "run")["status"] in ("failed", "died")

    code, _, err = _run(["report", str(small_disk)], tmp_path)
    assert code == 1 and err == (
        f"softmax-regression: error: cannot write {small_disk / 'run' / 'report.html'}: "
        "No space left on device\n"
    )
    assert not (small_disk / "run" / "report.html").exists()
    code, _, err = _run(["report", str(small_disk), "--out", "index.html"], tmp_path)
    assert (code, err) == (0, "") and (tmp_path / "index-pages" / "run" / "report.html").exists()


# --------------------------------------------------------------------------- long full-batch fits


def _feature_split(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(3, 12))[y] * 0.6 + rng.normal(size=(n, 12)) + 3.0
    return Dataset(
        torch.tensor(x, dtype=torch.float32),
        torch.tensor(y),
        classes=("a", "b", "c"),
        name="blobs",
    )


@pytest.mark.parametrize("stop_at", [2, 5, 10], ids=["select-1", "select-2", "refit"])
def test_a_best_linear_fit_stopped_anywhere_resumes_to_the_uninterrupted_answer(
    tmp_path, monkeypatch, stop_at
) -> None:
    """The solver's state is kept after every iteration here (``save_every=0``; a run keeps
    it every few minutes); stopped after the ``stop_at``-th kept state, in the weight-decay
    sweep or in the refit, the resumed fit ends on the uninterrupted objective."""
    train, test = _feature_split(500, 0), _feature_split(200, 1)
    config = BestLinearConfig(
        weight_decays=(4e-3, 1e-3), select_iters=5, refit_iters=8, val_split=100, dtype="float64"
    )
    whole = best_linear_runs.best_linear_run(
        config, out=tmp_path / "whole", train=train, test=test, plots=False
    )
    keep = best_linear_runs.save_fit_progress
    kept: list = []

    def stopped_after(directory, progress, cfg):
        keep(directory, progress, cfg)
        kept.append(progress.at_stage)
        if len(kept) == stop_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(best_linear_runs, "save_fit_progress", stopped_after)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        best_linear_runs.best_linear_run(
            config, out=run, train=train, test=test, plots=False, save_every=0
        )
    monkeypatch.undo()
    assert kept[-1] == {2: 0, 5: 1, 10: 2}[stop_at]  # the stage it stopped in (2: the refit)
    assert artifacts.read_status(run)["status"] == "interrupted" and _no_model(run)
    assert (run / best_linear_runs.SOLVER_STATE).exists()

    resumed = best_linear_runs.best_linear_run(
        config, resume=run, train=train, test=test, plots=False, save_every=0
    )
    assert resumed.model.objective == pytest.approx(whole.model.objective, rel=1e-9, abs=0)
    assert resumed.metrics["test_acc"] == whole.metrics["test_acc"]
    # Not merely the same minimum: the same steps, as if it had never stopped.
    assert resumed.model.evaluations == whole.model.evaluations
    assert torch.equal(resumed.model.weight, whole.model.weight)
    assert resumed.model.selection.candidates == whole.model.selection.candidates
    assert artifacts.read_status(run)["status"] == "completed"
    assert not (run / best_linear_runs.SOLVER_STATE).exists()  # nothing left to continue
    with pytest.raises(ResumeError, match="is a completed run"):
        best_linear_runs.best_linear_run(config, resume=run, train=train, test=test)


def test_sigterm_ends_a_best_linear_fit_and_resume_reaches_its_answer(features, tmp_path) -> None:
    argv = ["train", "--recipe", "best-linear", "--data", str(features), "--no-plots"]
    argv += ["--no-report", "--quiet"]
    code, _, err = _run([*argv, "--out", "whole"], tmp_path)
    assert (code, err) == (0, "")
    code, err = _stop_at([*argv, "--out", "run"], tmp_path, "lbfgs:30", signal.SIGTERM)
    assert code == 143
    hint = "; resume with `softmax-regression train --resume run`"
    assert err.splitlines() == [f"softmax-regression: terminated by SIGTERM{hint}"]
    status = artifacts.read_status(tmp_path / "run")
    assert (status["status"], status["signal"]) == ("terminated", "SIGTERM")
    assert (tmp_path / "run" / best_linear_runs.SOLVER_STATE).exists()

    code, _, err = _run(["train", "--resume", "run", "--quiet"], tmp_path)
    assert (code, err) == (0, "")
    whole, resumed = (
        json.loads((tmp_path / d / best_linear_runs.BEST_LINEAR_JSON).read_text())
        for d in ("whole", "run")
    )
    assert resumed["refit"]["objective"] == pytest.approx(whole["refit"]["objective"], rel=1e-9)
    assert resumed["test"] == whole["test"]
    assert not (tmp_path / "run" / "report.html").exists()  # its --no-report kept
