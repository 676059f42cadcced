"""The command line answers help, version, usage and validation errors, and ``data where``,
without importing torch or matplotlib (structural: which modules a fresh process loaded, not
how long it took; the times are in BENCHMARKS.md)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import softmax_regression

HEAVY = ("torch", "matplotlib")

# Runs the real entry point (``python -m softmax_regression``) and, at exit, reports which
# top-level packages the process imported.
PROBE = """
import atexit, json, runpy, sys
atexit.register(lambda: sys.stderr.write(
    "\\nMODULES " + json.dumps(sorted({m.split(".")[0] for m in sys.modules})) + "\\n"))
sys.argv = ["softmax-regression", *sys.argv[1:]]
runpy.run_module("softmax_regression", run_name="__main__")
"""


def run_cli(*args: str, cwd: Path) -> tuple[int, str, str, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    err, _, modules = proc.stderr.rpartition("\nMODULES ")
    return proc.returncode, proc.stdout, err.strip(), set(json.loads(modules))


@pytest.fixture
def places(tmp_path: Path) -> Path:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "a-file").write_text("x")
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "model-less").mkdir()
    (tmp_path / "model-less" / "status.json").write_text('{"status": "failed"}')
    return tmp_path


# (argv, exit code, what stderr says); every one of these is known from the arguments alone.
# Exit codes: 2 usage and settings, 4 model or image files, 5 a run that cannot be resumed.
CASES = [
    (["--help"], 0, ""),
    (["--version"], 0, ""),
    (["train", "--help"], 0, ""),
    (["evaluate", "--help"], 0, ""),
    (["predict", "--help"], 0, ""),
    (["sweep", "--help"], 0, ""),
    (["numerics", "--help"], 0, ""),
    (["data", "--help"], 0, ""),
    (["data", "where", "--help"], 0, ""),
    (["bogus"], 2, "invalid choice: 'bogus'"),
    (["train", "--lr", "x"], 2, "argument --lr: invalid float value: 'x'"),
    (["train", "--lr", "-1"], 2, "error: lr must be positive, got -1.0"),
    (["train", "--epochs", "0"], 2, "error: epochs must be at least 1, got 0"),
    (["train", "--optimizer", "rmsprop"], 2, "optimizer must be one of sgd, adam"),
    (["train", "--device", "tpu"], 2, "device must be one of auto, cpu, cuda"),
    (["train", "--recipe", "fancy"], 2, "invalid choice: 'fancy'"),
    (["train", "--out", "taken"], 2, "taken already exists and is not empty; choose a new --out"),
    (["train", "--seeds", "0,1", "--out", "taken"], 2, "taken already exists and is not empty"),
    (["train", "--recipe", "best-linear", "--out", "taken"], 2, "taken already exists"),
    (["train", "--recipe", "best-linear", "--lr", "1"], 2, "--lr does not apply to --recipe"),
    (["train", "--seeds", "0,x"], 2, "--seeds must be a count (e.g. 5) or a comma-separated"),
    (["train", "--seeds", "0,1", "--seed", "2"], 2, "give either --seed or --seeds, not both"),
    (["train", "--resume", "nowhere"], 5, "nowhere: no such run directory"),
    (["train", "--resume", "not-a-run"], 5, "not-a-run: no config.json; not a run directory"),
    (["evaluate", "missing.safetensors"], 4, "missing.safetensors: no such file"),
    (["evaluate", "model-less"], 4, "model-less: no model.safetensors in this directory"),
    (["evaluate", "x", "--top", "-1"], 2, "--top must not be negative, got -1"),
    (["predict", "missing.safetensors", "a.png"], 4, "missing.safetensors: no such file"),
    (["predict", "x", "a.png", "--top", "0"], 2, "--top must be at least 1, got 0"),
    (["sweep", "--lr", "0.1,x"], 2, "--lr must be a comma-separated list of numbers"),
    (["sweep", "--epochs", "0"], 2, "epochs must be at least 1, got 0"),
    (["sweep", "--out", "taken/a-file"], 2, "--out taken/a-file exists and is not a directory"),
    (["numerics", "--scales", "big"], 2, "--scales must be a comma-separated list of numbers"),
]


@pytest.mark.parametrize(("argv", "code", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_answers_without_torch(places: Path, argv: list[str], code: int, message: str) -> None:
    rc, out, err, modules = run_cli(*argv, cwd=places)
    assert rc == code, (out, err)
    assert message in err
    if code:
        assert len(err.splitlines()) == 1 or err.startswith("usage:"), err  # one line, no traceback
        assert "Traceback" not in err
    else:
        assert out.strip()
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_predict_names_a_missing_image_without_torch(places: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"not read before the images are checked")
    rc, _, err, modules = run_cli("predict", str(model), "nowhere.png", cwd=places)
    assert (rc, err) == (4, "softmax-regression: error: nowhere.png: no such file")
    assert not modules & set(HEAVY)


def test_data_where_without_torch(places: Path) -> None:
    rc, out, err, modules = run_cli("data", "where", cwd=places)
    assert rc == 0, err
    assert out.startswith("Fashion-MNIST in ")
    assert len(out.splitlines()) == 5  # the directory, then the four files
    assert not modules & set(HEAVY)


def test_training_still_imports_what_it_needs(places: Path) -> None:
    """The probe sees torch when a command does need it: the check above can fail."""
    rc, _, err, modules = run_cli("evaluate", "model-less/status.json", cwd=places)
    assert rc == 4 and "status.json" in err
    assert "torch" in modules


def test_public_names_are_importable_and_listed() -> None:
    from softmax_regression import TrainConfig, fit, load_fashion_mnist, train_run

    assert callable(fit) and callable(load_fashion_mnist) and callable(train_run)
    assert TrainConfig().lr == 0.1
    for name in softmax_regression.__all__:
        assert getattr(softmax_regression, name) is not None
        assert name in dir(softmax_regression)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = softmax_regression.nope


@pytest.mark.parametrize("package", ["softmax_regression", "softmax_regression.data"])
def test_type_checkers_see_every_lazy_name(package: str) -> None:
    """The names imported under TYPE_CHECKING (what type checkers and editors read) are the
    lazily exported ones, and both are the package's ``__all__``."""
    module = sys.modules.get(package) or __import__(package, fromlist=["_"])
    tree = ast.parse(Path(module.__file__).read_text())
    seen: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                seen |= {a.name for a in imp.names}
    lazy = set(module._EXPORTS)
    assert seen == lazy
    eager = {n for n in module.__all__ if n in vars(module) and n not in lazy}
    assert lazy | eager == set(module.__all__)
