"""The objective of every full-batch fit: a linear softmax classifier's loss and gradient.

:class:`SoftmaxLoss` is the objective and nothing about solving it (scikit-learn's
``LinearModelLoss``); the solvers over it are :mod:`softmax_regression.solver`.

The objective, for ``N`` rows ``x_i`` (``D`` inputs), labels ``y_i`` in ``0..K-1`` and
sample weights ``s_i`` (1 when none)::

    sum_i s_i CE(W x~_i + b - margin e_{y_i}, y_i) / sum_i s_i + weight_decay / 2 tr(W R W^T)

with ``x~ = (x - center) / scale`` (either part optional: standardisation folded into the
parameters, so the rows are never copied), ``R`` a symmetric penalty matrix (the identity
when None) and the bias not penalised. Two forms of one problem:

* the best-linear recipe's ``mean CE + weight_decay / 2 ||W||^2`` (unit weights);
* scikit-learn's ``C sum_i s_i loss_i + ||W||^2 / 2``, which is the same objective divided by
  ``C sum_i s_i``: ``weight_decay = 1 / (C sum_i s_i)``. scikit-learn's lbfgs minimises that
  divided form too, so its ``tol`` (on the largest gradient component) means the same here.

``binary`` is scikit-learn's two-class model: one row ``w`` and the binomial loss, written as
the two-class softmax whose class-0 logit is held at 0 (``CE([0, z], y)`` is the logistic
loss of ``z = w x + b``), through the same code.

``one_vs_rest`` is ``K`` binary problems at once (liblinear's one-vs-rest): row ``k`` of ``W``
is the logistic model of "class ``k`` against the rest", and the loss is the sum of the ``K``
logistic losses, ``sum_k softplus(z_k) - z_{y_i}``, so that each row's gradient is its own
problem's. ``class_factors`` ``(2, K)`` multiplies row ``k``'s loss on the rest (``[0, k]``)
and on class ``k`` (``[1, k]``): each binary problem's own class weights.

Under ``torchrun`` each rank holds some of the rows; one evaluation all-reduces the loss sum
and the gradient sums once (one buffer), so every rank takes the same step on the same
numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .distributed import World


def _available_memory() -> int:
    """Bytes of memory available to new allocations: Linux's ``MemAvailable``, or less where
    this process's memory cgroup (v1 or v2, a container's limit) has less room left under
    its limit; 0 where it cannot be read."""
    available = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        return 0
    room = _cgroup_room()
    return available if room is None else min(available, room)


def _cgroup_room() -> int | None:
    """Bytes left under this process's memory cgroup limit (None: no limit found)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes")
            base = f"/sys/fs/cgroup/memory{path}"
        elif controllers == "":
            files = ("memory.max", "memory.current")
            base = f"/sys/fs/cgroup{path}"
        else:
            continue
        try:
            with open(f"{base}/{files[0]}") as f:
                limit = f.read().strip()
            with open(f"{base}/{files[1]}") as f:
                used = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            return max(0, int(limit) - used)
    return None


def is_sparse(x: object) -> bool:
    """A scipy.sparse matrix or array (the sparse inputs the package takes)."""
    return hasattr(x, "tocsr") and hasattr(x, "nnz")


class DenseRows:
    """Rows held as one dense ``(N, D)`` tensor: per block one ``W @ x.T`` and one ``G @ x``
    (the fast layouts for a thin weight matrix).

    Rows on the CPU computed on in another dtype (a float64 fit's float32 phase, or float32
    rows in liblinear's float64 model) are converted once, when the copy takes at most a
    quarter of the memory available (``MemAvailable``, or what a memory cgroup's limit
    leaves): converting every block on every pass
    made each float32 evaluation 1.4x the cost of one on float32 rows (Fashion-MNIST's
    pixels). Without the room, and on a GPU, each block is converted as it is read, never
    copied whole."""

    sparse = False

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.shape = tuple(x.shape)
        self.device = x.device
        self.dtype = x.dtype
        self._copies: dict[torch.dtype, torch.Tensor | None] = {}  # None: no room

    def block(self, lo: int, hi: int, dtype: torch.dtype) -> torch.Tensor:
        xb = self.x[lo:hi]
        if xb.dtype == dtype:
            return xb
        copy = self._copy(dtype)
        return copy[lo:hi] if copy is not None else xb.to(dtype)

    def _copy(self, dtype: torch.dtype) -> torch.Tensor | None:
        """The rows in ``dtype``, copied on first use where there is room (see the class)."""
        if dtype not in self._copies:
            size = self.x.numel() * dtype.itemsize
            room = self.x.device.type == "cpu" and size <= _available_memory() / 4
            self._copies[dtype] = self.x.to(dtype) if room else None
        return self._copies[dtype]

    def iterate(self, step: int | None, dtype: torch.dtype):
        """``(lo, hi, rows lo:hi in dtype)`` for every block of ``step`` rows (None: all), in
        order: one pass over the rows."""
        yield from _iterate(self, step, dtype)

    def weights(self, w: torch.Tensor) -> torch.Tensor:
        return w

    def logits(self, xb: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.addmm(bias, w, xb.t())  # (K, rows)

    def gradient_buffer(self, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(like)

    def add_gradient(self, acc: torch.Tensor, g: torch.Tensor, xb: torch.Tensor) -> None:
        acc.addmm_(g, xb)

    def gradient(self, acc: torch.Tensor) -> torch.Tensor:
        return acc

    def statistics(self, xb: torch.Tensor, sw: torch.Tensor | None, diagonal: bool):
        """(sum_i s_i x_i x_i^T, or only its diagonal; sum_i s_i x_i; sum_i s_i) over the
        block of rows ``xb``, float64."""
        xw = xb if sw is None else xb * sw.to(xb.dtype).unsqueeze(1)
        weight = float(xb.shape[0]) if sw is None else sw.double().sum()
        if diagonal:
            return (xw.double() * xb.double()).sum(0), xw.double().sum(0), weight
        # The products in the computing dtype (BLAS accumulates), summed in float64.
        return (xw.t() @ xb).double(), xw.double().sum(0), weight


class SparseRows:
    """Rows held as a scipy.sparse CSR matrix, never densified: per block (a view of the
    CSR's arrays) ``X_b @ W^T`` and ``X_b^T @ G^T`` by scipy's sparse products, which measured
    as fast as torch's sparse CSR kernels here and need no transposed copy (``X_b^T`` is a
    CSC view). Held on the CPU; the products' results are torch tensors sharing memory with
    numpy. The values are also kept in float32 when the CSR holds float64, for the float32
    phase of a mixed-precision fit (a third of the CSR's size)."""

    sparse = True

    def __init__(self, csr) -> None:
        import scipy.sparse as sp

        csr = sp.csr_matrix(csr)
        csr.sort_indices()
        self.csr = csr
        self.shape = csr.shape
        self.device = torch.device("cpu")
        self.dtype = torch.float64 if csr.dtype == np.float64 else torch.float32
        self._values = {self.dtype: csr.data}

    def block(self, lo: int, hi: int, dtype: torch.dtype):
        import scipy.sparse as sp

        if dtype not in self._values:
            self._values[dtype] = self.csr.data.astype(_NUMPY[dtype])
        indptr = self.csr.indptr
        s, e = indptr[lo], indptr[hi]
        return sp.csr_matrix(
            (self._values[dtype][s:e], self.csr.indices[s:e], indptr[lo : hi + 1] - s),
            shape=(hi - lo, self.shape[1]),
            copy=False,
        )

    def weights(self, w: torch.Tensor) -> np.ndarray:
        """``W^T`` as a C-ordered array, made once per evaluation for every block."""
        return np.ascontiguousarray(w.detach().cpu().numpy().T)

    def logits(self, xb, wt: np.ndarray, bias: torch.Tensor) -> torch.Tensor:
        z = torch.from_numpy(np.asarray(xb @ wt)).t()  # (K, rows)
        return z.add_(bias) if z.is_contiguous() else (z + bias)

    def gradient_buffer(self, like: torch.Tensor) -> np.ndarray:
        return np.zeros((like.shape[1], like.shape[0]), dtype=_NUMPY[like.dtype])

    def add_gradient(self, acc: np.ndarray, g: torch.Tensor, xb) -> None:
        acc += xb.T @ np.ascontiguousarray(g.t().numpy())

    def gradient(self, acc: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(acc.T))

    def iterate(self, step: int | None, dtype: torch.dtype):
        """As :meth:`DenseRows.iterate`."""
        yield from _iterate(self, step, dtype)

    def statistics(self, xb, sw: torch.Tensor | None, diagonal: bool):
        """(sum_i s_i x_i^2 per feature (the diagonal only, whatever ``diagonal`` says),
        sum_i s_i x_i, sum_i s_i) over the block ``xb`` (float64), float64: no ``D x D``
        matrix for sparse rows."""
        s = np.ones(xb.shape[0]) if sw is None else sw.double().cpu().numpy()
        squares = torch.from_numpy(np.asarray(xb.multiply(xb).T @ s).ravel())
        sums = torch.from_numpy(np.asarray(xb.T @ s).ravel())
        return squares, sums, float(s.sum())


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def _iterate(rows, step: int | None, dtype: torch.dtype):
    n = rows.shape[0]
    step = n if step is None else max(1, int(step))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        yield lo, hi, rows.block(lo, hi, dtype)


class StreamedRows(DenseRows):
    """Rows read from disk block by block (a :class:`~softmax_regression.data.stream.RowSource`),
    never held whole: one pass (:meth:`iterate`) reads the source's blocks in order, the next
    one read ahead by a thread while this one is computed on, and cuts each into sub-blocks
    of ``step`` rows (cache-sized) for the products. Memory: a few of the source's blocks,
    whatever the number of rows. Every pass checks first and last that no file changed
    (:meth:`RowSource.blocks`), so a file rewritten while a fit reads it is one
    :class:`~softmax_regression.errors.DataError`, not a wrong answer.

    ``index`` (increasing row numbers, optional) keeps only those rows of the source: a
    held-out split or a cross-validation fold, read from the same files (every block is
    read, the fold's rows computed on). Rows stored in float64 are read in float64 for a
    pass in float64, and in float32 (converted while read) for a pass in float32; anything
    else is read as float32. On a GPU each block is copied there as it is read.
    """

    sparse = False

    def __init__(self, source, index=None, device: torch.device | str = "cpu") -> None:
        self.source = source
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        if self.index is not None and len(self.index) > 1 and (np.diff(self.index) <= 0).any():
            raise ValueError("streamed rows take their index in increasing order")
        n = len(source) if self.index is None else len(self.index)
        self.shape = (n, source.width)
        self.device = torch.device(device)
        self.dtype = torch.float64 if source.stored_dtype == np.float64 else torch.float32

    def block(self, lo: int, hi: int, dtype: torch.dtype) -> torch.Tensor:
        """Rows ``lo:hi`` read on their own (a few rows: a test's or a check's)."""
        read = self._read_dtype(dtype)
        if self.index is None:
            x = self.source.read(lo, hi, dtype=read)
        else:
            x = np.empty((max(0, hi - lo), self.shape[1]), read)
            for j, i in enumerate(self.index[lo:hi].tolist()):
                self.source.read(i, i + 1, x[j : j + 1], read)
        return torch.from_numpy(x).to(device=self.device, dtype=dtype)

    def _read_dtype(self, dtype: torch.dtype):
        wide = dtype == torch.float64 and self.dtype == torch.float64
        return np.float64 if wide else np.float32

    def iterate(self, step: int | None, dtype: torch.dtype):
        """One pass: ``(lo, hi, rows lo:hi)`` in order, sub-blocks of ``step`` rows (None: a
        whole block of the source) of each block read from disk."""
        index = self.index
        for first, x in self.source.blocks(reuse=True, dtype=self._read_dtype(dtype)):
            if index is None:
                a, rows = first, x
            else:
                a, b = np.searchsorted(index, [first, first + len(x)])
                a, rows = int(a), x[index[a:b] - first]
            t = torch.from_numpy(rows)
            if t.device != self.device:
                t = t.to(self.device)
            size = len(t) if step is None else max(1, int(step))
            for s in range(0, len(t), size):
                xb = t[s : s + size]
                yield a + s, a + s + len(xb), (xb if xb.dtype == dtype else xb.to(dtype))


def as_rows(x) -> DenseRows | SparseRows:
    """The rows behind ``x``: a dense tensor, a scipy.sparse matrix, or rows already."""
    if isinstance(x, DenseRows | SparseRows):
        return x
    if is_sparse(x):
        return SparseRows(x)
    return DenseRows(x)


@dataclass
class SoftmaxLoss:
    """The objective of the module docstring on one set of rows (this rank's, under torchrun).

    ``x`` is a float ``(N, D)`` tensor or a scipy.sparse matrix (CPU), or rows made by
    :func:`as_rows`; ``y`` int64 ``(N,)``; every tensor on ``x``'s device. The arithmetic is
    in ``dtype`` (default: ``x``'s), which may be changed between evaluations (a float32
    phase of a float64 fit); ``total_weight`` is ``sum_i s_i`` over all ranks (set by
    :meth:`reduce_totals`).
    """

    x: torch.Tensor | DenseRows | SparseRows
    y: torch.Tensor
    weight_decay: float = 0.0
    sample_weight: torch.Tensor | None = None
    penalty: torch.Tensor | None = None
    margin: float = 0.0
    binary: bool = False
    fit_intercept: bool = True
    center: torch.Tensor | None = None  # (D,): inputs enter as x - center (needs a bias)
    scale: torch.Tensor | None = None  # (D,): ... divided by scale
    block_rows: int | None = None
    world: World | None = None
    total_weight: float | None = None
    loss_dtype: torch.dtype | None = None  # accumulate the loss sum in this (default x's)
    dtype: torch.dtype | None = None  # compute in this (default x's)
    one_vs_rest: bool = False  # K independent binary problems (see the module docstring)
    class_factors: torch.Tensor | None = None  # (2, K): one_vs_rest's per-problem weights

    def __post_init__(self) -> None:
        self.rows = as_rows(self.x)
        if self.dtype is None:
            self.dtype = self.rows.dtype
        if self.center is not None and not self.fit_intercept:
            raise ValueError("centring the inputs needs a bias to absorb the mean")
        if self.total_weight is None:
            self.reduce_totals()

    @property
    def parallel(self) -> bool:
        return self.world is not None and self.world.parallel

    def reduce_totals(self) -> None:
        if self.sample_weight is None and not self.parallel:
            self.total_weight = None  # the row count, divided exactly as an integer
            return
        local = (
            torch.tensor([float(self.rows.shape[0])], dtype=torch.float64)
            if self.sample_weight is None
            else self.sample_weight.double().sum().reshape(1).cpu()
        )
        if self.parallel:
            local = local.to(self.world.device)
            self.world.sum_same_(local, "summing the sample weights")
        self.total_weight = float(local)

    def effective(self, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (weight, bias) acting on the raw rows: the input transform folded in."""
        if self.scale is not None:
            w = w / self.scale.to(w.dtype)
        if self.center is not None:
            b = b - w @ self.center.to(w.dtype)
        return w, b

    def plain_gradient(
        self, grad_w: torch.Tensor, grad_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A gradient of :meth:`loss_gradient` re-expressed for the weights acting on the raw
        rows (``center`` and ``scale`` undone): what scikit-learn's ``tol`` is measured on."""
        if self.scale is not None:
            grad_w = grad_w * self.scale.to(grad_w.dtype)
        if self.center is not None:
            grad_w = grad_w + torch.outer(grad_b, self.center.to(grad_b.dtype))
        return grad_w, grad_b

    def largest_component(self, grad_w: torch.Tensor, grad_b: torch.Tensor) -> float:
        """The largest component of :meth:`plain_gradient` (what scikit-learn's ``tol``
        bounds)."""
        grad_w, grad_b = self.plain_gradient(grad_w, grad_b)
        return max(float(grad_w.abs().max()), float(grad_b.abs().max()))

    def loss_gradient(
        self, w: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(objective, gradient in ``w``, gradient in ``b``); ``b`` is zeros without a bias.

        Written out rather than through autograd: per block of rows one ``W @ x.T`` and one
        ``G @ x`` (the fast layouts for a thin weight matrix), with ``G = softmax - onehot``
        the gradient at the logits. A block of ``block_rows`` rows (all when None) is used by
        both products while it is still in the CPU's cache, so the rows are read from memory
        once per evaluation instead of twice: on CPU, blocks of about a thousand rows halve
        the time of an evaluation.
        """
        return self._evaluate(w, b, False, False)[:3]

    def problem_terms(
        self, w: torch.Tensor, b: torch.Tensor, curvature: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`loss_gradient` of independent binary problems (``one_vs_rest``, or
        ``binary``: one problem), problem by problem: (objective of each ``(K,)``, gradient in
        ``w``, gradient in ``b``, and with ``curvature`` each row's second derivative of each
        problem's loss in its logit, ``s_i c_ik p (1 - p) / sum_i s_i``, ``(K, N)``; else
        None). The objective is the sum of the ``K``; each row of the gradient is its own
        problem's, and the Hessian of problem ``k`` is ``X~^T diag(curvature[k]) X~`` (``X~``
        the rows with a column of ones for the bias) plus the penalty's
        (:meth:`hessian_vector`, :meth:`hessian_diagonal`, :meth:`hessians`). One pass over
        the rows, as :meth:`loss_gradient`."""
        if not (self.one_vs_rest or self.binary) or self.margin:
            raise ValueError("problem_terms is for independent binary problems")
        return self._evaluate(w, b, True, curvature)

    def _evaluate(self, w, b, per_problem: bool, want_curvature: bool):
        rows, y, sw, dtype = self.rows, self.y, self.sample_weight, self.dtype
        n = rows.shape[0]
        logistic = self.one_vs_rest or (self.binary and per_problem)
        step = n if self.block_rows is None else max(1, int(self.block_rows))
        w_eff, b_eff = self.effective(w.to(dtype), b.to(dtype))
        acc = rows.gradient_buffer(w_eff)
        grad_b = torch.zeros_like(b_eff)
        loss_dtype = self.loss_dtype or dtype
        data_loss = torch.zeros((), dtype=loss_dtype, device=rows.device)
        per_problem = (
            torch.zeros(w.shape[0], dtype=loss_dtype, device=rows.device) if per_problem else None
        )
        curvature = (
            torch.empty(w.shape[0], n, dtype=dtype, device=rows.device) if want_curvature else None
        )
        bias = b_eff.unsqueeze(1)
        weights = rows.weights(w_eff)
        # Made once, sliced per block (the last block may be shorter).
        minus_one = torch.full((1, min(step, n)), -1.0, dtype=dtype, device=rows.device)
        minus_margin = minus_one * self.margin if self.margin else None
        for lo, hi, xb in rows.iterate(step, dtype):
            labels = y[lo:hi].unsqueeze(0)
            k = hi - lo
            z = rows.logits(xb, weights, bias)  # (K, rows), or (1, rows) binary
            if logistic:  # independent binary problems, one per row of W
                losses, g, h = self._logistic(z, labels, curvature is not None)
                if sw is not None:
                    losses = losses * sw[lo:hi]
                    g.mul_(sw[lo:hi])
                    if h is not None:
                        h.mul_(sw[lo:hi])
                if per_problem is not None:
                    per_problem += losses.sum(1, dtype=loss_dtype)
                else:
                    data_loss += losses.sum(dtype=loss_dtype)
                if h is not None:
                    curvature[:, lo:hi] = h
                rows.add_gradient(acc, g, xb)
                grad_b += g.sum(1)
                continue
            if self.binary:
                z = torch.cat([torch.zeros_like(z), z])  # class 0's logit held at 0
            if minus_margin is not None:
                z.scatter_add_(0, labels, minus_margin[:, :k])
            lsm = torch.log_softmax(z, 0)
            picked = lsm.gather(0, labels)
            if sw is not None:
                picked = picked * sw[lo:hi]
            data_loss -= picked.sum() if loss_dtype == dtype else picked.sum(dtype=loss_dtype)
            g = lsm.exp_().scatter_add_(0, labels, minus_one[:, :k])
            if sw is not None:
                g.mul_(sw[lo:hi])
            if self.binary:
                g = g[1:]
            rows.add_gradient(acc, g, xb)
            grad_b += g.sum(1)
        grad_w = rows.gradient(acc)
        if per_problem is not None:
            data_loss = per_problem
        if self.parallel:
            if curvature is not None:
                raise ValueError("curvature is not summed over ranks")
            data_loss, grad_w, grad_b = self._all_reduce(data_loss, grad_w, grad_b)
        total = n if self.total_weight is None else self.total_weight
        if self.center is not None:
            grad_w -= torch.outer(grad_b, self.center.to(dtype))
        if self.scale is not None:
            grad_w /= self.scale.to(dtype)
        w = w.to(dtype)
        wr = w if self.penalty is None else w @ self.penalty
        penalty = (w * wr).sum() if per_problem is None else (w * wr).sum(1)
        loss = data_loss / total + 0.5 * self.weight_decay * penalty
        grad_w = grad_w.div_(total).add_(wr, alpha=self.weight_decay)
        grad_b = grad_b.div_(total)
        if not self.fit_intercept:
            grad_b.zero_()
        if curvature is not None:
            curvature.div_(total)
        return loss, grad_w, grad_b, curvature

    def hessian_vector(
        self, curvature: torch.Tensor, v_w: torch.Tensor, v_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each binary problem's Hessian (at the point :meth:`problem_terms` gave
        ``curvature`` for) times its own row of ``(v_w, v_b)``, all ``K`` in one pass over the
        rows: ``X~^T diag(curvature[k]) X~ v_k`` plus the weight decay's term; the bias part
        is zero without a bias. Raw rows only (no ``center``/``scale``)."""
        if self.center is not None or self.scale is not None:
            raise ValueError("hessian_vector takes raw rows (no center or scale)")
        rows, dtype = self.rows, self.dtype
        v_w, v_b = v_w.to(dtype), v_b.to(dtype)
        if not self.fit_intercept:
            v_b = torch.zeros_like(v_b)
        acc = rows.gradient_buffer(v_w)
        out_b = torch.zeros_like(v_b)
        weights, bias = rows.weights(v_w), v_b.unsqueeze(1)
        for lo, hi, xb in rows.iterate(self.block_rows, dtype):
            g = rows.logits(xb, weights, bias).mul_(curvature[:, lo:hi])
            rows.add_gradient(acc, g, xb)
            out_b += g.sum(1)
        out_w = rows.gradient(acc)
        wr = v_w if self.penalty is None else v_w @ self.penalty
        out_w = out_w.add_(wr, alpha=self.weight_decay)
        if not self.fit_intercept:
            out_b.zero_()
        return out_w, out_b

    def hessian_diagonal(self, curvature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The diagonal of each binary problem's Hessian of the data term (no penalty), in
        ``w`` ``(K, D)`` and in ``b`` ``(K,)``: ``curvature @ (X * X)``, one pass. Raw rows
        only."""
        if self.center is not None or self.scale is not None:
            raise ValueError("hessian_diagonal takes raw rows (no center or scale)")
        rows, dtype = self.rows, self.dtype
        acc = rows.gradient_buffer(torch.empty(curvature.shape[0], rows.shape[1], dtype=dtype))
        for lo, hi, xb in rows.iterate(self.block_rows, dtype):
            squares = xb.multiply(xb) if rows.sparse else xb * xb
            rows.add_gradient(acc, curvature[:, lo:hi], squares)
        out_b = curvature.sum(1) if self.fit_intercept else torch.zeros_like(curvature[:, 0])
        return rows.gradient(acc), out_b

    def hessians(self, curvature: torch.Tensor) -> torch.Tensor:
        """Each binary problem's whole Hessian of the data term, ``(K, D + 1, D + 1)``, the
        bias last (a column of ones; zero rows and columns without a bias), from dense raw
        rows: one batched product per block, ``K (D + 1)^2`` products per row. No penalty."""
        if self.rows.sparse or self.center is not None or self.scale is not None:
            raise ValueError("hessians takes dense raw rows")
        rows, dtype = self.rows, self.dtype
        d = rows.shape[1]
        k = curvature.shape[0]
        out = torch.zeros(k, d + 1, d + 1, dtype=dtype, device=rows.device)
        for lo, hi, xb in rows.iterate(self.block_rows, dtype):
            xa = torch.cat([xb, torch.ones(hi - lo, 1, dtype=dtype, device=xb.device)], 1)
            weighted = xa.t().unsqueeze(0) * curvature[:, lo:hi].unsqueeze(1)  # (K, D+1, rows)
            out.baddbmm_(weighted, xa.unsqueeze(0).expand(k, -1, -1))
        if not self.fit_intercept:
            out[:, d, :] = 0
            out[:, :, d] = 0
        return out

    # Kept logits: :meth:`problem_terms` in its three parts, for a solver that keeps each
    # problem's logits between evaluations (a step ``(d_w, d_b)`` changes them by
    # ``problem_logits(d_w, d_b)``, and a line search along it needs no pass over the rows).

    def _raw_one_process(self, what: str) -> None:
        if not (self.one_vs_rest or self.binary) or self.margin:
            raise ValueError(f"{what} is for independent binary problems")
        if self.center is not None or self.scale is not None:
            raise ValueError(f"{what} takes raw rows (no center or scale)")
        if self.parallel:
            raise ValueError(f"{what} is not summed over ranks")

    def problem_logits(self, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The logits ``W x_i + b`` of every row in each row's problem of ``(w, b)`` (any
        number of problems), ``(rows of w, N)`` in ``dtype``: one pass over the rows. ``b``
        counts as zero without a bias. Raw rows, one process."""
        self._raw_one_process("problem_logits")
        rows, dtype = self.rows, self.dtype
        w, b = w.to(dtype), b.to(dtype)
        if not self.fit_intercept:
            b = torch.zeros_like(b)
        out = torch.empty(w.shape[0], rows.shape[0], dtype=dtype, device=rows.device)
        weights, bias = rows.weights(w), b.unsqueeze(1)
        for lo, hi, xb in rows.iterate(self.block_rows, dtype):
            out[:, lo:hi] = rows.logits(xb, weights, bias)
        return out

    def problem_losses(
        self,
        z: torch.Tensor,
        problems: torch.Tensor | None = None,
        curvature: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """From the logits ``z`` of :meth:`problem_logits`, no pass over the rows: each
        problem's data term (``(P,)``, float64 or ``loss_dtype``; the weight decay's is not
        in it), the gradient at the logits ``(P, N)`` (``problem_gradient`` of it is the
        gradient in ``(w, b)``), and with ``curvature`` each row's second derivative
        ``(P, N)`` (as :meth:`problem_terms`'s); all divided by ``sum_i s_i``. ``problems``:
        the class numbers of ``z``'s rows (default: all ``K``, in order)."""
        self._raw_one_process("problem_losses")
        labels = self.y.unsqueeze(0)
        losses, g, h = self._logistic(z, labels, curvature, problems)
        sw = self.sample_weight
        if sw is not None:
            losses = losses * sw
            g.mul_(sw)
            if h is not None:
                h.mul_(sw)
        total = self.rows.shape[0] if self.total_weight is None else self.total_weight
        loss_dtype = self.loss_dtype or z.dtype
        f = losses.sum(1, dtype=loss_dtype) / total
        g.div_(total)
        if h is not None:
            h.div_(total)
        return f, g, h

    def problem_gradient(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The gradient in ``(w, b)`` of each problem from its gradient at the logits ``g``
        ``(P, N)`` (:meth:`problem_losses`): ``(g X, g 1)``, one pass; the bias part zero
        without a bias."""
        self._raw_one_process("problem_gradient")
        rows, dtype = self.rows, self.dtype
        g = g.to(dtype)
        acc = rows.gradient_buffer(torch.empty(g.shape[0], rows.shape[1], dtype=dtype))
        for lo, hi, xb in rows.iterate(self.block_rows, dtype):
            rows.add_gradient(acc, g[:, lo:hi], xb)
        grad_b = g.sum(1) if self.fit_intercept else torch.zeros_like(g[:, 0])
        return rows.gradient(acc).to(g.device), grad_b

    def working_set_hessians(
        self,
        curvature: torch.Tensor,
        columns: torch.Tensor,
        counts: torch.Tensor,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Each problem's Hessian of the data term on its own few coordinates (a working
        set), ``(P, M, M)`` in ``dtype``: problem ``p``'s ``X~_S^T diag(curvature[p]) X~_S``
        for its coordinates ``S = columns[p, :counts[p]]`` (``0..D-1`` the features, ``D``
        the bias: a column of ones), zero past ``counts[p]``. One pass over the rows; per
        block (a slice of at most 2^22 values) the columns any problem asks for are
        gathered once (dense, also from sparse rows), then one product per problem, so the
        cost is ``sum_p counts[p]^2`` per row. Sparse rows take the dense rows' products: the
        same rows dense or sparse give the same Hessians, and so the same fit (on the sparse
        text corpus scipy's sparse products per problem took 1.1x the time). Raw rows, one
        process."""
        self._raw_one_process("working_set_hessians")
        rows = self.rows
        d = rows.shape[1]
        p_count, m = columns.shape
        sizes = counts.tolist()
        valid = torch.arange(m, device=columns.device).unsqueeze(0) < counts.unsqueeze(1)
        used = torch.unique(columns[valid])
        features = used[used < d]
        position = torch.searchsorted(features, columns)
        position = torch.where(columns >= d, len(features), position).cpu()
        out = torch.zeros(p_count, m, m, dtype=dtype, device=rows.device)
        chunk = max(1, 2**22 // (len(features) + 1))
        picked = features.cpu().numpy() if rows.sparse else features.to(rows.device)
        h = curvature.to(dtype)
        for lo, hi, xb in rows.iterate(self.block_rows, dtype):
            for c0 in range(0, hi - lo, chunk):
                c1 = min(hi - lo, c0 + chunk)
                if rows.sparse:
                    sub = torch.from_numpy(xb[c0:c1][:, picked].toarray())
                else:
                    sub = xb[c0:c1].index_select(1, picked)
                ones = torch.ones(c1 - c0, 1, dtype=dtype, device=sub.device)
                sub = torch.cat([sub, ones], 1)
                for p, size in enumerate(sizes):
                    if size == 0:
                        continue
                    xp = sub[:, position[p, :size].to(sub.device)]
                    weighted = xp * h[p, lo + c0 : lo + c1].unsqueeze(1)
                    out[p, :size, :size].addmm_(xp.t(), weighted)
        if not self.fit_intercept:
            out.masked_fill_((columns >= d).unsqueeze(1) | (columns >= d).unsqueeze(2), 0.0)
        return out

    def _logistic(
        self,
        z: torch.Tensor,
        labels: torch.Tensor,
        curvature: bool,
        problems: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The rows' losses in each of the ``K`` binary problems ``(K, rows)``, the gradient
        at the logits ``(K, rows)``: ``sigmoid(z) - onehot``, and with ``curvature`` the
        second derivative ``p (1 - p)``; each problem weighted by its ``class_factors``.
        ``binary``: one problem, positive where the label is 1. ``problems``: the rows of
        ``z`` are these problems (class numbers) only, not all ``K``."""
        if self.binary:
            onehot = (labels == 1).to(z.dtype)
        elif problems is not None:
            onehot = (labels == problems.unsqueeze(1)).to(z.dtype)
        else:
            onehot = torch.zeros_like(z).scatter_(0, labels, 1.0)
        losses = torch.nn.functional.softplus(z) - z * onehot
        p = torch.sigmoid(z)
        h = p * (1 - p) if curvature else None
        g = p.sub_(onehot)
        if self.class_factors is not None:
            factors = self.class_factors.to(z.dtype)
            if problems is not None and not self.binary:
                factors = factors[:, problems]
            neg, pos = factors[0].unsqueeze(1), factors[1].unsqueeze(1)
            factor = neg + onehot * (pos - neg)
            losses, g = losses * factor, g * factor
            if h is not None:
                h = h * factor
        return losses, g, h

    def _all_reduce(self, data_loss, grad_w, grad_b):
        """One collective per evaluation: the loss sum and both gradient sums in one float64
        buffer, summed in rank order (:meth:`World.sum_same_`), so every rank has the same
        bits and takes the same steps."""
        m, kd = data_loss.numel(), grad_w.numel()
        buf = torch.cat([data_loss.double().reshape(-1), grad_w.double().reshape(-1)])
        buf = torch.cat([buf, grad_b.double()])
        self.world.sum_same_(buf, "summing the loss and its gradient")
        loss = buf[:m].view_as(data_loss).to(data_loss.dtype)
        gw = buf[m : m + kd].view_as(grad_w).to(grad_w.dtype)
        gb = buf[m + kd :].to(grad_b.dtype)
        return loss, gw, gb


def objective_and_gradient(
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    weight_decay: float,
    penalty: torch.Tensor | None = None,
    block_rows: int | None = None,
    margin: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mean_i CE(W x_i + b - margin e_{y_i}, y_i) + weight_decay / 2 * tr(W R W^T), and its
    gradients (W, b): :class:`SoftmaxLoss` with unit weights and no input transform."""
    loss = SoftmaxLoss(x, y, weight_decay, penalty=penalty, margin=margin, block_rows=block_rows)
    return loss.loss_gradient(w, b)


# Values per block of :func:`moments` over rows read from disk: its float64 temporaries stay
# near 2 MB each, whatever the width (a fit under a memory cap counts them).
STAT_VALUES = 1 << 18


def moments(
    loss: SoftmaxLoss, block_rows: int = 8192, diagonal: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (sample-weighted) second moment ``E[x x^T]`` (float64 ``(D, D)``; its diagonal
    ``E[x^2]``, ``(D,)``, when ``diagonal`` or for sparse rows) and mean ``E[x]`` of the raw
    rows, summed over the ranks: with the mean taken out, the curvature of the objective in
    ``W`` up to the softmax's."""
    rows, sw = loss.rows, loss.sample_weight
    n, d = rows.shape
    second = None
    total = torch.zeros(d + 1, dtype=torch.float64)  # weighted sums, weight
    dtype = torch.float64 if rows.sparse else loss.dtype
    if isinstance(rows, StreamedRows):  # float64 copies of a block: at most STAT_VALUES
        block_rows = max(1, min(block_rows, STAT_VALUES // max(1, d)))
    for lo, hi, xb in rows.iterate(block_rows, dtype):
        part = None if sw is None else sw[lo:hi]
        s, sums, weight = rows.statistics(xb, part, diagonal)
        second = s if second is None else second.add_(s)
        total[:d] += sums.cpu()
        total[d] += weight
    if second is None:  # no rows on this rank
        shape = (d,) if rows.sparse or diagonal else (d, d)
        second = torch.zeros(shape, dtype=torch.float64, device=rows.device)
    total = total.to(second.device)
    if loss.parallel:
        size = second.numel()
        buf = torch.cat([second.reshape(-1), total])
        loss.world.sum_same_(buf, "summing the input statistics")
        second, total = buf[:size].view(second.shape), buf[size:]
    weight = max(float(total[d]), 1e-300)
    return second / weight, total[:d] / weight


def default_block_rows(device: torch.device) -> int | None:
    """Rows per block of an evaluation: about a thousand on a CPU (both products on a block
    while it is cached), all rows at once on a GPU."""
    return 1024 if device.type == "cpu" else None
