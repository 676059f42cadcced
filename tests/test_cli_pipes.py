"""The command line in a shell pipe whose reader stops early (``... | head -1``): the command
ends quietly, no traceback, with status 141 (128 + SIGPIPE), and a training run cut off that
way is left ``interrupted`` and resumable. Real processes, real data."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from softmax_regression.cli import EXIT_CLOSED_PIPE
from softmax_regression.config import TrainConfig
from softmax_regression.data import load_fashion_mnist
from softmax_regression.runs import artifacts, train_run

ENV = {**os.environ, "PYTHONWARNINGS": "error"}


def closed_at_once(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run the CLI with a stdout pipe whose reading end is closed before it writes anything:
    its first write fails, deterministically. Returns (exit status, stderr)."""
    with subprocess.Popen(
        [sys.executable, "-m", "softmax_regression", *argv],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        proc.stdout.close()
        err = proc.stderr.read()
        return proc.wait(timeout=300), err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    train = load_fashion_mnist("train").subset(range(2000))
    test = load_fashion_mnist("test").subset(range(100))
    out = tmp_path_factory.mktemp("pipes") / "run"
    train_run(TrainConfig(epochs=1), out=out, train=train, test=test, plots=False)
    return out


@pytest.mark.parametrize(
    "argv",
    [["data", "where"], ["evaluate", "{run}"], ["evaluate", "{run}", "--json"]],
    ids=["data-where", "evaluate", "evaluate-json"],
)
def test_a_closed_pipe_ends_a_command_quietly(model_dir, tmp_path, argv) -> None:
    code, err = closed_at_once([a.format(run=model_dir) for a in argv], tmp_path)
    assert (code, err) == (EXIT_CLOSED_PIPE, "")


def test_data_where_is_whole_for_a_reader_of_one_line(monkeypatch) -> None:
    """``data where | head -1`` ends with 0 whatever the timing (the docs run it under
    ``pipefail``): its lines leave in one write, so a reader that stops after the first line
    cannot close the pipe on a later one. Here every write after the first fails."""
    from softmax_regression import cli

    class OneWrite(io.StringIO):
        def write(self, text: str) -> int:
            if self.getvalue():
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    out = OneWrite()
    monkeypatch.setattr(sys, "stdout", out)
    assert cli.main(["data", "where"]) == 0
    assert out.getvalue().startswith("Fashion-MNIST in ") and out.getvalue().count("\n") >= 5


def test_a_closed_pipe_ends_a_sweep_quietly(tmp_path) -> None:
    argv = ["sweep", "--lr", "0.1", "--epochs", "1", "--seeds", "1", "--out", "sw"]
    code, err = closed_at_once(argv, tmp_path)
    assert (code, err) == (EXIT_CLOSED_PIPE, "")
    assert not (tmp_path / "sw" / "sweep.json").exists()  # stopped, nothing half-written


def test_train_piped_into_a_reader_that_stops_is_interrupted_and_resumable(tmp_path) -> None:
    """``train | head -1``: the reader takes the table's header and goes; the run stops at its
    next line (epoch 1's, unless the reader was slow), keeps the epochs it completed, is
    marked interrupted with the reason, and resumes."""
    argv = ["train", "--epochs", "500", "--out", "run", "--no-plots"]
    with subprocess.Popen(
        [sys.executable, "-m", "softmax_regression", *argv],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        header = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        code = proc.wait(timeout=300)
    assert header.split()[:2] == ["epoch", "train_loss"]
    assert (code, err) == (EXIT_CLOSED_PIPE, "")
    status = artifacts.read_status(tmp_path / "run")
    assert status["status"] == "interrupted"
    assert status["error"] == "output closed (broken pipe)"
    done = status["epochs_completed"]
    assert 1 <= done < 500 and len(artifacts.read_history(tmp_path / "run")) == done
    assert not (tmp_path / "run" / artifacts.MODEL_FILE).exists()

    again = argv[:2] + [str(done + 1), "--resume", "run", "--no-plots", "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-m", "softmax_regression", *again],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert artifacts.read_status(tmp_path / "run")["status"] == "completed"


def test_in_process_a_closed_pipe_returns_the_status(monkeypatch, capsys) -> None:
    from softmax_regression import cli

    def write_to_a_closed_pipe(args):
        raise BrokenPipeError(32, "Broken pipe")

    parser = cli.build_parser()
    args = parser.parse_args(["data", "where"])
    monkeypatch.setattr(args, "func", write_to_a_closed_pipe)
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(args))
    assert cli.main(["data", "where"]) == EXIT_CLOSED_PIPE
    assert capsys.readouterr() == ("", "")


class _Fixed:
    def __init__(self, args) -> None:
        self.args = args

    def parse_args(self, argv):
        return self.args
