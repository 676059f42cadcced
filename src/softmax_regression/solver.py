"""The solvers over the one full-batch objective (:mod:`softmax_regression.linear_loss`).

Every full-batch fit in the package goes through here: the best-linear recipe
(:mod:`softmax_regression.best_linear`, and so ``train --recipe best-linear``) and the
scikit-learn estimators (:mod:`softmax_regression.sklearn`). The book's SGD recipe keeps its
own exact loop. The split follows scikit-learn's: :mod:`~softmax_regression.linear_loss` is the
objective (loss, gradient, input statistics; scikit-learn's ``_linear_loss.py``), this module
the solvers over it (its lbfgs call and ``_newton_solver.py``): :func:`lbfgs` and
:func:`minimize`, preconditioned L-BFGS for the smooth objective; :func:`newton`, Newton's
method with conjugate gradient for independent binary problems (liblinear's L2 model);
:func:`owlqn` and
:func:`minimize_l1`, OWL-QN for the objective plus an L1 term (and liblinear's penalised
intercept).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.optim.lbfgs import _strong_wolfe

from .linear_loss import DenseRows, SoftmaxLoss, StreamedRows


@dataclass
class Solution:
    """A fitted linear layer and what the fit cost."""

    weight: torch.Tensor  # (K, D), or (1, D) for a binary problem
    bias: torch.Tensor  # (K,) or (1,)
    objective: float  # the objective at (weight, bias)
    evaluations: int  # loss + gradient evaluations, each one pass over the data
    seconds: float
    iterations: int = 0  # L-BFGS iterations (what scikit-learn's ``n_iter_`` counts)
    converged: bool = False  # stopped by ``tol`` (not by max_iter or a stalled line search)


# --------------------------------------------------------------------------- L-BFGS


@dataclass
class LbfgsResult:
    x: torch.Tensor
    loss: float
    iterations: int
    evaluations: int
    converged: bool  # ended by ``tolerance_grad`` or ``converged``


@dataclass
class LbfgsState:
    """Where :func:`lbfgs` stands between two iterations: everything the next one reads, so
    that a fit continued from it takes the steps the uninterrupted fit takes. ``t`` and
    ``h_diag`` are kept as they were (a float, or a 0-dim tensor)."""

    x: torch.Tensor
    loss: float
    flat_grad: torch.Tensor
    prev_flat_grad: torch.Tensor
    d: torch.Tensor
    t: float | torch.Tensor
    h_diag: float | torch.Tensor
    old_dirs: list[torch.Tensor]
    old_stps: list[torch.Tensor]
    ro: list[torch.Tensor]
    iterations: int
    evaluations: int
    # What the caller's stopping test keeps from one iteration to the next (:func:`minimize`'s
    # run of iterates that passed ``tol``), so that a continued fit stops where the
    # uninterrupted one stops.
    counters: dict[str, int] = field(default_factory=dict)


@dataclass
class OwlqnState:
    """Where :func:`owlqn` stands between two iterations: the iterate ``x``, the smooth part's
    value and gradient ``g`` there, the whole objective's ``value``, the curvature pairs and
    each block's scale ``gamma``; ``counters`` as :class:`LbfgsState`'s."""

    x: torch.Tensor
    g: torch.Tensor
    value: float
    steps: list[torch.Tensor]
    changes: list[torch.Tensor]
    rho: list[torch.Tensor]
    gamma: torch.Tensor
    iterations: int
    evaluations: int
    counters: dict[str, int] = field(default_factory=dict)


class Counted:
    """A solver's ``checkpoint`` that also keeps a stopping test's counters: each snapshot it
    passes on to ``outer`` carries ``read()`` in its ``counters`` (merged with what is there),
    and :attr:`resumed` is what ``outer``'s state had, for the test to start from."""

    def __init__(self, outer: Any, read: Callable[[], dict[str, int]]) -> None:
        self.outer, self.read = outer, read
        state = getattr(outer, "state", None)
        self.resumed: dict[str, int] = dict(state.counters) if state is not None else {}

    @property
    def state(self) -> Any:
        return getattr(self.outer, "state", None)

    def offer(self, iteration: int, snapshot: Callable[[], Any]) -> None:
        def counted() -> Any:
            state = snapshot()
            state.counters = {**state.counters, **self.read()}
            return state

        self.outer.offer(iteration, counted)


def lbfgs(
    fun: Callable[[torch.Tensor], tuple[float, torch.Tensor]],
    x: torch.Tensor,
    *,
    max_iter: int,
    segments: Sequence[int] | None = None,
    max_eval: int | None = None,
    history_size: int = 100,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    converged: Callable[[torch.Tensor], bool] | None = None,
    callback: Callable[[int, float], None] | None = None,
    checkpoint: Any = None,
) -> LbfgsResult:
    """L-BFGS with a strong Wolfe line search on a flat parameter vector ``x`` (updated in
    place), ``fun(x) -> (loss, flat gradient)``.

    The same arithmetic as ``torch.optim.LBFGS(lr=1, line_search_fn="strong_wolfe")``, step
    for step, so a fit that used it gives the same bits: ``segments`` are the lengths of the
    parameters it would have held (a step is added to each on its own, as torch does). Two
    additions: ``converged(gradient)`` is a further stopping test, asked wherever torch asks
    ``max |gradient| <= tolerance_grad`` (scikit-learn's ``tol``, measured in the caller's
    coordinates), and ``callback(iteration, loss)`` after each iteration.

    ``checkpoint`` makes a long fit resumable: its ``state`` (an :class:`LbfgsState`, or None)
    is where to go on from instead of ``x``, and ``checkpoint.offer(iteration, snapshot)`` is
    called after each iteration that the fit goes on from; ``snapshot()`` returns that
    iteration's :class:`LbfgsState` (a copy), for the caller to keep when it chooses.
    """
    if max_eval is None:
        max_eval = max_iter * 5 // 4
    segments = list(segments) if segments is not None else [x.numel()]

    def add(t, d) -> None:
        offset = 0
        for size in segments:
            x[offset : offset + size].add_(d[offset : offset + size], alpha=t)
            offset += size

    def done(g: torch.Tensor) -> bool:
        return bool(g.abs().max() <= tolerance_grad) or (converged is not None and converged(g))

    def obj_func(x_init, t, d):
        add(t, d)
        loss, g = fun(x)
        x.copy_(x_init)
        return float(loss), g

    resumed = getattr(checkpoint, "state", None)
    if resumed is None:
        loss, flat_grad = fun(x)
        loss = float(loss)
        current_evals = 1
        if done(flat_grad):
            return LbfgsResult(x, loss, 0, current_evals, True)
        d = t = prev_flat_grad = None
        old_dirs: list[torch.Tensor] = []
        old_stps: list[torch.Tensor] = []
        ro: list = []
        h_diag = 1
        n_iter = 0
    else:
        x.copy_(resumed.x)
        loss, current_evals, n_iter = resumed.loss, resumed.evaluations, resumed.iterations
        flat_grad, prev_flat_grad = resumed.flat_grad.clone(), resumed.prev_flat_grad.clone()
        d, t, h_diag = resumed.d, resumed.t, resumed.h_diag
        old_dirs, old_stps, ro = list(resumed.old_dirs), list(resumed.old_stps), list(resumed.ro)
    al: list = [None] * history_size
    opt_cond = False

    def snapshot() -> LbfgsState:
        return LbfgsState(
            x.clone(),
            loss,
            flat_grad.clone(),
            prev_flat_grad.clone(),
            d.clone(),
            t,
            h_diag,
            list(old_dirs),
            list(old_stps),
            list(ro),
            n_iter,
            current_evals,
        )

    while n_iter < max_iter:
        n_iter += 1
        if n_iter == 1:
            d = flat_grad.neg()
        else:
            y = flat_grad.sub(prev_flat_grad)
            s = d.mul(t)
            ys = y.dot(s)
            if ys > 1e-10:
                if len(old_dirs) == history_size:
                    old_dirs.pop(0)
                    old_stps.pop(0)
                    ro.pop(0)
                old_dirs.append(y)
                old_stps.append(s)
                ro.append(1.0 / ys)
                h_diag = ys / y.dot(y)
            q = flat_grad.neg()
            for i in range(len(old_dirs) - 1, -1, -1):
                al[i] = old_stps[i].dot(q) * ro[i]
                q.add_(old_dirs[i], alpha=-al[i])
            d = r = torch.mul(q, h_diag)
            for i in range(len(old_dirs)):
                be_i = old_dirs[i].dot(r) * ro[i]
                r.add_(old_stps[i], alpha=al[i] - be_i)
        if prev_flat_grad is None:
            prev_flat_grad = flat_grad.clone(memory_format=torch.contiguous_format)
        else:
            prev_flat_grad.copy_(flat_grad)
        prev_loss = loss
        t = min(1.0, 1.0 / flat_grad.abs().sum()) if n_iter == 1 else 1
        gtd = flat_grad.dot(d)
        if gtd > -tolerance_change:
            break
        x_init = x.clone(memory_format=torch.contiguous_format)
        loss, flat_grad, t, ls_evals = _strong_wolfe(
            obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals
        )
        add(t, d)
        opt_cond = done(flat_grad)
        current_evals += ls_evals
        if callback is not None:
            callback(n_iter, loss)
        if n_iter == max_iter or current_evals >= max_eval or opt_cond:
            break
        if d.mul(t).abs().max() <= tolerance_change:
            break
        if abs(loss - prev_loss) < tolerance_change:
            break
        if checkpoint is not None:
            checkpoint.offer(n_iter, snapshot)
    return LbfgsResult(x, loss, n_iter, current_evals, opt_cond)


# --------------------------------------------------------------------------- preconditioning


class Preconditioner:
    """``W = V P`` with ``P = (alpha S + weight_decay R + floor)^(-1/2)``, ``S`` the inputs'
    covariance and ``R`` the penalty's matrix (identity when None): the same objective and
    the same minimum, a far better conditioned problem for L-BFGS. ``alpha`` stands for the
    loss's curvature per unit input variance (between 0 and the softmax's bound 1/2).

    ``cov`` may be the covariance's diagonal alone (a ``(D,)`` vector: sparse rows, where a
    ``D x D`` matrix is out of the question): ``P`` is then diagonal too (Jacobi scaling),
    and ``p``/``p_inv`` are vectors, applied elementwise."""

    def __init__(
        self,
        cov: torch.Tensor,
        weight_decay: float,
        alpha: float = 1.0,
        penalty: torch.Tensor | None = None,
    ) -> None:
        if cov.ndim == 1:
            if penalty is not None:
                raise ValueError("a diagonal preconditioner takes no penalty matrix")
            self.p, self.p_inv = _inverse_sqrt(alpha * cov + weight_decay)
            return
        m = alpha * cov
        m = m + weight_decay * (penalty.double() if penalty is not None else torch.eye(len(m)))
        eigenvalues, q = torch.linalg.eigh(m)
        rsqrt, sqrt = _inverse_sqrt(eigenvalues)
        self.p = (q * rsqrt) @ q.T
        self.p_inv = (q * sqrt) @ q.T


def _inverse_sqrt(eigenvalues: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(e^-1/2, e^1/2)`` of curvatures ``e``. Directions without curvature (constant
    inputs, no penalty) are kept at the scale of the flattest real one, not divided by
    zero."""
    top = float(eigenvalues.max().clamp_min(1e-300))
    eigenvalues = eigenvalues.clamp_min(top * 1e-10)
    return eigenvalues.rsqrt(), eigenvalues.sqrt()


def _times(v: torch.Tensor, p: torch.Tensor | None) -> torch.Tensor:
    """``v @ P`` for a symmetric ``P`` given whole or as its diagonal."""
    if p is None:
        return v
    return v * p if p.ndim == 1 else v @ p


def minimize(
    loss: SoftmaxLoss,
    init: tuple[torch.Tensor, torch.Tensor],
    max_iter: int,
    *,
    tol: float | None = None,
    preconditioner: tuple[torch.Tensor, torch.Tensor] | None = None,
    history_size: int = 20,
    tolerance_grad: float = 1e-9,
    tolerance_change: float = 1e-12,
    tol_repeats: int = 1,
    on_nonfinite: Callable[[float, int], BaseException] | None = None,
    callback: Callable[[int, float], None] | None = None,
    checkpoint: Any = None,  # passed to lbfgs: a fit that can be continued (its docstring)
    on_iterate: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    max_eval: int | None = None,
) -> Solution:
    """Minimise ``loss`` over (W, b) from ``init`` with :func:`lbfgs`, on ``W = V P`` when a
    ``preconditioner`` ``(P, P^-1)`` is given.

    Stops after ``max_iter`` iterations, when the largest gradient component in (W, b) is at
    most ``tol`` (scikit-learn's lbfgs ``tol``; None: not asked) at the start or at
    ``tol_repeats`` consecutive iterates (the start counting as one), when the largest component
    of the solver's own gradient (in ``V``) is at most ``tolerance_grad``, or when a step
    changes the objective by less than ``tolerance_change``. ``on_nonfinite(loss, n)`` makes
    the error raised when an evaluation is not finite (default: ``FloatingPointError``).
    ``on_iterate(w, b)`` after each iteration, with the iterate (views: copy to keep).
    ``max_eval``: :func:`lbfgs`'s budget of evaluations (None: torch's, ``max_iter * 5 // 4``).
    """
    start = time.perf_counter()
    w0, b0 = init
    dtype = loss.dtype
    p = p_inv = None
    if preconditioner is not None:
        p, p_inv = (m.to(dtype=dtype, device=loss.rows.device) for m in preconditioner)
    w0 = w0.to(dtype)
    v = _times(w0, p_inv) if p_inv is not None else w0.clone()
    b = b0.to(dtype).clone()
    k, d = v.shape
    x = torch.cat([v.reshape(-1), b])
    evaluations = 0

    def unpack(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _times(flat[: k * d].view(k, d), p), flat[k * d :]

    def fun(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal evaluations
        evaluations += 1
        w, b = unpack(flat)
        value, grad_w, grad_b = loss.loss_gradient(w, b)
        if not torch.isfinite(value):
            if on_nonfinite is not None:
                raise on_nonfinite(float(value), evaluations)
            raise FloatingPointError(f"the objective became {float(value)}")
        grad_v = _times(grad_w, p)
        return value, torch.cat([grad_v.reshape(-1), grad_b])

    passed = 0  # consecutive iterates that passed the ``tol`` test
    asked = 0
    if checkpoint is not None:  # a continued fit's test goes on from where it was
        checkpoint = Counted(checkpoint, lambda: {"passed": passed, "asked": asked})
        passed = checkpoint.resumed.get("passed", 0)
        asked = checkpoint.resumed.get("asked", 0)

    def small_enough(g: torch.Tensor) -> bool:
        nonlocal passed, asked
        asked += 1
        grad_w = _times(g[: k * d].view(k, d), p_inv)  # back to the gradient in W
        passed = passed + 1 if loss.largest_component(grad_w, g[k * d :]) <= tol else 0
        # A start that passes is taken as it is (a warm start at the answer: no step, as
        # scikit-learn's lbfgs takes none); after a step, ``tol_repeats`` in a row.
        return passed >= (1 if asked == 1 else tol_repeats)

    each = callback
    if on_iterate is not None:

        def each(n: int, value: float) -> None:
            if callback is not None:
                callback(n, value)
            on_iterate(*unpack(x))

    with torch.no_grad():
        result = lbfgs(
            fun,
            x,
            max_iter=max_iter,
            max_eval=max_eval,
            segments=(k * d, k),
            history_size=history_size,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            converged=small_enough if tol is not None else None,
            callback=each,
            checkpoint=checkpoint,
        )
        w, b = unpack(result.x)
        w, b = w.clone(), b.clone()
        # The line search may end on a point it did not evaluate last: score it once more.
        value, _, _ = loss.loss_gradient(w, b)
    return Solution(
        w,
        b,
        float(value),
        evaluations,
        time.perf_counter() - start,
        iterations=result.iterations,
        converged=result.converged,
    )


# --------------------------------------------------------------------------- Newton


# Dense rows of at most this many features (with the bias): conjugate gradient preconditioned
# by each problem's whole Hessian (its Cholesky factor), formed at the first iteration and
# again after a solve that took more than REFRESH_AFTER products. On digits (65): 25
# products and 3 Hessians in 11 iterations, against 133 products with the diagonal's (0.11 s
# against 0.18 s). A Hessian costs about (D + 1) / 2 products' arithmetic: at 1,000
# features (text) 18x slower than the diagonal's.
WHOLE_MAX = 128
REFRESH_AFTER = 3


def newton(
    loss: SoftmaxLoss,
    init: tuple[torch.Tensor, torch.Tensor],
    max_iter: int,
    *,
    l2: tuple[float, float] = (0.0, 0.0),
    converged: Callable[[torch.Tensor, torch.Tensor], bool] | None = None,
    cg_tol: float = 0.1,
    max_cg: int = 250,
    float32_products: bool = True,
    jacobi: bool = True,
    whole_hessian: bool | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> Solution:
    """Newton's method on independent binary problems (``loss.one_vs_rest``, or
    ``loss.binary``: one), each row of (W, b) its own problem and its own step, all ``K``
    together: liblinear's trust-region Newton method for its L2 model, with a line search.

    The objective is ``loss`` plus ``l2 = (l2_w, l2_b)`` times half the squares of ``W`` and
    of ``b``. Each iteration: one pass for every problem's loss, gradient and curvature
    (:meth:`SoftmaxLoss.problem_terms`), then the Newton direction of each problem by
    conjugate gradient on Hessian-vector products (:meth:`SoftmaxLoss.hessian_vector`, one
    pass for all ``K``, in float32 when ``float32_products``), stopped when each problem's
    residual is ``cg_tol`` times its gradient's norm (liblinear's 0.1). Preconditioned, with
    ``whole_hessian`` (default: dense rows of at most ``WHOLE_MAX`` features and bias), by
    each problem's whole Hessian at a recent iterate (:meth:`SoftmaxLoss.hessians`, ``K``
    Cholesky factors; a few products per iteration), else, with ``jacobi``, by the current
    Hessian's diagonal (:meth:`SoftmaxLoss.hessian_diagonal`, one more pass). Then a
    backtracking (Armijo) line search on each problem's own objective, all ``K`` evaluated by
    one pass; the unit step is taken almost always, and its pass is the next iteration's.
    Stops when ``converged(grad_w, grad_b)`` says so (asked at the start and after each
    step), after ``max_iter`` iterations, or when no problem's step moves it any more.
    """
    start = time.perf_counter()
    dtype = loss.dtype
    given = loss
    # Rows read from disk (or sparse) are converted block by block as each pass reads them.
    held = not loss.rows.sparse and not isinstance(loss.rows, StreamedRows)
    if held and loss.rows.dtype != dtype:
        # Every iteration reads the rows several times: converted once, not block by block.
        loss = dataclasses.replace(loss, x=DenseRows(loss.rows.x.to(dtype)))
    # The products of conjugate gradient in float32 (twice the arithmetic rate, half the
    # traffic): a direction asked to cg_tol = 0.1 needs nothing like float64's precision.
    # Sparse rows keep float32 values beside their own; dense ones are copied once.
    hv_loss = loss
    if not loss.rows.sparse and loss.rows.shape[0] * loss.rows.shape[1] <= 2**20:
        # Small dense rows fit in the cache whole: one block, fewer (and larger) products.
        hv_loss = dataclasses.replace(loss, block_rows=None)
    if dtype == torch.float64 and float32_products:
        if not held:
            hv_loss = dataclasses.replace(hv_loss, dtype=torch.float32)
        else:
            rows32 = given.rows if given.rows.dtype == torch.float32 else None
            x32 = rows32.x if rows32 is not None else loss.rows.x.float()
            hv_loss = dataclasses.replace(hv_loss, x=DenseRows(x32), dtype=torch.float32)
    w = init[0].to(dtype).clone()
    b = init[1].to(dtype).clone()
    k, d = w.shape
    l2_w, l2_b = float(l2[0]), float(l2[1]) if loss.fit_intercept else 0.0
    if not loss.fit_intercept:
        b.zero_()
    evaluations = 0

    def terms(w: torch.Tensor, b: torch.Tensor):
        nonlocal evaluations
        evaluations += 1
        f, gw, gb, h = loss.problem_terms(w, b, curvature=True)
        if not torch.isfinite(f).all():
            raise FloatingPointError(f"the objective became {float(f.sum())}")
        f = f + 0.5 * (l2_w * (w * w).sum(1) + l2_b * b * b).to(f.dtype)
        return f, gw + l2_w * w, gb + l2_b * b, h

    whole = not loss.rows.sparse and d + 1 <= WHOLE_MAX if whole_hessian is None else whole_hessian
    state = {"factor": None}
    # The penalty's diagonal, bias last: the vectors of conjugate gradient are (K, D + 1).
    penalty = torch.full((d + 1,), l2_w + loss.weight_decay, dtype=dtype, device=w.device)
    penalty[d] = l2_b

    def hessian_vector(h, v):
        out_w, out_b = hv_loss.hessian_vector(h, v[:, :d], v[:, d])
        return torch.cat([out_w, out_b.unsqueeze(1)], 1).to(dtype) + penalty * v

    def conjugate_gradient(h, gw, gb):
        # All K problems at once, each with its own step sizes; a problem whose residual is
        # small enough stops moving (its step 0) while the others go on.
        h = h.to(hv_loss.dtype)
        g = torch.cat([gw, gb.unsqueeze(1)], 1)
        nonlocal whole
        factor = None
        if whole:
            if state["factor"] is None:
                hess = hv_loss.hessians(h).to(dtype)
                hess.diagonal(dim1=1, dim2=2).add_(penalty)
                if not loss.fit_intercept:
                    hess[:, d, d] = 1.0
                f_, info = torch.linalg.cholesky_ex(hess)
                if bool((info == 0).all()):
                    state["factor"] = f_
                else:  # not positive definite in this precision: the diagonal's from now
                    whole = False
            factor = state["factor"] if whole else None
        if factor is not None:

            def precondition(v):
                return torch.cholesky_solve(v.unsqueeze(2), factor).squeeze(2)

        elif jacobi:
            m_w, m_b = hv_loss.hessian_diagonal(h)
            m = torch.cat([m_w, m_b.unsqueeze(1)], 1).to(dtype) + penalty
            m = 1.0 / m.clamp_min(1e-300)

            def precondition(v):
                return m * v

        else:

            def precondition(v):
                return v

        x = torch.zeros_like(g)
        r = -g
        steps = 0
        z = precondition(r)
        p = z.clone()
        rz = (r * z).sum(1)
        target = cg_tol**2 * (r * r).sum(1)
        active = torch.ones_like(rz, dtype=torch.bool)
        for _ in range(max_cg):
            active &= (r * r).sum(1) > target
            if not bool(active.any()):
                break
            hp = hessian_vector(h, p)
            php = (p * hp).sum(1)
            alpha = torch.where(active & (php > 0), rz / torch.where(php > 0, php, 1.0), 0.0)
            alpha = alpha.unsqueeze(1)
            x.addcmul_(alpha, p)
            r.addcmul_(alpha, hp, value=-1.0)
            z = precondition(r)
            rz_new = (r * z).sum(1)
            beta = torch.where(active, rz_new / torch.where(rz > 0, rz, 1.0), 0.0)
            p = z.addcmul_(beta.unsqueeze(1), p)
            rz = rz_new
            steps += 1
        if steps > REFRESH_AFTER:
            state["factor"] = None  # the curvature has moved on: a new one next time
        return x[:, :d], x[:, d]

    with torch.no_grad():
        f, gw, gb, h = terms(w, b)
        iterations, done = 0, False
        while True:
            if converged is not None and converged(gw, gb):
                done = True
                break
            if iterations >= max_iter:
                break
            iterations += 1
            s_w, s_b = conjugate_gradient(h, gw, gb)
            if not loss.fit_intercept:
                s_b = torch.zeros_like(s_b)
            slope = ((gw * s_w).sum(1) + gb * s_b).to(f.dtype)
            # A rise within rounding of the objective is no rise: near the optimum the
            # change is below float64's resolution of f.
            slack = 16 * torch.finfo(f.dtype).eps * f.abs()
            t = torch.ones_like(f)
            for _ in range(30):
                tt = t.to(dtype)
                new_w, new_b = w + tt.unsqueeze(1) * s_w, b + tt * s_b
                f_new, gw_new, gb_new, h_new = terms(new_w, new_b)
                fine = f_new <= f + 1e-4 * t * slope + slack
                if bool(fine.all()):
                    break
                t = torch.where(fine, t, t / 2)
            else:
                t = torch.where(fine, t, 0.0)
                tt = t.to(dtype)
                new_w, new_b = w + tt.unsqueeze(1) * s_w, b + tt * s_b
                f_new, gw_new, gb_new, h_new = terms(new_w, new_b)
            moved = (tt.unsqueeze(1) * s_w).abs().amax(1).maximum((tt * s_b).abs())
            size = w.abs().amax(1).maximum(b.abs())
            w, b, f, gw, gb, h = new_w, new_b, f_new, gw_new, gb_new, h_new
            if callback is not None:
                callback(iterations, float(f.sum()))
            if bool((moved <= 1e-15 * size.clamp_min(1e-300)).all()):
                done = converged is not None and converged(gw, gb)
                break
    return Solution(
        w,
        b,
        float(f.sum()),
        evaluations,
        time.perf_counter() - start,
        iterations=iterations,
        converged=done,
    )


# --------------------------------------------------------------------------- L1: OWL-QN


def owlqn(
    fun: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    l1: torch.Tensor,
    *,
    max_iter: int,
    history_size: int = 20,
    tolerance_change: float = 1e-12,
    max_backtracks: int = 40,
    blocks: int = 1,
    precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
    converged: Callable[[torch.Tensor, torch.Tensor | None], bool] | None = None,
    callback: Callable[[int, float], None] | None = None,
    checkpoint: Any = None,
) -> LbfgsResult:
    """Minimise ``f(x) + sum_j l1_j |x_j|`` over a flat ``x`` (updated in place), ``fun(x) ->
    (f, gradient of f)`` smooth, ``l1 >= 0`` per coordinate: OWL-QN (Andrew and Gao, 2007).

    L-BFGS's two-loop recursion on the smooth part's curvature pairs, applied to the
    pseudo-gradient (the steepest-descent direction of the whole objective), with every step
    kept in the orthant it starts in: a coordinate that would cross zero is set to exactly
    zero, which is how the L1 term's zeros appear. A backtracking (Armijo) line search on the
    whole objective. ``precondition(v)`` applies the recursion's initial inverse Hessian
    ``H0`` (scaled by ``s.y / y.H0.y`` each iteration, as L-BFGS scales the identity): a
    quasi-Newton method may start from any positive definite ``H0``, and the orthant rule
    still gives a descent direction, so the dense covariance preconditioner of the smooth
    path serves here without making the L1 term non-separable (the change of variables it
    stands for would). ``blocks``: ``x`` is that many equal blocks, independent problems
    summed (one-vs-rest), each with its own curvature pairs and scale, so that each block's
    direction is its own problem's quasi-Newton step; one line search for all (one
    evaluation serves every block). ``converged(pseudo_gradient, step)`` is the stopping
    test (scikit-learn's ``tol``; ``step`` None at the start); it also ends when a step
    changes the objective by less than ``tolerance_change`` or no step along the direction
    lowers it. ``checkpoint``: as :func:`lbfgs`'s, with an :class:`OwlqnState`.
    """
    preconditioned = precondition is not None
    free = l1 == 0  # coordinates without an L1 term: plain L-BFGS
    if precondition is None:

        def precondition(v: torch.Tensor) -> torch.Tensor:
            return v.clone()

    def pseudo(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        right, left = g + l1, g - l1
        at_zero = torch.where(right < 0, right, torch.where(left > 0, left, torch.zeros_like(g)))
        return torch.where(x > 0, right, torch.where(x < 0, left, at_zero))

    def total(f: torch.Tensor, x: torch.Tensor) -> float:
        return float(f) + float((l1 * x.abs()).sum())

    resumed = getattr(checkpoint, "state", None)
    if resumed is None:
        f, g = fun(x)
        value = total(f, x)
        pg = pseudo(x, g)
        evaluations = 1
        if converged is not None and converged(pg, None):
            return LbfgsResult(x, value, 0, evaluations, True)
        steps: list[torch.Tensor] = []
        changes: list[torch.Tensor] = []
        rho: list[torch.Tensor] = []
        gamma = torch.ones(blocks, 1, dtype=x.dtype, device=x.device)
        n_iter = 0
    else:
        x.copy_(resumed.x)
        g, value = resumed.g.clone(), resumed.value
        pg = pseudo(x, g)
        evaluations, n_iter = resumed.evaluations, resumed.iterations
        steps, changes, rho = list(resumed.steps), list(resumed.changes), list(resumed.rho)
        gamma = resumed.gamma.clone()

    def snapshot() -> OwlqnState:
        return OwlqnState(
            x.clone(),
            g.clone(),
            value,
            list(steps),
            list(changes),
            list(rho),
            gamma.clone(),
            n_iter,
            evaluations,
        )

    def dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # per block, (blocks, 1)
        return (u.view(blocks, -1) * v.view(blocks, -1)).sum(1, keepdim=True)

    def scaled(v: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
        return (v.view(blocks, -1) * by).reshape(-1)

    done = False
    while n_iter < max_iter:
        n_iter += 1
        # The two-loop recursion on the pseudo-gradient, in each block on its own pairs.
        q = pg.neg()
        alpha = [None] * len(steps)
        for i in range(len(steps) - 1, -1, -1):
            alpha[i] = dot(steps[i], q) * rho[i]
            q -= scaled(changes[i], alpha[i])
        q = scaled(precondition(q), gamma)
        for i in range(len(steps)):
            beta = dot(changes[i], q) * rho[i]
            q += scaled(steps[i], alpha[i] - beta)
        # At a zero of the L1 term a component may only leave zero in the direction the
        # pseudo-gradient descends; elsewhere (and where there is no L1 term) the
        # quasi-Newton direction stands, unless that is no descent (then, as Andrew and Gao,
        # every component that disagrees with the pseudo-gradient is dropped).
        agrees = q * pg < 0
        d = torch.where(free | (x != 0) | agrees, q, torch.zeros_like(q))
        slope = float(pg.dot(d))
        if not slope < 0:
            d = torch.where(free | agrees, q, torch.zeros_like(q))
            slope = float(pg.dot(d))
        if not slope < 0:
            d, slope = pg.neg(), -float(pg.dot(pg))
            if not slope < 0:
                break
        orthant = torch.where(x != 0, x.sign(), pg.neg().sign())
        t = 1.0 if steps or preconditioned else min(1.0, 1.0 / float(pg.abs().sum()))
        for _ in range(max_backtracks):
            new = x + t * d
            new = torch.where(free | (new.sign() == orthant), new, torch.zeros_like(new))
            f_new, g_new = fun(new)
            evaluations += 1
            value_new = total(f_new, new)
            if value_new <= value + 1e-4 * float(pg.dot(new - x)):
                break
            t *= 0.5
        else:
            break  # no step lowers the objective: as far as this precision goes
        s, y = new - x, g_new - g
        sy, yy = dot(s, y), dot(y, y)
        # A block whose pair has no positive curvature keeps its recursion unchanged (its
        # rho 0 makes the pair a no-op there).
        fine = (sy > 1e-10 * yy) & (sy > 0)
        if bool(fine.any()):
            if len(steps) == history_size:
                steps.pop(0)
                changes.pop(0)
                rho.pop(0)
            steps.append(s)
            changes.append(y)
            rho.append(torch.where(fine, 1.0 / torch.where(fine, sy, 1.0), 0.0))
            gamma = torch.where(fine, sy / dot(y, precondition(y)), gamma)
        change = value - value_new
        x.copy_(new)
        g, value = g_new, value_new
        pg = pseudo(x, g)
        if callback is not None:
            callback(n_iter, value)
        if converged is not None and converged(pg, s):
            done = True
            break
        if change < tolerance_change:
            break
        if checkpoint is not None:
            checkpoint.offer(n_iter, snapshot)
    return LbfgsResult(x, value, n_iter, evaluations, done)


def minimize_l1(
    loss: SoftmaxLoss,
    init: tuple[torch.Tensor, torch.Tensor],
    max_iter: int,
    *,
    l1: tuple[torch.Tensor | float, torch.Tensor | float],
    l2: tuple[torch.Tensor | float, torch.Tensor | float] = (0.0, 0.0),
    tol: float | None = None,
    tol_repeats: int = 1,
    history_size: int = 20,
    tolerance_change: float = 1e-12,
    independent_rows: bool = False,
    converged: Callable[..., bool] | None = None,
    precondition: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    | None = None,
    callback: Callable[[int, float], None] | None = None,
    checkpoint: Any = None,
) -> Solution:
    """Minimise ``loss + sum l1 |theta| + sum l2 theta^2 / 2`` over ``theta = (W, b)`` from
    ``init`` with :func:`owlqn`; ``l1`` and ``l2`` are the weights of ``W`` and of ``b``
    (anything that broadcasts to their shapes). ``precondition(v_w, v_b)`` applies an
    approximate inverse Hessian (:func:`owlqn`'s ``H0``) to a gradient in (W, b);
    ``independent_rows``: each row of (W, b) is its own problem (``loss.one_vs_rest``), given
    its own curvature pairs. Stops after ``max_iter`` iterations or when the largest component
    of the pseudo-gradient, in scikit-learn's coordinates, is at most ``tol`` at
    ``tol_repeats`` consecutive iterates (as :func:`minimize`'s ``tol``), or, given
    ``converged(pg_w, pg_b, theta_w, theta_b, step_w, step_b)`` (``step_*`` None at the
    start), when that says so instead. ``checkpoint``: :func:`owlqn`'s (a fit that can be
    continued; the ``tol`` test's run of passes is kept with its state)."""
    start = time.perf_counter()
    dtype, device = loss.x.dtype, loss.x.device
    w0, b0 = init
    k, d = w0.shape

    # theta is (K, D + 1) row by row, [W | b]: a row is one contiguous block.
    def pack(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([w, b.unsqueeze(1)], 1).reshape(-1)

    def unpack(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = theta.view(k, d + 1)
        return rows[:, :d], rows[:, d]

    def weights(pair) -> torch.Tensor:
        w_part = torch.as_tensor(pair[0], dtype=dtype, device=device).expand(k, d)
        b_part = torch.as_tensor(pair[1], dtype=dtype, device=device).expand(k)
        return pack(w_part, b_part)

    l1_flat, l2_flat = weights(l1), weights(l2)
    smooth_l2 = bool((l2_flat != 0).any())
    x = pack(w0.to(dtype), b0.to(dtype))
    evaluations = 0

    def fun(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal evaluations
        evaluations += 1
        value, grad_w, grad_b = loss.loss_gradient(*unpack(theta))
        if not torch.isfinite(value):
            raise FloatingPointError(f"the objective became {float(value)}")
        grad = pack(grad_w, grad_b)
        if smooth_l2:
            value = value + 0.5 * (l2_flat * theta * theta).sum()
            grad = grad + l2_flat * theta
        return value, grad

    passed = 0
    if checkpoint is not None:
        checkpoint = Counted(checkpoint, lambda: {"passed": passed})
        passed = checkpoint.resumed.get("passed", 0)

    def small_enough(pg: torch.Tensor, step: torch.Tensor | None) -> bool:
        nonlocal passed
        if converged is not None:
            steps = (None, None) if step is None else unpack(step)
            return converged(*unpack(pg), *unpack(x), *steps)
        passed = passed + 1 if loss.largest_component(*unpack(pg)) <= tol else 0
        return passed >= tol_repeats

    flat_precondition = None
    if precondition is not None:

        def flat_precondition(v: torch.Tensor) -> torch.Tensor:
            return pack(*precondition(*unpack(v)))

    with torch.no_grad():
        result = owlqn(
            fun,
            x,
            l1_flat,
            max_iter=max_iter,
            history_size=history_size,
            tolerance_change=tolerance_change,
            blocks=k if independent_rows else 1,
            precondition=flat_precondition,
            converged=small_enough if tol is not None or converged is not None else None,
            callback=callback,
            checkpoint=checkpoint,
        )
    w, b = unpack(result.x)
    return Solution(
        w.clone(),
        b.clone(),
        result.loss,
        evaluations,
        time.perf_counter() - start,
        iterations=result.iterations,
        converged=result.converged,
    )


# --------------------------------------------------------------------------- L1: proximal Newton

# Zeros that may join a problem's working set per iteration: those whose pseudo-gradient is
# largest (its nonzeros are in it anyway). The Hessians cost the square of the set's size:
# 8 took 1.2x less time than 16 on dense text (2,000 rows, 1,000 terms, 30 classes) and on
# digits, 1.05x more on the sparse text corpus (more iterations to grow the set).
WORKING_SET_GROWTH = 8
# The inner solver (:func:`_l1_quadratic`) on each quadratic model: INNER_SWEEPS sweeps of
# coordinate descent (which finds the orthant: zeros leave zero, nonzeros reach it) then
# INNER_STEPS steps solving the orthant's quadratic exactly, each up to RESOLVES times (an
# inexact inner solve, as newGLMNET's). On dense text five orthant steps alone took 20
# outer iterations at 2x the time of 3 + 1, and stopped above liblinear's objective on the
# sparse corpus; 20 sweeps alone took 19 iterations at 1.5x the time; 2 + 1 25 iterations,
# 4 + 1 18 at about the same time as 3 + 1.
INNER_SWEEPS = 3
INNER_STEPS = 1
INNER_TOL = 1e-3
RESOLVES = 4
# liblinear's bound on a coordinate's move in one inner step (its newGLMNET's): a
# coordinate whose rows are all fitted has almost no curvature (1.8e-14 on the sparse text
# corpus), and the model's minimiser along it is far past where the loss turns (7e8 away),
# beyond any step halving. Each move of the coordinate descent and the inner solve's whole
# move are held to it.
MAX_MOVE = 10.0
# liblinear's sufficient decrease (newGLMNET's sigma) and its limit on step halvings.
SUFFICIENT_DECREASE = 0.01
MAX_HALVINGS = 20


def newton_l1(
    loss: SoftmaxLoss,
    init: tuple[torch.Tensor, torch.Tensor],
    max_iter: int,
    *,
    l1: tuple[float, float],
    converged: Callable[..., torch.Tensor] | None = None,
    growth: int = WORKING_SET_GROWTH,
    inner_sweeps: int = INNER_SWEEPS,
    inner_steps: int = INNER_STEPS,
    callback: Callable[[int, float], None] | None = None,
) -> Solution:
    """A proximal Newton method (newGLMNET's, liblinear's own for its L1 model) on
    independent binary problems (``loss.one_vs_rest``, or ``loss.binary``: one), each row of
    (W, b) its own problem, all ``K`` together: ``loss`` (its data term; no weight decay) plus
    ``l1 = (l1_w, l1_b)`` times the absolute values of ``W`` and of ``b``.

    Each iteration, for every problem not yet converged: a working set of coordinates, its
    nonzeros and the ``growth`` zeros whose pseudo-gradient (the L1 subgradient of least
    norm) is largest; the Hessian of its data term on that set
    (:meth:`SoftmaxLoss.working_set_hessians`, float32, one pass for all problems); the
    quadratic model plus the L1 term minimised on the set (:func:`_l1_quadratic`:
    ``inner_sweeps`` sweeps of coordinate descent, then ``inner_steps`` orthant steps, each
    coordinate's move at most ``MAX_MOVE``); then liblinear's line search on each problem's
    own objective
    (sufficient decrease ``SUFFICIENT_DECREASE`` times the model's predicted decrease, step
    halving), on the kept logits moved by ``problem_logits(step)`` (one pass), and one pass
    for the gradient at the new point (:meth:`SoftmaxLoss.problem_gradient`). Coordinates
    outside the working set stay where they are, and a coordinate the model sets to zero is
    exactly zero, so the L1 term's zeros are exact. Dense rows, sparse rows and rows read
    from disk alike (every pass through ``loss.rows``); one process. Besides the passes,
    an iteration's work on all ``K (D + 1)`` coordinates is a few operations (the
    pseudo-gradient, the working set); the rest is on the working sets.

    ``converged(pg_w, pg_b)`` gives each problem's stopping test, a ``(K,)`` bool tensor, from
    the pseudo-gradient; a problem that passed is not updated again. Also stops after
    ``max_iter`` iterations; a problem whose line search finds no decrease stops there (not
    converged)."""
    start = time.perf_counter()
    dtype = loss.dtype
    if loss.weight_decay:
        raise ValueError("newton_l1 takes its L1 weights in l1, and no weight decay")
    w = init[0].to(dtype)
    b = init[1].to(dtype)
    k, d = w.shape
    device = w.device
    fit_b = loss.fit_intercept
    theta = torch.cat([w, b.unsqueeze(1) if fit_b else torch.zeros_like(b).unsqueeze(1)], 1)
    lam = torch.full((d + 1,), float(l1[0]), dtype=dtype, device=device)
    lam[d] = float(l1[1]) if fit_b else 0.0
    passes = 0

    def pseudo(nonzero: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The pseudo-gradient: at a zero the gradient soft-thresholded by ``lam``, at a
        nonzero (``nonzero``: their indices, few) the gradient plus ``lam`` times its sign;
        a few in-place operations on the whole ``(K, D + 1)``: on many features (a text
        corpus's 96,000) they are much of an iteration's cost."""
        pg = grad.abs().sub_(lam).clamp_min_(0.0).mul_(grad.sign())
        at, of = nonzero
        pg[at, of] = grad[at, of] + lam[of] * theta[at, of].sign()
        if not fit_b:
            pg[:, d] = 0.0
        return pg

    with torch.no_grad():
        z = loss.problem_logits(theta[:, :d], theta[:, d])
        f, g_z, h = loss.problem_losses(z, curvature=True)
        gw, gb = loss.problem_gradient(g_z)
        passes += 2
        grad = torch.cat([gw, gb.unsqueeze(1)], 1)
        l1_term = (lam * theta.abs()).sum(1)
        value = f.to(dtype) + l1_term
        active = torch.ones(k, dtype=torch.bool, device=device)
        iterations, done = 0, False
        while True:
            nonzero = (theta != 0).nonzero(as_tuple=True)
            pg = pseudo(nonzero)
            if converged is not None:
                active &= ~converged(pg[:, :d], pg[:, d]).to(device)
                if not bool(active.any()):
                    done = True
                    break
            if iterations >= max_iter or not bool(active.any()):
                break
            iterations += 1
            idx = active.nonzero().squeeze(1)
            # The working set: the nonzeros, the zeros that most want to move, the bias.
            keep = active[nonzero[0]]
            nz_at = torch.searchsorted(idx, nonzero[0][keep])  # rows of idx
            nz_of = nonzero[1][keep]
            score = pg[idx].abs_()
            score[nz_at, nz_of] = 0.0
            top = score.topk(min(growth, d + 1), dim=1)
            ws = torch.zeros(len(idx), d + 1, dtype=torch.bool, device=device)
            ws.scatter_(1, top.indices, top.values > 0)
            ws[nz_at, nz_of] = True
            if fit_b:
                ws[:, d] = True
            at, columns_flat = ws.nonzero(as_tuple=True)  # by problem, then by column
            counts = torch.bincount(at, minlength=len(idx))
            m = int(counts.max())
            if m == 0:
                break
            place = torch.arange(len(at), device=device) - (counts.cumsum(0) - counts)[at]
            columns = torch.zeros(len(idx), m, dtype=torch.long, device=device)
            columns[at, place] = columns_flat
            valid = torch.zeros(len(idx), m, dtype=torch.bool, device=device)
            valid[at, place] = True
            hess = loss.working_set_hessians(h[idx], columns, counts).to(dtype)
            passes += 1
            rows_of = idx.unsqueeze(1).expand(-1, m)
            g_ws = torch.where(valid, grad[rows_of, columns], 0.0)
            th_ws = torch.where(valid, theta[rows_of, columns], 0.0)
            lam_ws = torch.where(valid, lam[columns], 0.0)
            u = _l1_quadratic(hess, g_ws, th_ws, lam_ws, inner_sweeps, inner_steps)
            s_ws = torch.where(valid, u - th_ws, 0.0)
            # The model's decrease (newGLMNET's delta): negative for a descent direction.
            delta = (g_ws * s_ws).sum(1) + _l1_change(lam_ws, th_ws, s_ws, 1.0)
            descends = delta < 0
            s_ws[~descends] = 0.0
            step = torch.zeros(len(idx), d + 1, dtype=dtype, device=device)
            step[at, columns_flat] = s_ws[at, place]
            dz = loss.problem_logits(step[:, :d], step[:, d])
            passes += 1
            za, fa = z[idx], value[idx]
            pen_a = l1_term[idx]
            slack = 16 * torch.finfo(dtype).eps * fa.abs()
            t = torch.where(descends, 1.0, 0.0).to(dtype)
            for _ in range(MAX_HALVINGS):
                trial = loss.problem_losses(za + t.unsqueeze(1) * dz, idx)[0].to(dtype)
                trial = trial + pen_a + _l1_change(lam_ws, th_ws, s_ws, t)
                fine = (trial <= fa + SUFFICIENT_DECREASE * t * delta + slack) | (t == 0)
                if bool(fine.all()):
                    break
                t = torch.where(fine, t, t / 2)
            else:
                t = torch.where(fine, t, 0.0)
            # A problem without a step that lowers its objective is as far as it goes.
            active[idx[t == 0]] = False
            theta[idx[at], columns_flat] = (th_ws + t.unsqueeze(1) * s_ws)[at, place]
            l1_term[idx] = pen_a + _l1_change(lam_ws, th_ws, s_ws, t)
            z[idx] = za + t.unsqueeze(1) * dz
            fa, g_a, h_a = loss.problem_losses(z[idx], idx, curvature=True)
            gw, gb = loss.problem_gradient(g_a)
            passes += 1
            grad[idx, :d] = gw
            grad[idx, d] = gb
            h[idx] = h_a
            value[idx] = fa.to(dtype) + l1_term[idx]
            if callback is not None:
                callback(iterations, float(value.sum()))
    return Solution(
        theta[:, :d].clone(),
        theta[:, d].clone(),
        float(value.sum()),
        passes,
        time.perf_counter() - start,
        iterations=iterations,
        converged=done,
    )


def _l1_change(lam: torch.Tensor, theta: torch.Tensor, step: torch.Tensor, t) -> torch.Tensor:
    """Each problem's change of the L1 term ``lam.|theta|`` (rows) at ``theta + t step``
    (``t`` a number, or one per problem)."""
    t = torch.as_tensor(t, dtype=theta.dtype, device=theta.device).reshape(-1, 1)
    return (lam * (theta + t * step).abs()).sum(1) - (lam * theta.abs()).sum(1)


def _l1_quadratic(
    hess: torch.Tensor,
    grad: torch.Tensor,
    theta: torch.Tensor,
    lam: torch.Tensor,
    sweeps: int = INNER_SWEEPS,
    steps: int = INNER_STEPS,
) -> torch.Tensor:
    """An approximate minimiser ``u`` of each problem's (row's) model
    ``grad.(u - theta) + (u - theta).hess.(u - theta) / 2 + lam.|u|``, from ``u = theta``:
    ``hess`` ``(P, M, M)``, the rest ``(P, M)`` (a coordinate with ``lam`` 0 and no curvature
    stays where it is). First ``sweeps`` sweeps of coordinate descent
    (:func:`_l1_sweeps`), then from there ``steps`` steps of feature-sign search (Lee et al.,
    2007), all ``P`` at once: each step
    takes the orthant of ``u`` (a zero leaves zero in the direction its pseudo-gradient
    descends, or stays), solves the smooth quadratic of that orthant on its free coordinates
    exactly (a Cholesky factor; the others held at zero), and moves along the segment to
    that point as far as the model falls: the model, convex along the segment, is evaluated
    at its end and at every point where a coordinate crosses zero (that coordinate then
    exactly zero), and the lowest taken. Where the orthant is right, one step is the exact
    answer; the model never rises, so ``u - theta`` is a descent direction of the whole
    objective whenever the model falls at all."""
    p_count, m = grad.shape
    dtype = grad.dtype

    def times(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (a @ v.unsqueeze(2)).squeeze(2)

    diagonal = hess.diagonal(dim1=1, dim2=2)
    top = diagonal.amax(1, keepdim=True).clamp_min(1e-300)
    u = _l1_sweeps(hess, grad, theta, lam, sweeps)
    v = u - theta
    q = (lam * u.abs()).sum(1) + (grad * v).sum(1) + 0.5 * (v * times(hess, v)).sum(1)
    first = None
    for _ in range(steps):
        v = u - theta
        hv = times(hess, v)
        r = grad + hv  # the smooth part's gradient at u
        s = torch.where(
            u != 0, u.sign(), torch.where(r < -lam, 1.0, torch.where(r > lam, -1.0, 0.0))
        ).to(dtype)
        free = s != 0
        pq = torch.where(free, r + lam * s, 0.0)  # the model's pseudo-gradient at u
        size = pq.abs().amax(1)
        if first is None:
            first = size
        moving = size > INNER_TOL * first
        if not bool(moving.any()):
            break
        # The orthant's quadratic on the free coordinates, the others held at zero; a zero
        # whose answer there leaves zero against its orthant is held too, and it is solved
        # again (a zero leaves zero only in its orthant's direction).
        for _ in range(RESOLVES):
            held = torch.where(free, 0.0, -theta)  # u - theta of a coordinate held at zero
            rhs = torch.where(free, -(grad + lam * s + times(hess, held)), 0.0)
            pair = free.unsqueeze(2) & free.unsqueeze(1)
            system = torch.where(pair, hess, 0.0)
            for ridge in (1e-9, 1e-5):
                eye = torch.where(free, ridge * top, 1.0)
                factor, info = torch.linalg.cholesky_ex(system + torch.diag_embed(eye))
                if bool((info == 0).all()):
                    break
            solved = torch.cholesky_solve(rhs.unsqueeze(2), factor).squeeze(2)
            p = theta + torch.where(free, solved, held) - u
            wrong = free & (u == 0) & (p * s <= 0)
            if not bool(wrong.any()):
                break
            free = free & ~wrong
            s = torch.where(free, s, 0.0)
            pq = torch.where(free | (u != 0), pq, 0.0)
        p = torch.where((u == 0) & (p * s <= 0), 0.0, p)
        slope = (pq * p).sum(1)
        steepest = ~(slope < 0) | (info != 0)
        p = torch.where(steepest.unsqueeze(1), -pq, p)
        slope = (pq * p).sum(1)
        curve = (p * times(hess, p)).sum(1)
        # Where to look along u + t p: t = 1, the first piece's minimiser, every crossing.
        # The smooth part along the segment is a quadratic in t: only the L1 term is
        # evaluated coordinate by coordinate.
        ratio = -u / torch.where(p == 0, 1.0, p)
        crossing = (u * p < 0) & (ratio <= 1)
        breaks = torch.where(crossing, ratio, 1.0)
        best = (-slope / curve.clamp_min(1e-300)).clamp(0.0, 1.0).unsqueeze(1)
        ts = torch.cat([breaks, torch.ones_like(best), best], 1)  # (P, C)
        linear = (r * p).sum(1, keepdim=True)
        values = ts * linear + 0.5 * ts * ts * curve.unsqueeze(1)
        along = u.unsqueeze(1) + ts.unsqueeze(2) * p.unsqueeze(1)  # (P, C, M)
        values = values + (lam.unsqueeze(1) * along.abs()).sum(2)
        values = values + ((grad * v).sum(1) + 0.5 * (v * hv).sum(1)).unsqueeze(1)
        lowest, at = values.min(1)
        take = moving & (lowest < q)
        t = ts.gather(1, at.unsqueeze(1))
        chosen = torch.where(crossing & (breaks == t), 0.0, u + t * p)
        u = torch.where(take.unsqueeze(1), chosen, u)
        q = torch.where(take, lowest, q)
        if not bool(take.any()):
            break
    return theta + (u - theta).clamp(-MAX_MOVE, MAX_MOVE)


def _l1_sweeps(
    hess: torch.Tensor, grad: torch.Tensor, theta: torch.Tensor, lam: torch.Tensor, sweeps: int
) -> torch.Tensor:
    """``sweeps`` sweeps of cyclic coordinate descent on :func:`_l1_quadratic`'s models from
    ``u = theta``, all problems at once, each coordinate's step exact (its one-dimensional
    model's minimiser: a soft threshold), so the model never rises. On the CPU in numpy
    (the models are small: a coordinate's update is a few operations on ``(P,)`` arrays,
    whose cost in numpy is a microsecond each)."""
    if sweeps <= 0:
        return theta.clone()
    u = theta.detach().cpu().numpy().astype(np.float64)
    h = hess.detach().cpu().numpy().astype(np.float64)
    g0 = grad.detach().cpu().numpy().astype(np.float64)
    lm = lam.detach().cpu().numpy().astype(np.float64)
    diagonal = np.einsum("pii->pi", h)
    movable = diagonal > 0
    curve = np.where(movable, diagonal, 1.0)
    hv = np.zeros_like(u)  # hess (u - theta)
    for _ in range(sweeps):
        for j in range(u.shape[1]):
            uj = u[:, j]
            z = uj - (g0[:, j] + hv[:, j]) / curve[:, j]
            new = np.sign(z) * np.maximum(np.abs(z) - lm[:, j] / curve[:, j], 0.0)
            delta = np.where(movable[:, j], (new - uj).clip(-MAX_MOVE, MAX_MOVE), 0.0)
            if delta.any():
                hv += h[:, j, :] * delta[:, None]
                u[:, j] = uj + delta
    return torch.from_numpy(u).to(theta.dtype).to(theta.device)
