"""The numerics report: exp's range per dtype, naive vs stable softmax / cross-entropy."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from PIL import Image

from softmax_regression import functional as Fn
from softmax_regression.cli import main
from softmax_regression.cli.numerics import format_outcome
from softmax_regression.numerics import (
    DTYPES,
    TRAINING_DEMO,
    example_logits,
    exp_range,
    numerics_report,
    scale_row,
)

_BITS = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
}


def _step(x: float, dtype: torch.dtype, up: bool) -> float:
    """The neighbouring representable value, from the bit pattern (independent of bisection)."""
    t = torch.tensor([x], dtype=dtype).view(_BITS[dtype])
    # Moving away from zero is +1 on the magnitude bits for both signs.
    away = (x > 0) == up
    t = t + (1 if away else -1)
    return float(t.view(dtype)[0])


def _exp(x: float, dtype: torch.dtype) -> float:
    return float(torch.tensor(x, dtype=dtype).exp())


@pytest.mark.parametrize("name", list(DTYPES))
def test_exp_range_is_the_exact_edge_of_each_dtype(name):
    dt = DTYPES[name]
    r = exp_range(name)
    assert math.isfinite(_exp(r.max_x, dt))
    assert math.isinf(_exp(_step(r.max_x, dt, up=True), dt))
    assert _exp(r.min_x, dt) > 0
    assert _exp(_step(r.min_x, dt, up=False), dt) == 0
    # Against the analytic edges: log(largest finite) and log(smallest subnormal), to within
    # one spacing of the dtype there (and ln 2 below, where exp rounds up to the subnormal).
    info = torch.finfo(dt)
    spacing = _step(r.max_x, dt, up=True) - r.max_x
    assert abs(r.max_x - math.log(float(info.max))) <= spacing
    sub = math.log(float(info.smallest_normal) * float(info.eps))
    low_spacing = r.min_x - _step(r.min_x, dt, up=False)
    assert sub - math.log(2) - low_spacing <= r.min_x <= sub + low_spacing
    assert r.exp_max_x <= r.finfo_max


def test_exp_ranges_are_ordered_by_dtype_width():
    r = {n: exp_range(n) for n in DTYPES}
    assert r["float16"].max_x < r["bfloat16"].max_x <= r["float32"].max_x < r["float64"].max_x
    assert r["float64"].min_x < r["float32"].min_x < r["bfloat16"].min_x < r["float16"].min_x
    assert round(r["float32"].max_x, 2) == 88.72 and round(r["float16"].max_x, 2) == 11.09


@pytest.mark.parametrize("name", list(DTYPES))
def test_naive_softmax_fails_exactly_where_exp_overflows(name):
    dt = DTYPES[name]
    r = exp_range(name)
    for scale in (1, 5, 10, 11, 12, 50, 88, 89, 100, 700, 710, 1000, 1e4):
        top = float(example_logits(scale).to(dt).max())
        if math.isinf(top):
            continue
        row = scale_row(name, scale)
        assert (row.naive_softmax.status == "nan") == (top > r.max_x), (name, scale)
        # The stable one never fails on representable logits.
        assert row.stable_softmax.status == "ok" and row.stable_loss.status == "ok"


def test_stable_loss_is_right_where_naive_is_minus_log_zero():
    row = scale_row("float32", 1e4)
    # logits 1e4 * linspace(-1, 1, 10); label 0: loss = logsumexp - o_0 = 2e4 + log(1 + tiny).
    assert row.stable_loss.value == pytest.approx(2e4, rel=1e-7)
    assert row.naive_loss.status == "-log(0) = inf" and math.isinf(row.naive_loss.value)
    assert row.naive_softmax.status == "nan"
    assert row.reference_loss == pytest.approx(2e4, rel=1e-12)


def test_small_scale_both_agree_with_torch():
    for name, dt in DTYPES.items():
        row = scale_row(name, 1.0)
        logits = example_logits(1.0).to(dt)
        expected = float(torch.nn.functional.cross_entropy(logits.double(), torch.tensor([0])))
        tol = 1e-12 if dt == torch.float64 else 1e-6 if dt == torch.float32 else 2e-3
        assert row.naive_loss.status == row.stable_loss.status == "ok"
        assert row.stable_loss.value == pytest.approx(expected, rel=tol)
        assert row.naive_loss.value == pytest.approx(expected, rel=tol)
        assert row.stable_loss.error <= tol


def test_logits_that_overflow_the_dtype_are_named():
    row = scale_row("float16", 1e6)
    assert not row.logits_finite
    assert row.stable_loss.status == row.naive_loss.status == "logits overflow"


def test_report_validates_input():
    from softmax_regression.errors import ConfigError

    with pytest.raises(ConfigError, match="dtype"):
        numerics_report(["float8"])
    with pytest.raises(ConfigError, match="positive finite"):
        numerics_report(scales=[1.0, -2.0])
    with pytest.raises(ConfigError, match="at least one"):
        numerics_report(scales=[])


def test_logsumexp_handles_infinite_rows_like_torch():
    inf = math.inf
    x = torch.tensor([[-inf, -inf], [0.0, -inf], [inf, 0.0], [1.0, 2.0]])
    assert torch.equal(Fn.logsumexp(x), torch.logsumexp(x, 1))
    # The guard only touches infinite maxima: gradients of ordinary rows are unchanged.
    y = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    (g1,) = torch.autograd.grad(Fn.logsumexp(y).sum(), y)
    (g2,) = torch.autograd.grad(torch.logsumexp(y, 1).sum(), y)
    assert torch.allclose(g1, g2, rtol=1e-12, atol=1e-14)


def test_cli_prints_and_saves_the_same_numbers(tmp_path, capsys):
    out = tmp_path / "num"
    assert main(["numerics", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    data = json.loads((out / "numerics.json").read_text())
    lines = text.splitlines()
    assert {r["dtype"] for r in data["exp_ranges"]} == set(DTYPES)
    for r in data["exp_ranges"]:
        line = next(ln for ln in lines if ln.startswith(f"{r['dtype']:<9} "))
        assert repr(r["max_x"]) in line and repr(r["min_x"]) in line
    assert len(data["rows"]) == len(DTYPES) * len(data["scales"])
    for row in data["rows"]:
        fields = [
            format_outcome(_Outcome(row[k]))
            for k in ("naive_softmax", "stable_softmax", "naive_loss", "stable_loss")
        ]
        prefix = f"{row['dtype']:<9} {row['scale']:>8g} "
        line = next(ln for ln in lines if ln.startswith(prefix))
        assert " ".join(line.split()).endswith(" ".join(" ".join(fields).split()))
    # The failures the table shows are real: float32's naive loss is inf at scale 100.
    f32 = {r["scale"]: r for r in data["rows"] if r["dtype"] == "float32"}
    assert f32[100.0]["naive_loss"]["status"] == "-log(0) = inf"
    assert f32[100.0]["naive_loss"]["value"] == "inf"
    assert f32[100.0]["stable_loss"]["status"] == "ok"
    assert TRAINING_DEMO in text
    with Image.open(out / "numerics.png") as img:
        assert img.format == "PNG" and img.size[0] > 800 and img.size[1] > 300


class _Outcome:
    def __init__(self, d: dict) -> None:
        self.status = d["status"]
        self.error = float(d["error"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dtypes", "float8"], "dtype must be one of"),
        (["--scales", "1,abc"], "--scales must be a comma-separated list"),
        (["--scales", "0"], "positive finite"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, argv, message):
    assert main(["numerics", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_cli_out_must_be_a_directory(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("")
    assert main(["numerics", "--out", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_training_demo_naive_loss_is_stopped_and_stable_loss_trains(tmp_path, capsys):
    """The report's training demonstration: raw 0-255 pixels with the naive loss."""
    naive = tmp_path / "naive"
    argv = ["train", "--no-normalize", "--device", "cpu", "--no-plots", "--quiet"]
    assert main([*argv, "--loss", "naive", "--out", str(naive)]) == 6
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    found = re.search(r"training loss became (nan|inf) at epoch 1, step (\d+) of 235", err)
    assert found and int(found.group(2)) <= 5  # within the first steps
    assert "un-normalised 0-255 inputs" in err and "naive loss" in err
    status = json.loads((naive / "status.json").read_text())
    assert status["status"] == "failed" and status["step"] == int(found.group(2))
    assert not (naive / "model.safetensors").exists()

    stable = tmp_path / "stable"
    assert main([*argv, "--loss", "stable", "--epochs", "2", "--out", str(stable)]) == 0
    history = json.loads((stable / "history.json").read_text())["epochs"]
    losses = [row["train_loss"] for row in history]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert losses[1] < losses[0]  # large (raw pixels) but finite, and it learns
    assert history[-1]["test_acc"] > 0.5
