"""``train`` and ``sweep`` under torchrun and ``--nproc``, as processes: what rank 0 writes and
prints, an elastic restart after a worker is killed, a hung rank, and the bad set-ups.

Loopback only, every job bounded in time and killed as a process group (see
``distributed_helpers.py``). They train the full dataset (the command line has no subset
option), for as few epochs as each test needs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from distributed_helpers import free_port, run, started, torchrun_args

from softmax_regression.config import TrainConfig
from softmax_regression.data import load_fashion_mnist
from softmax_regression.runs import artifacts
from softmax_regression.train import fit

CLI = ["-m", "softmax_regression"]
CPU = ["--device", "cpu"]  # the same numbers on a machine with a GPU too
JOB_TIMEOUT = 300


@pytest.fixture(scope="module")
def data():
    return load_fashion_mnist("train"), load_fashion_mnist("test")


def checkpoint_epoch(directory: Path) -> int:
    try:
        return artifacts.load_checkpoint(directory)[0].epoch
    except Exception:  # not written yet, or being replaced this instant
        return 0


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def history(directory: Path) -> list[dict]:
    return json.loads((directory / "history.json").read_text())["epochs"]


def assert_same_numbers(got: list[dict], reference) -> None:
    assert len(got) == len(reference.history)
    for row, want in zip(got, reference.history, strict=True):
        assert row["train_loss"] == pytest.approx(want.train_loss, rel=1e-6, abs=0)
        assert (row["train_acc"], row["test_acc"]) == (want.train_acc, want.test_acc)


def test_a_killed_worker_restarts_from_the_last_epoch_and_ends_at_the_same_run(
    data, tmp_path
) -> None:
    """kill -9 of rank 1 mid-run: torchrun restarts both ranks, which continue from the run
    directory's checkpoint; the end is the uninterrupted run's. Only rank 0 prints."""
    epochs = 6
    out = tmp_path / "run"
    args = torchrun_args(2, free_port(), max_restarts=1)
    args += [*CLI, "train", *CPU, "--epochs", str(epochs), "--no-plots", "--out", str(out)]
    with started(args) as job:
        wait_for(lambda: checkpoint_epoch(out) >= 2, JOB_TIMEOUT, "the second epoch")
        before = job.workers()
        assert sorted(before) == [0, 1]
        os.kill(before[1], signal.SIGKILL)
        restarted = lambda: job.workers().get(1, before[1]) != before[1]  # noqa: E731
        wait_for(restarted, 120, "torchrun to start rank 1 again")
        done = job.wait(JOB_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    reference = fit(TrainConfig(epochs=epochs, device="cpu"), *data)
    assert_same_numbers(history(out), reference)
    assert json.loads((out / "status.json").read_text())["status"] == "completed"
    # the first attempt's rank 0 said in a line why it ended, if it had the time: its peer
    # gone (it saw that first), or torchrun's SIGTERM (torchrun stopped it first, to restart
    # both); which comes first is a race
    errors = [x for x in done.stderr.splitlines() if x.startswith("softmax-regression:")]
    why = ("failed: another rank went away", "terminated by SIGTERM")
    assert all(any(w in x for w in why) for x in errors), done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    # rank 0's table twice (first attempt, then from the checkpoint on), one final line
    assert done.stdout.count("final (") == 1
    assert done.stdout.count("epoch  train_loss") == 2


def test_a_hung_rank_ends_the_job_with_a_timeout_message(tmp_path) -> None:
    out = tmp_path / "run"
    args = torchrun_args(2, free_port())
    args += [*CLI, "train", *CPU, "--epochs", "50", "--no-plots", "--out", str(out)]
    args += ["--dist-timeout", "3"]
    with started(args) as job:
        wait_for(lambda: checkpoint_epoch(out) >= 1, JOB_TIMEOUT, "the first epoch")
        workers = job.workers()
        os.kill(workers[1], signal.SIGSTOP)  # a hang: alive, never answering
        rank0 = Path(f"/proc/{workers[0]}/stat")
        wait_for(
            lambda: not rank0.exists() or rank0.read_text().split()[2] == "Z",
            60,
            "rank 0 to give up",
        )
        job.kill()
        _, err = job.proc.communicate(timeout=30)
    lines = [x for x in err.splitlines() if x.startswith("softmax-regression: error:")]
    assert len(lines) == 1, err[-3000:]
    assert "rank 0:" in lines[0] and "3 s collective timeout" in lines[0]
    assert "Traceback" not in err


def test_nproc_runs_the_command_as_ranks_and_bad_set_ups_are_one_line(tmp_path) -> None:
    base = [sys.executable, *CLI, "train", "--no-plots", "--epochs", "1"]
    # world size larger than the batch
    args = [*base, *CPU, "--nproc", "3", "--batch-size", "2", "--out", str(tmp_path / "a")]
    done = run(args, 240)
    assert done.returncode == 2
    errors = [x for x in done.stderr.splitlines() if "error" in x.lower()]
    assert errors == [
        "softmax-regression: error: world size 3 is larger than the batch size 2: every rank "
        "needs a share of each batch; start fewer ranks"
    ], done.stderr
    assert not (tmp_path / "a").exists()
    # --device cuda with fewer GPUs than local ranks (none here)
    done = run([*base, "--nproc", "2", "--device", "cuda", "--out", str(tmp_path / "b")], 240)
    assert done.returncode == 2
    assert "--device cuda needs one GPU per local rank: 2 ranks on this machine" in done.stderr
    assert "Traceback" not in done.stderr


def test_ranks_started_with_different_settings_are_refused(tmp_path) -> None:
    port, out = free_port(), tmp_path / "run"
    jobs = []
    for k, lr in ((0, "0.1"), (1, "0.2")):
        args = torchrun_args(1, port, nnodes=2, node_rank=k, backend="static")
        jobs.append(args + [*CLI, "train", "--lr", lr, "--no-plots", "--out", str(out)])
    with started(jobs[0]) as first, started(jobs[1]) as second:
        done = [first.wait(JOB_TIMEOUT), second.wait(JOB_TIMEOUT)]
    assert done[0].returncode != 0 and done[1].returncode != 0  # torchrun's own status: 1
    assert (
        "softmax-regression: error: the ranks disagree on lr: rank 0 has 0.1, rank 1 has 0.2"
        in done[0].stderr
    )
    assert "softmax-regression: error" not in done[1].stderr  # rank 0 reports it
    assert not out.exists()


def test_an_unreachable_rendezvous_is_one_line(tmp_path) -> None:
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    env["MASTER_PORT"] = str(free_port())
    args = [sys.executable, *CLI, "train", "--dist-timeout", "2", "--out", str(tmp_path / "r")]
    done = run(args, 120, extra_env=env)
    assert done.returncode == 7
    assert done.stderr.strip().splitlines() == [
        f"softmax-regression: error: rank 1: the rendezvous at 127.0.0.1:{env['MASTER_PORT']} "
        "did not answer within 2 s (Connection refused); is rank 0 running, and is the address "
        "reachable?"
    ]


def test_a_sweep_over_two_ranks_is_the_one_process_sweep(tmp_path) -> None:
    grid = ["--lr", "0.1,0.3", "--batch-size", "256", "--epochs", "1", "--seeds", "0,1,2", *CPU]
    one, two = tmp_path / "one", tmp_path / "two"
    args = [sys.executable, *CLI, "sweep", *grid]
    done = [run([*args, "--out", str(one)], JOB_TIMEOUT)]
    done.append(run([*args, "--out", str(two), "--nproc", "2"], JOB_TIMEOUT))
    assert [d.returncode for d in done] == [0, 0], done[1].stderr[-3000:]

    def without_time(obj):
        if isinstance(obj, dict):
            return {k: without_time(v) for k, v in obj.items() if "seconds" not in k}
        if isinstance(obj, list):
            return [without_time(v) for v in obj]
        return obj

    a, b = (json.loads((d / "sweep.json").read_text()) for d in (one, two))
    assert without_time(a) == without_time(b)  # bit for bit: every number as in one process
    assert done[1].stdout.count("train loss") == 1  # one table, from rank 0
    assert "6 training runs over 2 ranks" in done[1].stdout


def test_seeds_over_two_ranks_are_the_one_process_seeds(tmp_path) -> None:
    args = [sys.executable, *CLI, "train", *CPU, "--seeds", "0,1", "--epochs", "1", "--no-plots"]
    one, two = tmp_path / "one", tmp_path / "two"
    done = [run([*args, "--out", str(one)], JOB_TIMEOUT)]
    done.append(run([*args, "--out", str(two), "--nproc", "2"], JOB_TIMEOUT))
    assert [d.returncode for d in done] == [0, 0], done[1].stderr[-3000:]
    a, b = (json.loads((d / "seeds.json").read_text()) for d in (one, two))
    for row_a, row_b in zip(a["per_seed"], b["per_seed"], strict=True):
        row_a.pop("seconds"), row_b.pop("seconds")
        assert row_a == row_b  # each seed's run is the one-process run, bit for bit
    for seed in (0, 1):  # seed 1 was trained and written by rank 1
        assert (two / f"seed-{seed}" / "model.safetensors").exists()
    assert done[1].stdout.count("over 2 seeds") == 1


def test_a_one_process_run_resumes_on_two_ranks(data, tmp_path) -> None:
    out = tmp_path / "run"
    args = [sys.executable, *CLI, "train", *CPU, "--no-plots", "--quiet"]
    first = run([*args, "--epochs", "1", "--out", str(out)], JOB_TIMEOUT)
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = run(
        [sys.executable, *CLI, "train", "--nproc", "2", "--resume", str(out), "--epochs", "2"],
        JOB_TIMEOUT,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_numbers(history(out), fit(TrainConfig(epochs=2, device="cpu"), *data))
    assert json.loads((out / "status.json").read_text())["ranks"] == 2


def test_own_data_on_two_ranks_is_the_one_process_run(tmp_path) -> None:
    """``--data`` under ``--nproc 2``: every rank loads the same spec (here a seeded features
    file, standardised) and the run is the one-process run."""
    import numpy as np

    rng = np.random.default_rng(5)
    means = rng.normal(size=(4, 20)) * 2
    y = rng.integers(0, 4, 2400)
    x = (means[y] + rng.normal(size=(2400, 20)) * 3 + 10).astype(np.float32)
    np.savez(
        tmp_path / "d.npz", x_train=x[:2000], y_train=y[:2000], x_test=x[2000:], y_test=y[2000:]
    )
    args = [sys.executable, *CLI, "train", *CPU, "--data", str(tmp_path / "d.npz")]
    args += ["--standardize", "--epochs", "2", "--no-plots", "--no-report"]
    one, two = tmp_path / "one", tmp_path / "two"
    done = [run([*args, "--out", str(one)], JOB_TIMEOUT)]
    done.append(run([*args, "--out", str(two), "--nproc", "2"], JOB_TIMEOUT))
    assert [d.returncode for d in done] == [0, 0], done[1].stderr[-3000:]
    for row_a, row_b in zip(history(one), history(two), strict=True):
        assert row_b["train_loss"] == pytest.approx(row_a["train_loss"], rel=1e-6, abs=0)
        assert (row_b["train_acc"], row_b["test_acc"]) == (row_a["train_acc"], row_a["test_acc"])
    a, b = (artifacts.load_model(d) for d in (one, two))
    assert a.data == b.data and a.data["name"] == "d" and a.input_shape == (20,)
    assert json.loads((two / "status.json").read_text())["ranks"] == 2
