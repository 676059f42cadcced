"""``softmax-regression train | evaluate | predict``: in process through ``main(argv)`` on the
real dataset, every bad input as a one-line error, and one real subprocess run."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from softmax_regression.cli import main
from softmax_regression.data import load_fashion_mnist
from softmax_regression.progress import ConsoleProgress
from softmax_regression.runs import artifacts
from softmax_regression.train import EpochRecord


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("softmax-regression: error: "), err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A two-epoch run made through the CLI, shared by the evaluate/predict tests."""
    out = tmp_path_factory.mktemp("cli") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def test_images(tmp_path_factory) -> list[Path]:
    """The first five test images as PNG files, and their labels' order."""
    d = tmp_path_factory.mktemp("images")
    test = load_fashion_mnist("test")
    paths = []
    for i in range(5):
        p = d / f"test{i}.png"
        Image.fromarray(test.images[i].numpy()).save(p)
        paths.append(p)
    return paths


# --------------------------------------------------------------------------- train


def test_train_prints_the_table_the_summary_and_the_files(tmp_path, capsys) -> None:
    out = tmp_path / "r"
    rc, text, err = run(capsys, "train", "--epochs", "2", "--out", str(out), "--seed", "3")
    assert rc == 0 and err == ""
    lines = text.splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "train_acc", "test_acc", "seconds"]
    history = artifacts.read_history(out)
    for line, rec in zip(lines[1:3], history, strict=True):
        cells = line.split()
        assert int(cells[0]) == rec.epoch
        assert float(cells[1]) == pytest.approx(rec.train_loss, abs=5e-5)
        assert float(cells[3]) == pytest.approx(rec.test_acc, abs=5e-5)
    assert lines[3].startswith("final (2 epochs, ")
    assert f"test acc {history.last.test_acc:.4f}" in lines[3]
    assert lines[4].startswith(f"run saved in {out}/: checkpoint.safetensors, config.json")
    assert "\r" not in text  # not a terminal: plain lines, no bar
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 3


def test_quiet_prints_only_the_summary_and_val_split_adds_a_column(tmp_path, capsys) -> None:
    rc, text, _ = run(
        capsys, "train", "--epochs", "1", "--out", str(tmp_path / "q"), "-q", "--no-plots"
    )
    assert rc == 0 and len(text.splitlines()) == 2 and text.startswith("final (1 epochs")
    assert not (tmp_path / "q" / "curves.png").exists()
    rc, text, _ = run(
        capsys, "train", "--epochs", "1", "--val-split", "5000", "--out", str(tmp_path / "v")
    )
    assert rc == 0 and text.splitlines()[0].split()[-2] == "val_acc"
    assert "val acc" in text.splitlines()[2]


def test_default_run_names_go_under_runs_dir(tmp_path, capsys) -> None:
    rc, text, _ = run(
        capsys, "train", "--epochs", "1", "-q", "--no-plots", "--runs-dir", str(tmp_path)
    )
    assert rc == 0
    (made,) = tmp_path.iterdir()
    assert made.name[:8].isdigit() and made.name[8] == "-"
    assert f"run saved in {made}/" in text


def test_resume_continues_through_the_cli(tmp_path, capsys) -> None:
    out = tmp_path / "r"
    assert run(capsys, "train", "--epochs", "1", "--out", str(out), "-q", "--no-plots")[0] == 0
    rc, text, _ = run(capsys, "train", "--resume", str(out), "--epochs", "2", "--no-plots")
    assert rc == 0
    assert [line.split()[0] for line in text.splitlines()[1:2]] == ["2"]  # only epoch 2 runs
    assert len(artifacts.read_history(out)) == 2


def test_a_terminal_gets_a_progress_bar() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    p = ConsoleProgress(["epoch", "train_loss", "seconds"], stream)
    p.epoch_start(1, 1, 100)
    p.advance(50)
    p.advance(50)
    p.epoch_end(EpochRecord(1, 0.5, 0.8, 0.79, None, 0.1))
    text = stream.getvalue()
    assert "\repoch 1/1:   0%|" in text
    assert text.rstrip().endswith("1      0.5000     0.10")


# --------------------------------------------------------------------------- evaluate / predict


def test_evaluate_prints_the_report_and_json(trained, capsys) -> None:
    rc, text, _ = run(capsys, "evaluate", str(trained))
    assert rc == 0
    final = artifacts.read_history(trained).last
    assert f"test accuracy {final.test_acc:.4f} ({round(final.test_acc * 10000)}/10000)" in text
    assert "precision  recall     f1  support" in text and "ankle boot" in text
    assert "most confused (true -> predicted: count)" in text
    rc, text, _ = run(
        capsys, "evaluate", str(trained / "model.safetensors"), "--json", "--top", "3"
    )
    data = json.loads(text)
    assert data["accuracy"] == final.test_acc and data["total"] == 10000
    assert len(data["per_class"]) == 10 and len(data["most_confused"]) == 3
    counts = [p["count"] for p in data["most_confused"]]
    assert counts == sorted(counts, reverse=True)
    assert sum(map(sum, data["confusion"])) == 10000
    rc, text, _ = run(capsys, "evaluate", str(trained), "--split", "train", "--json")
    assert json.loads(text)["total"] == 60000


def test_predict_prints_top_classes(trained, test_images, capsys) -> None:
    rc, text, _ = run(capsys, "predict", str(trained), *map(str, test_images))
    assert rc == 0
    lines = text.splitlines()
    assert len(lines) == 5 and lines[0].startswith(f"{test_images[0]}: ")
    assert len(lines[0].split(", ")) == 3
    rc, text, _ = run(capsys, "predict", str(trained), str(test_images[0]), "--json", "--top", "10")
    (pred,) = json.loads(text)["predictions"]
    probs = [t["probability"] for t in pred["top"]]
    assert len(probs) == 10 and probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    # The first test image is an ankle boot, which even two epochs get right.
    assert pred["top"][0]["class"] == "ankle boot"


def test_predict_answers_every_readable_file_and_names_each_bad_one(
    trained, test_images, tmp_path, capsys
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    missing = tmp_path / "missing.png"
    a, c = map(str, test_images[:2])
    argv = ["predict", str(trained), a, str(broken), c, str(missing)]
    rc, text, err = run(capsys, *argv)
    assert rc == 4
    lines = text.splitlines()
    assert [line.split(": ")[0] for line in lines] == [a, c]
    assert lines == [line for line in run(capsys, "predict", str(trained), a, c)[1].splitlines()]
    errors = err.splitlines()
    assert len(errors) == 2 and "Traceback" not in err
    assert errors[0].startswith(f"softmax-regression: error: {broken}: ")
    assert errors[1] == f"softmax-regression: error: {missing}: no such file"

    rc, text, err = run(capsys, *argv, "--json", "--top", "2")
    assert rc == 4 and len(err.splitlines()) == 2
    entries = json.loads(text)["predictions"]
    assert [e["image"] for e in entries] == [a, str(broken), c, str(missing)]
    assert [sorted(e) for e in entries] == [["image", "top"], ["error", "image"]] * 2
    assert entries[3]["error"] == f"{missing}: no such file"
    assert len(entries[0]["top"]) == 2 and entries[0]["top"][0]["class"] == "ankle boot"


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("argv", "message", "code"),
    [
        (["--lr", "-1"], "lr must be positive, got -1.0", 2),
        (["--lr", "0"], "lr must be positive", 2),
        (["--batch-size", "0"], "batch size must be at least 1, got 0", 2),
        (["--epochs", "0"], "epochs must be at least 1, got 0", 2),
        (["--optimizer", "lbfgs"], "optimizer must be one of sgd, adam, got 'lbfgs'", 2),
        (["--device", "tpu"], "device must be one of auto, cpu, cuda, got 'tpu'", 2),
        (["--loss", "hinge"], "loss must be one of torch, stable, naive", 2),
        (["--momentum", "1.5"], "momentum must be in [0, 1)", 2),
        (["--val-split", "60000"], "val split 60000 leaves no training images", 2),
        (["--data-dir", "/nonexistent/fmnist"], "/nonexistent/fmnist", 3),
        (["--loss", "naive", "--no-normalize"], "training loss became", 6),
        (["--resume", "/nonexistent/run"], "no such run directory", 5),
    ],
)
def test_bad_train_inputs(tmp_path, capsys, argv, message, code) -> None:
    out = tmp_path / "r"
    extra = [] if "--resume" in argv else ["--out", str(out)]
    rc, _, err = run(capsys, "train", "--no-plots", "-q", *extra, *argv)
    assert rc == code
    assert message in one_line_error(err)
    assert not (out / "model.safetensors").exists()


def test_cuda_without_a_gpu(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, _, err = run(capsys, "train", "--device", "cuda", "--out", str(tmp_path / "r"))
    assert rc == 2
    assert "--device cuda was asked for but no CUDA GPU is available" in one_line_error(err)
    assert not (tmp_path / "r").exists()


def test_argparse_errors_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--lr", "fast"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == "softmax-regression train: error: argument --lr: invalid float value: 'fast'\n"


def test_resume_mistakes(trained, tmp_path, capsys) -> None:
    rc, _, err = run(capsys, "train", "--resume", str(trained), "--lr", "0.5")
    assert rc == 5 and "was trained with lr=0.1, not 0.5" in one_line_error(err)
    rc, _, err = run(capsys, "train", "--resume", str(trained), "--out", str(tmp_path / "x"))
    assert rc == 2 and "--resume continues a run in place; drop --out" in one_line_error(err)
    rc, _, err = run(capsys, "train", "--resume", str(trained))
    assert rc == 5 and "already has 2 epochs" in one_line_error(err)
    rc, _, err = run(capsys, "train", "--out", str(trained))
    assert rc == 2 and "already exists and is not empty" in one_line_error(err)


def test_bad_models_and_images(trained, tmp_path, capsys) -> None:
    rc, _, err = run(capsys, "evaluate", str(tmp_path / "none.safetensors"))
    assert rc == 4 and "none.safetensors: no such file" in one_line_error(err)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(64))
    rc, _, err = run(capsys, "predict", str(junk), str(junk))
    assert rc == 4 and "not a valid safetensors file" in one_line_error(err)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    rc, _, err = run(capsys, "predict", str(trained), str(text))
    assert rc == 4 and "notes.png: not an image file PIL can read" in one_line_error(err)
    rc, _, err = run(capsys, "predict", str(trained), str(tmp_path / "missing.jpg"))
    assert rc == 4 and "missing.jpg: no such file" in one_line_error(err)
    rc, _, err = run(capsys, "predict", str(trained), str(text), "--top", "0")
    assert rc == 2 and "--top must be at least 1" in one_line_error(err)


# --------------------------------------------------------------------------- a real process


def test_train_as_a_real_process(tmp_path, test_images) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    proc = subprocess.run(
        [sys.executable, "-m", "softmax_regression", "train", "--epochs", "2", "--runs-dir", "r"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert len(lines) == 5 and "\r" not in proc.stdout
    (run_dir,) = (tmp_path / "r").iterdir()
    assert (run_dir / "model.safetensors").exists() and (run_dir / "curves.png").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "softmax_regression", "predict", str(run_dir), str(test_images[0])],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.startswith(str(test_images[0]))
