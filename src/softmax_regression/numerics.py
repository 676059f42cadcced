"""Why the stable softmax and cross-entropy exist, measured: the chapter's exp/log numerics.

Two questions, answered by computation in each floating-point type (nothing typed in):

* How far can ``exp`` go? The largest ``x`` with ``exp(x)`` finite and the smallest ``x`` with
  ``exp(x) > 0``, found by bisection over the values the dtype can represent.
* What happens to the book's naive softmax (``exp(o) / sum exp(o)``) and naive cross-entropy
  (``-log softmax(o)[y]``) as the logits grow, next to the stable ones (max subtracted,
  LogSumExp)? Errors are measured against a float64 evaluation of the stable formula on the
  same (already rounded) logits, so they show what the function loses, not the input rounding.

Everything returns numbers; :mod:`softmax_regression.cli.numerics` prints them and
:mod:`softmax_regression.runs.numerics` writes them, with the figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from . import functional as Fn
from .errors import ConfigError

DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DEFAULT_SCALES: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0, 1e3, 1e4, 1e6)
NUM_CLASSES = 10
# The label whose logit is the smallest: the confidently wrong prediction whose probability
# underflows to 0 in the naive softmax, so the naive loss becomes -log(0) = inf.
LABEL = 0
# The command that shows the same failure in a real training run (docs/experiments.md).
TRAINING_DEMO = "softmax-regression train --no-normalize --loss naive"


def dtype_named(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}") from None


def _in(dtype: torch.dtype, x: float) -> float:
    """x rounded to the nearest value ``dtype`` can hold."""
    return float(torch.tensor(x, dtype=torch.float64).to(dtype))


def _exp(dtype: torch.dtype, x: float) -> float:
    return float(torch.tensor(x, dtype=dtype).exp())


def _bisect(dtype: torch.dtype, good: float, bad: float, ok) -> float:
    """The last representable value from ``good`` towards ``bad`` for which ``ok`` holds.

    Stops when the rounded midpoint is one of the ends: then no representable value lies
    strictly between them (any such value would be nearer to the midpoint than both ends).
    """
    if not ok(good) or ok(bad):
        raise ArithmeticError(f"bisection needs ok({good}) and not ok({bad}) in {dtype}")
    while True:
        mid = _in(dtype, (good + bad) / 2)
        if mid in (good, bad):
            return good
        if ok(mid):
            good = mid
        else:
            bad = mid


@dataclass(frozen=True)
class ExpRange:
    """Where ``exp`` stops being useful in one dtype (as torch computes it on this machine)."""

    dtype: str
    max_x: float  # largest x with exp(x) finite
    exp_max_x: float  # exp(max_x): close to the dtype's largest finite value
    min_x: float  # smallest x with exp(x) > 0
    exp_min_x: float  # exp(min_x): the smallest positive (often subnormal) value it reaches
    finfo_max: float  # largest finite value of the dtype
    smallest_subnormal: float  # smallest positive value of the dtype


def exp_range(dtype: torch.dtype | str) -> ExpRange:
    """Find, by bisection over representable values, the finite/positive range of exp."""
    dt = dtype_named(dtype) if isinstance(dtype, str) else dtype
    info = torch.finfo(dt)
    # exp(0) = 1 is finite and positive; exp(finfo.max) overflows, exp(-finfo.max) is 0.
    max_x = _bisect(dt, 0.0, float(info.max), lambda x: math.isfinite(_exp(dt, x)))
    min_x = _bisect(dt, 0.0, -float(info.max), lambda x: _exp(dt, x) > 0)
    sub = float(info.smallest_normal) * float(info.eps)  # 2**(emin - mantissa bits)
    return ExpRange(
        dtype=_name(dt),
        max_x=max_x,
        exp_max_x=_exp(dt, max_x),
        min_x=min_x,
        exp_min_x=_exp(dt, min_x),
        finfo_max=float(info.max),
        smallest_subnormal=sub,
    )


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def example_logits(scale: float) -> torch.Tensor:
    """One row of 10 logits, ``scale * linspace(-1, 1, 10)`` in float64: class 9 the likeliest."""
    return scale * torch.linspace(-1.0, 1.0, NUM_CLASSES, dtype=torch.float64).unsqueeze(0)


@dataclass(frozen=True)
class Outcome:
    """One function's answer at one scale: its value, whether it is finite, its error."""

    value: float  # the loss, or for a softmax the largest probability (nan/inf kept)
    status: str  # "ok", or what went wrong: "nan", "inf", "-log(0) = inf"
    error: float  # relative error of a loss, max absolute error of probabilities; nan if not finite


@dataclass(frozen=True)
class ScaleRow:
    dtype: str
    scale: float
    logits_finite: bool  # False when the logits themselves overflow the dtype
    reference_loss: float  # float64 stable cross-entropy of the rounded logits
    naive_softmax: Outcome
    stable_softmax: Outcome
    naive_loss: Outcome
    stable_loss: Outcome


def _softmax_outcome(probs: torch.Tensor, ref: torch.Tensor) -> Outcome:
    p = probs.double()
    if torch.isnan(p).any():
        return Outcome(math.nan, "nan", math.nan)
    if torch.isinf(p).any():
        return Outcome(math.inf, "inf", math.nan)
    return Outcome(float(p.max()), "ok", float((p - ref).abs().max()))


def _loss_outcome(loss: torch.Tensor, ref: float, probs: torch.Tensor | None = None) -> Outcome:
    v = float(loss.double().reshape(()))
    if math.isnan(v):
        return Outcome(v, "nan", math.nan)
    if math.isinf(v):
        zero = probs is not None and float(probs.double()[0, LABEL]) == 0.0
        return Outcome(v, "-log(0) = inf" if zero else "inf", math.nan)
    return Outcome(v, "ok", abs(v - ref) / abs(ref))


def scale_row(dtype: torch.dtype | str, scale: float) -> ScaleRow:
    """Naive and stable softmax / cross-entropy of :func:`example_logits` in ``dtype``."""
    dt = dtype_named(dtype) if isinstance(dtype, str) else dtype
    logits = example_logits(scale).to(dt)
    labels = torch.tensor([LABEL])
    exact = logits.double()  # the rounded logits, so errors are the functions' own
    finite = bool(torch.isfinite(exact).all())
    ref_probs = Fn.softmax(exact, dim=1)
    ref_loss = float(Fn.cross_entropy(exact, labels, reduction="none")[0])
    naive_p = Fn.naive_softmax(logits)
    if not finite:  # nothing downstream can be right; say why instead of blaming the formulas
        lost = Outcome(math.nan, "logits overflow", math.nan)
        return ScaleRow(_name(dt), float(scale), False, ref_loss, lost, lost, lost, lost)
    return ScaleRow(
        dtype=_name(dt),
        scale=float(scale),
        logits_finite=finite,
        reference_loss=ref_loss,
        naive_softmax=_softmax_outcome(naive_p, ref_probs),
        stable_softmax=_softmax_outcome(Fn.softmax(logits, dim=1), ref_probs),
        naive_loss=_loss_outcome(Fn.naive_cross_entropy(naive_p, labels), ref_loss, naive_p),
        stable_loss=_loss_outcome(Fn.cross_entropy(logits, labels, reduction="none"), ref_loss),
    )


@dataclass(frozen=True)
class NumericsReport:
    exp_ranges: list[ExpRange]
    rows: list[ScaleRow]
    scales: list[float]
    logits: str = "scale * linspace(-1, 1, 10)"
    label: int = LABEL
    reference: str = "float64 stable formula on the same rounded logits"
    training_demo: str = TRAINING_DEMO
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def first_failure(self, dtype: str, which: str) -> float | None:
        """The smallest scale at which ``which`` (e.g. "naive_loss") is not finite in ``dtype``."""
        for row in self.rows:
            if row.dtype == dtype and getattr(row, which).status != "ok":
                return row.scale
        return None


def numerics_report(
    dtypes: Sequence[str] = tuple(DTYPES), scales: Sequence[float] = DEFAULT_SCALES
) -> NumericsReport:
    """The whole report: exp ranges per dtype and the naive/stable table per dtype and scale."""
    if not dtypes:
        raise ConfigError("numerics needs at least one dtype")
    if not scales:
        raise ConfigError("numerics needs at least one logit scale")
    for s in scales:
        if not (isinstance(s, int | float) and math.isfinite(s) and s > 0):
            raise ConfigError(f"logit scales must be positive finite numbers, got {s!r}")
    dts = [dtype_named(d) for d in dtypes]
    ranges = [exp_range(dt) for dt in dts]
    rows = [scale_row(dt, s) for dt in dts for s in sorted(scales)]
    notes = [
        "naive softmax = exp(o) / sum exp(o); it overflows once max(o) > max_x (inf / inf = nan)",
        "naive loss = -log(naive softmax[y]); it is -log(0) = inf once o[y] - max(o) < min_x",
        "stable loss = logsumexp(o) - o[y], with logsumexp = m + log sum exp(o - m), m = max(o)",
        "float16/bfloat16 losses are computed in float32 and returned in the input dtype",
    ]
    return NumericsReport(ranges, rows, [float(s) for s in sorted(scales)], notes=notes)
