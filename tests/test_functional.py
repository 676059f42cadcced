"""The from-scratch softmax / log-softmax / cross-entropy against torch.nn.functional (the
oracle): values and gradients, in every float dtype, for ordinary and huge logits."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from softmax_regression import functional as Fn
from softmax_regression.errors import ConfigError

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
# Unit roundoff of each dtype: the tolerances below are a few of these, relative.
EPS = {dtype: torch.finfo(dtype).eps for dtype in DTYPES}

FEW = settings(deadline=None, max_examples=25)


@st.composite
def logits_and_labels(draw, max_abs: float = 30.0):
    n = draw(st.integers(1, 6))
    c = draw(st.integers(2, 12))
    arr = draw(
        hnp.arrays(
            np.float64,
            (n, c),
            elements=st.floats(-max_abs, max_abs, allow_nan=False, allow_infinity=False),
        )
    )
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return torch.from_numpy(arr), torch.from_numpy(labels)


def close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    dtype: torch.dtype,
    ulps: float = 4,
    scale: float = 1.0,
):
    """Within ``ulps`` units of roundoff of ``dtype``, relative to max(scale, |expected|).

    ``scale`` is the size of the numbers the result is computed from, where that exceeds 1:
    a gradient near 0 made of upstream gradients of size 3 carries their rounding errors.
    """
    assert actual.dtype == expected.dtype == dtype
    a, e = actual.double(), expected.double()
    assert torch.isfinite(a).all(), actual
    tol = ulps * EPS[dtype] * e.abs().clamp(min=max(1.0, scale))
    assert ((a - e).abs() <= tol).all(), (actual, expected, (a - e).abs().max())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@FEW
@given(data=logits_and_labels())
def test_values_match_torch(dtype, data) -> None:
    logits, labels = data
    x = logits.to(dtype)
    close(Fn.softmax(x, dim=1), F.softmax(x, dim=1), dtype)
    close(Fn.log_softmax(x, dim=1), F.log_softmax(x, dim=1), dtype)
    close(Fn.logsumexp(x, dim=1), torch.logsumexp(x, dim=1), dtype)
    for reduction in ("none", "sum", "mean"):
        ours = Fn.cross_entropy(x, labels, reduction=reduction)
        ref = F.cross_entropy(x, labels, reduction=reduction)
        close(ours, ref, dtype, ulps=8 if reduction == "sum" else 4)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@FEW
@given(data=logits_and_labels(), seed=st.integers(0, 2**31 - 1))
def test_gradients_match_torch(dtype, data, seed) -> None:
    logits, labels = data
    upstream = torch.randn(logits.shape, generator=torch.Generator().manual_seed(seed))

    def grad(fn, *args):
        x = logits.to(dtype).requires_grad_(True)
        out = fn(x, *args)
        g = upstream.to(dtype) if out.shape == x.shape else torch.ones_like(out)
        (out * g).sum().backward()
        return x.grad

    # Both backward passes subtract a weighted sum of a row's upstream gradients from each of
    # them (s * (g - sum s g), g - s * sum g): their rounding errors scale with |g|, which
    # autograd through the written-out formula rounds more often than torch's fused kernel
    # (seen: 12 float32 ulps of a result near 0 at max |g| = 2.6).
    size = float(upstream.to(dtype).double().abs().max())
    close(grad(Fn.softmax, 1), grad(F.softmax, 1), dtype, ulps=8, scale=size)
    close(grad(Fn.log_softmax, 1), grad(F.log_softmax, 1), dtype, ulps=8, scale=size)
    for reduction in ("mean", "sum"):
        close(
            grad(lambda x, r=reduction: Fn.cross_entropy(x, labels, reduction=r)),
            grad(lambda x, r=reduction: F.cross_entropy(x, labels, reduction=r)),
            dtype,
            ulps=8,
        )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("scale", [1e4, 6e4, 1e30, 1e300])
@FEW
@given(data=logits_and_labels(max_abs=1.0))
def test_huge_logits_stay_finite_and_correct(dtype, scale, data) -> None:
    logits, labels = data
    # Capped so that differences of two logits (what the results are made of) stay finite.
    cap = torch.finfo(dtype).max / 4
    big = logits * scale
    if big.abs().max() > cap:
        big = big / big.abs().max() * cap
    x = big.to(dtype)
    close(Fn.softmax(x, dim=1), F.softmax(x, dim=1), dtype)
    close(Fn.log_softmax(x, dim=1), F.log_softmax(x, dim=1), dtype)
    close(Fn.cross_entropy(x, labels, "none"), F.cross_entropy(x, labels, reduction="none"), dtype)


def test_the_naive_versions_fail_where_the_chapter_says() -> None:
    ordinary = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(Fn.naive_softmax(ordinary), Fn.softmax(ordinary))
    # exp(100) overflows float32: inf / inf = nan. The stable softmax is exact here.
    big = torch.tensor([[100.0, 0.0, -100.0]])
    assert torch.isnan(Fn.naive_softmax(big)).any()
    assert Fn.softmax(big)[0, 0] == 1.0
    # A probability that underflows to 0 gives -log(0) = inf; LogSumExp gives the true 200.
    label = torch.tensor([2])
    assert Fn.naive_cross_entropy(Fn.softmax(big), label).isinf().all()
    torch.testing.assert_close(Fn.cross_entropy(big, label), torch.tensor(200.0))
    loss = Fn.NaiveCrossEntropyLoss(reduction="none")(big, label)
    assert not torch.isfinite(loss).any()


def test_loss_modules_match_nn_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 10, generator=g) * 5, torch.randint(0, 10, (64,), generator=g)
    for reduction in ("mean", "sum", "none"):
        reference = torch.nn.CrossEntropyLoss(reduction=reduction)(x, y)
        torch.testing.assert_close(Fn.CrossEntropyLoss(reduction)(x, y), reference)
        torch.testing.assert_close(
            Fn.NaiveCrossEntropyLoss(reduction)(x, y),
            torch.nn.CrossEntropyLoss(reduction=reduction)(x, y),
        )


def test_bad_reduction_is_a_one_line_config_error() -> None:
    x, y = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ConfigError, match="reduction must be one of"):
        Fn.cross_entropy(x, y, reduction="avg")
    with pytest.raises(ConfigError, match="reduction must be one of"):
        Fn.CrossEntropyLoss("avg")
