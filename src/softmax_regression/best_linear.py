"""The best linear classifier we know how to fit honestly: one ``Linear(D, K)`` on the raw inputs.

Designed on Fashion-MNIST (``Linear(784, 10)`` on raw pixels); any :class:`Dataset` fits the
same way, uint8 images (pixels in [0, 1]) or float features (taken as they are).

What helps a convex model, and nothing else (no hidden layer, no hand-made features):

* per-pixel standardisation with statistics of the images being fitted (pixels that never vary
  keep scale 1, so they cannot blow up). Images are standardised into a float copy; float
  features are not copied: the standardisation is folded into the parameters of every
  evaluation (:class:`~softmax_regression.linear_loss.SoftmaxLoss`'s ``center`` and ``scale``);
* mean cross-entropy plus an L2 penalty on the weights (not the bias), measured in the metric
  of the images' own pixel correlations ``C = Q diag(c) Q^T``::

      weight_decay / 2 * sum_k r_k ||W q_k||^2,   r_k = ((c_k + floor) / (mean(c) + floor))^-power

  With ``power = 0`` this is the plain ``weight_decay / 2 * ||W||^2``. With ``power = 1`` (the
  default) it is the Gaussian prior ``W ~ N(0, C + floor I)``: weights along directions in
  which images really vary are cheap, weights along pixel noise are dear. A generalised
  ridge (Tikhonov) penalty: the model stays one linear layer, the problem stays convex;
* the cross-entropy taken with an additive margin: each image's true-class logit is lowered
  by ``margin`` inside the loss (training only; the model predicts with its plain logits), so
  the loss keeps separating classes until the true one leads by about ``margin``, between
  the cross-entropy (margin 0) and a multiclass hinge. Still convex. The model's softmax
  probabilities come out sharper than calibrated ones;
* minimised full-batch with L-BFGS (strong Wolfe line search). The solver works on ``W = V P``
  with ``P = (C + weight_decay R)^(-1/2)``, ``R`` the penalty's matrix: the same objective and
  the same minimum, but a far better conditioned problem for L-BFGS;
* the weight decay chosen on a seeded, stratified validation split by validation accuracy
  only, going from strong to weak decay with warm starts (``power``, ``floor`` and ``margin``
  were fixed the same way, on validation splits, when the recipe was designed:
  ``benchmarks/bench_objective.py``);
* a refit on all training images with the chosen decay, rescaled by ``n_select / n_all`` so
  the penalty keeps the same weight relative to the (summed) data term.

:func:`select_weight_decay` and :func:`fit_best_linear` are never given the test split; only
:func:`run_best_linear` evaluates it, once, after everything is fixed. Standardisation is folded
into the weights, so the result is a plain linear layer on ``[0, 1]`` pixels (or on the raw
features), the same kind of model the book's recipe trains and saves.

Under ``torchrun`` (a ``world`` of several ranks) one fit is data-parallel: every rank draws
the same validation split, holds a contiguous share of the rows of each split it fits or
scores (:func:`softmax_regression.distributed.share`), and every number taken from the data
is a sum over the ranks in float64 (the standardisation's mean and std, the pixel
correlations, the accuracies and losses, each loss and gradient evaluation): every rank
computes the same numbers and takes the same L-BFGS steps, which are the single-process
ones up to the rounding of the sums.

The objective and the solver are :mod:`softmax_regression.solver`'s, shared with the
scikit-learn estimators; this module holds the recipe (standardisation, the penalty's metric,
the margin, the choice of weight decay).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from . import solver as _solver
from . import stopping
from .config import resolve_device
from .data import FashionMNIST
from .distributed import World, share
from .errors import ConfigError, NonFiniteLossError
from .linear_loss import (
    STAT_VALUES,
    SoftmaxLoss,
    StreamedRows,
    moments,
    objective_and_gradient,
)
from .solver import Solution

__all__ = [
    "BestLinearConfig",
    "BestLinearModel",
    "BestLinearRun",
    "Candidate",
    "FitProgress",
    "Selection",
    "Solution",
    "Spectrum",
    "Standardizer",
    "evaluate_linear",
    "fit_best_linear",
    "objective_and_gradient",
    "pixels",
    "run_best_linear",
    "select_weight_decay",
    "solve",
]

NUM_PIXELS = 28 * 28  # Fashion-MNIST's; the functions below take their shapes from the data
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class BestLinearConfig:
    """Every knob of the best-linear recipe, with the values it was designed with."""

    # L2 strengths tried on the validation split, searched strong -> weak with warm starts:
    # steps of 2 around where validation accuracy peaked (5e-4 to 1e-3) on validation splits.
    weight_decays: tuple[float, ...] = (4e-3, 2e-3, 1e-3, 5e-4, 2.5e-4)
    # The penalty's metric (module docstring): 0 = plain L2, 1 = prior N(0, C + floor I).
    # Chosen on validation splits of seeds 0-5 (benchmarks/bench_objective.py): 1 beat 0 on all.
    penalty_power: float = 1.0
    penalty_floor: float = 0.01  # added to the correlation eigenvalues (mean eigenvalue ~1)
    # Additive margin of the loss (module docstring): 0 = plain cross-entropy. Chosen on the
    # same validation splits: 2 beat 0 on every one (0.5, 1, 3, 4, 6 tried too).
    margin: float = 2.0
    val_split: int = 10_000  # images held out (seeded, stratified) to choose the weight decay
    select_iters: int = 40  # L-BFGS iterations per candidate (warm-started): enough to rank
    # L-BFGS iterations of the final fit, from the chosen candidate: near the minimum
    # objective (BENCHMARKS.md) while a whole run stays well under 30 s on 2 CPU cores.
    refit_iters: int = 160
    history_size: int = 50  # L-BFGS memory (after 60 refit steps: 40% smaller gap than 20)
    dtype: str = "float32"  # float32 halves the memory traffic of float64 at no accuracy cost
    seed: int = 0  # draws the validation split and the initial weights
    device: str = "auto"  # "auto" = cuda when available, else cpu (as the trainer)
    min_std: float = 1e-6  # a pixel whose std is below this is only centred, not scaled
    # Rows per block of an evaluation on CPU (both products on a block while it is cached:
    # half the time of whole-matrix products here); a GPU takes all rows at once.
    block_rows: int = 1024

    def __post_init__(self) -> None:
        if not self.weight_decays:
            raise ConfigError("best-linear needs at least one weight decay to choose from")
        for wd in self.weight_decays:
            if not (isinstance(wd, int | float) and math.isfinite(wd) and wd > 0):
                raise ConfigError(f"weight decays must be positive finite numbers, got {wd!r}")
        for name in ("val_split", "select_iters", "refit_iters", "history_size", "block_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"{name.replace('_', ' ')} must be a positive integer, got {value!r}"
                )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be one of auto, cpu, cuda, got {self.device!r}")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        if not (self.min_std > 0):
            raise ConfigError(f"min std must be positive, got {self.min_std!r}")
        for name in ("penalty_power", "penalty_floor", "margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name.replace('_', ' ')} must be a number, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(
                    f"{name.replace('_', ' ')} must be a finite number >= 0, got {value!r}"
                )
        if self.penalty_power > 0 and self.penalty_floor == 0:
            raise ConfigError("penalty floor must be positive when penalty power is")

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def blocks(self, device: torch.device) -> int | None:
        return self.block_rows if device.type == "cpu" else None


def pixels(data: FashionMNIST, dtype: torch.dtype = torch.float32) -> torch.Tensor | StreamedRows:
    """(N, inputs) as the model sees them after Flatten: pixels in [0, 1], or the features
    as they are (not copied when they are already ``dtype``); features read from disk block
    by block (a :class:`~softmax_regression.data.streamed.StreamedDataset`) stay there, as
    :class:`~softmax_regression.linear_loss.StreamedRows` that every pass reads."""
    if getattr(data, "streamed", False):
        return StreamedRows(data.source, None if data.index is None else data.index.numpy())
    x = data.images.reshape(len(data), data.num_inputs)  # (a rank's share may have no rows)
    if not data.is_image:
        return x.to(dtype)
    return x.to(dtype).div_(255)


@dataclass(frozen=True)
class Standardizer:
    """x -> (x - mean) / std per pixel, from the statistics of the images it was fitted on."""

    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,), 1 where a pixel (almost) never varies

    @classmethod
    def fit(
        cls, x: torch.Tensor, min_std: float = 1e-6, *, world: World | None = None
    ) -> Standardizer:
        """The statistics of ``x``'s rows; with a ``world`` of several ranks, of every rank's
        rows together (``x`` is this rank's share): float64 sums over the ranks, the same
        mean and std on every rank. Rows read from disk (:class:`StreamedRows`) are read
        twice, block by block (the mean, then the squared deviations from it)."""
        if _parallel(world) or isinstance(x, StreamedRows):
            std, mean = _std_mean(x, world if _parallel(world) else None)
        else:
            # In x's dtype: whatever (mean, std) are used, folding them into the weights is
            # exact.
            std, mean = torch.std_mean(x, dim=0)
        std = torch.where(std < min_std, torch.ones_like(std), std)
        return cls(mean, std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def fold(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (weight, bias) on raw [0, 1] pixels giving the same logits as on standardised ones.

        W x_s + b = (W / s) x + (b - (W / s) . m); computed in float64.
        """
        w = weight.double() / self.std.double()
        b = bias.double() - w @ self.mean.double()
        return w, b

    def unfold(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The inverse of :meth:`fold`: raw-pixel (weight, bias) -> standardised-pixel ones."""
        w = weight.double() * self.std.double()
        b = bias.double() + weight.double() @ self.mean.double()
        return w, b


def _parallel(world: World | None) -> bool:
    return world is not None and world.parallel


_STAT_ROWS = 8192  # rows per float64 block of the statistics summed over the ranks


def _blocks(x: torch.Tensor | StreamedRows):
    """``x``'s rows in float64 blocks of :data:`_STAT_ROWS`, in order (one pass)."""
    if isinstance(x, StreamedRows):  # float64 blocks of about 2 MB, whatever the width
        step = max(1, min(_STAT_ROWS, STAT_VALUES // max(1, x.shape[1])))
        for _, _, xb in x.iterate(step, torch.float64):
            yield xb
        return
    for lo in range(0, x.shape[0], _STAT_ROWS):
        yield x[lo : lo + _STAT_ROWS].double()


def _std_mean(
    x: torch.Tensor | StreamedRows, world: World | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.std_mean(x, dim=0)`` of all ranks' rows together (``x`` is this rank's share;
    ``world`` None: one process): the mean, then the sum of squared deviations from it, each
    summed in float64 over the blocks and the ranks; returned in ``x``'s dtype (float64 for
    rows read from disk)."""
    d = x.shape[1]
    total = torch.zeros(d + 1, dtype=torch.float64, device=x.device)  # column sums, rows
    for xb in _blocks(x):
        total[:d] += xb.sum(0)
    total[d] = float(x.shape[0])
    if world is not None:
        world.sum_same_(total, "summing the inputs' means")
    n = total[d]
    mean = total[:d] / n
    squares = torch.zeros(d, dtype=torch.float64, device=x.device)
    for xb in _blocks(x):
        squares += (xb - mean).square_().sum(0)
    if world is not None:
        world.sum_same_(squares, "summing the inputs' variances")
    std = (squares / (n - 1)).sqrt_()  # torch.std's default: the unbiased estimate
    if isinstance(x, StreamedRows):  # the caller's dtype, from float64
        return std, mean
    return std.to(x.dtype), mean.to(x.dtype)


class Spectrum:
    """Eigen-decomposition ``C = Q diag(c) Q^T`` of the pixel correlations of standardised images.

    Gives the penalty's matrix ``R`` and the solver's preconditioner, both diagonal in ``Q``.
    """

    def __init__(
        self,
        x: torch.Tensor | None,
        power: float = 0.0,
        floor: float = 0.01,
        *,
        correlation: torch.Tensor | None = None,
    ) -> None:
        # x is standardised on its own rows (mean 0), so x^T x / N is their correlation matrix
        # (or it is given as ``correlation``). float32 products, accumulated by BLAS; eigh in
        # float64.
        if correlation is None:
            correlation = (x.T.float() @ x.float()).double() / x.shape[0]
        c = correlation.double()
        eigenvalues, self.eigenvectors = torch.linalg.eigh(c)
        self.eigenvalues = eigenvalues.clamp_min(0)
        self.power = float(power)
        if self.power == 0:
            self.relative = torch.ones_like(self.eigenvalues)
        else:
            mean = self.eigenvalues.mean()
            self.relative = ((self.eigenvalues + floor) / (mean + floor)).pow(-self.power)

    def _matrix(self, diagonal: torch.Tensor) -> torch.Tensor:
        q = self.eigenvectors
        return (q * diagonal) @ q.T

    def penalty(self) -> torch.Tensor | None:
        """``R`` of the penalty ``weight_decay / 2 * tr(W R W^T)``; None for plain L2 (R = I)."""
        return None if self.power == 0 else self._matrix(self.relative)

    def preconditioner(self, weight_decay: float, power: float) -> torch.Tensor:
        """``(C + weight_decay R)^power``: the curvature of the objective, up to the softmax."""
        return self._matrix((self.eigenvalues + weight_decay * self.relative).pow(power))


def solve(
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    max_iter: int,
    *,
    init: tuple[torch.Tensor, torch.Tensor],
    spectrum: Spectrum | None = None,
    history_size: int = 20,
    precondition: bool = True,
    block_rows: int | None = None,
    margin: float = 0.0,
    center: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    world: World | None = None,
    checkpoint: Any = None,
    dtype: torch.dtype | None = None,
) -> Solution:
    """Minimise mean cross-entropy (with ``margin``) + weight_decay / 2 * tr(W R W^T) over
    (W, b) with L-BFGS (:func:`softmax_regression.solver.minimize`).

    ``x`` is (N, D) standardised inputs, or raw ones with their ``center`` and ``scale``
    (standardisation folded into each evaluation, no copy); ``R`` is ``spectrum``'s penalty
    (the identity when there is no spectrum), and ``spectrum`` also preconditions the
    problem unless ``precondition`` is false: the solver works on ``W = V P`` with
    ``P = (C + weight_decay R)^(-1/2)``. Everything in ``x``'s dtype. With a ``world`` of
    several ranks, ``x`` and ``y`` are this rank's rows and every evaluation sums the loss and
    its gradient over the ranks (``spectrum`` must then be the same on every rank).
    ``checkpoint`` is :func:`softmax_regression.solver.lbfgs`'s (a fit that can be continued).
    ``x`` may be rows read from disk (:class:`StreamedRows`): every evaluation is then one
    pass over the files, in ``dtype`` (default: ``x``'s).
    """
    dtype = x.dtype if dtype is None else dtype
    penalty = None if spectrum is None else spectrum.penalty()
    penalty = None if penalty is None else penalty.to(dtype)
    pre = None
    if spectrum is not None and precondition:
        pre = (
            spectrum.preconditioner(weight_decay, -0.5),
            spectrum.preconditioner(weight_decay, 0.5),
        )
    loss = SoftmaxLoss(
        x,
        y,
        weight_decay,
        penalty=penalty,
        margin=margin,
        block_rows=block_rows,
        center=None if center is None else center.to(dtype),
        scale=None if scale is None else scale.to(dtype),
        world=world if _parallel(world) else None,
        dtype=dtype,
    )

    def nonfinite(value: float, evaluation: int) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"best-linear: the L-BFGS objective became {value} at evaluation "
            f"{evaluation} (weight decay {weight_decay:g})"
        )

    resumed = getattr(checkpoint, "state", None)
    sol = _solver.minimize(
        loss,
        init,
        max_iter,
        preconditioner=pre,
        history_size=history_size,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        on_nonfinite=nonfinite,
        checkpoint=checkpoint,
    )
    if resumed is not None:  # the evaluations before it stopped count too
        sol.evaluations += resumed.evaluations
    return sol


def _accuracy_and_loss(
    w: torch.Tensor,
    b: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    world: World | None = None,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of logits ``W x + b`` over the rows of ``x``; with a
    ``world`` of several ranks over every rank's rows (the counts and the loss summed in
    float64: the same numbers on every rank). Rows read from disk: one pass, block by block,
    in ``w``'s dtype."""
    if isinstance(x, StreamedRows):
        return _streamed_accuracy_and_loss(w, b, x, y, world)
    with torch.no_grad():
        z = torch.addmm(b.to(x.dtype).unsqueeze(1), w.to(x.dtype), x.t())  # (K, N)
        right = (z.argmax(0) == y).double()
        picked = torch.log_softmax(z, 0).gather(0, y.unsqueeze(0)).double()
        if not _parallel(world):
            return float(right.mean()), float(-picked.mean())
        sums = torch.stack(
            [right.sum(), -picked.sum(), torch.tensor(float(y.shape[0]), device=right.device)]
        )
        world.sum_same_(sums, "summing the accuracy and the loss")
    return float(sums[0] / sums[2]), float(sums[1] / sums[2])


def _streamed_accuracy_and_loss(
    w: torch.Tensor, b: torch.Tensor, x: StreamedRows, y: torch.Tensor, world: World | None
) -> tuple[float, float]:
    sums = torch.zeros(3, dtype=torch.float64)  # right, minus log-likelihood, rows
    with torch.no_grad():
        for lo, hi, xb in x.iterate(8192, w.dtype):
            z = torch.addmm(b.unsqueeze(1), w, xb.t())
            labels = y[lo:hi].to(z.device)
            sums[0] += float((z.argmax(0) == labels).sum())
            sums[1] -= float(torch.log_softmax(z, 0).gather(0, labels.unsqueeze(0)).double().sum())
        sums[2] = float(x.shape[0])
    if _parallel(world):
        sums = world.sum_same_(sums.to(world.device), "summing the accuracy and the loss").cpu()
    if sums[2] == 0:
        return float("nan"), float("nan")
    return float(sums[0] / sums[2]), float(sums[1] / sums[2])


@dataclass(frozen=True)
class Candidate:
    weight_decay: float
    val_acc: float
    val_loss: float
    train_acc: float  # on the images it was fitted on (the training part of the split)
    objective: float
    evaluations: int
    seconds: float = field(compare=False)  # timing is no part of what was chosen


@dataclass(frozen=True)
class Selection:
    """How the weight decay was chosen: every candidate's validation numbers and the winner."""

    candidates: list[Candidate]
    chosen_weight_decay: float
    n_fit: int  # images the candidates were fitted on
    n_val: int  # images they were scored on
    seed: int
    rule: str = "highest validation accuracy; ties go to the stronger weight decay"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitProgress:
    """Where a fit stands, to continue it after it was stopped: the weight decays already
    tried (their candidates and solutions, in the solver's coordinates), the stage now being
    solved (candidate ``k`` of the sweep, strong to weak; ``len(weight_decays)``: the refit)
    and that solver's state (:class:`~softmax_regression.solver.LbfgsState`).

    ``keep(progress)`` is offered the fit's progress after L-BFGS iterations, at most every
    ``every`` seconds (None: never): what a run directory writes, so that a fit of hours
    stopped by anything is continued from there and ends where the uninterrupted fit ends.
    """

    candidates: list[Candidate] = field(default_factory=list)
    solutions: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    at_stage: int = 0
    lbfgs: _solver.LbfgsState | None = None
    iterations: int = 0  # L-BFGS iterations so far, every stage together
    keep: Callable[[FitProgress], None] | None = field(default=None, repr=False, compare=False)
    every: float = field(default=180.0, compare=False)
    _kept_at: float = field(default_factory=time.monotonic, repr=False, compare=False)

    def stage(self, stage: int) -> _Stage:
        """The solver's checkpoint for ``stage``: resumed from :attr:`lbfgs` when that is
        where the fit stopped."""
        resume = self.lbfgs if stage == self.at_stage else None
        if stage != self.at_stage:
            self.at_stage, self.lbfgs = stage, None
        return _Stage(self, resume)

    def _offer(self, snapshot: Callable[[], _solver.LbfgsState]) -> None:
        self.iterations += 1
        pausing = stopping.pausing("lbfgs", self.iterations)
        due = self.every is not None and time.monotonic() - self._kept_at >= self.every
        if self.keep is not None and (due or pausing):
            self.lbfgs = snapshot()
            self.keep(self)
            self._kept_at = time.monotonic()
        stopping.pause_point("lbfgs", self.iterations)


@dataclass
class _Stage:
    """What :func:`softmax_regression.solver.lbfgs` asks of its ``checkpoint``."""

    progress: FitProgress
    state: _solver.LbfgsState | None

    def offer(self, iteration: int, snapshot: Callable[[], _solver.LbfgsState]) -> None:
        self.state = None  # (read once, at the start)
        self.progress._offer(snapshot)


def _initial(
    seed: int,
    dtype: torch.dtype,
    device: torch.device,
    num_classes: int = 10,
    num_inputs: int = NUM_PIXELS,
):
    # The book's N(0, 0.01) weights; the bias starts at 0 because the objective is convex and
    # the starting point only changes how long L-BFGS takes, not where it ends.
    g = torch.Generator().manual_seed(int(seed))
    w = torch.randn(num_classes, num_inputs, generator=g, dtype=torch.float64).mul_(0.01)
    return w.to(device=device, dtype=dtype), torch.zeros(num_classes, dtype=dtype, device=device)


@dataclass
class _Inputs:
    """One split's inputs for the solver: standardised (images, a float copy), or raw with
    the standardisation to fold into each evaluation (features, no standardised copy)."""

    x: torch.Tensor | StreamedRows  # rows read from disk stay there (features only)
    scaler: Standardizer
    folded: bool
    world: World | None = None  # several ranks: x is this rank's share of the split's rows
    dtype: torch.dtype | None = None  # what the rows are computed in

    @classmethod
    def of(
        cls, data: FashionMNIST, dtype: torch.dtype, min_std: float, world: World | None = None
    ) -> _Inputs:
        """``data``'s inputs (this rank's share of them with a ``world``), standardised with
        the statistics of all of them."""
        world = world if _parallel(world) else None
        x = pixels(data, dtype)
        if isinstance(x, StreamedRows):
            x.device = data.labels.device
            scaler = Standardizer.fit(x, min_std, world=world)
            scaler = Standardizer(scaler.mean.to(dtype), scaler.std.to(dtype))
            return cls(x, scaler, True, world, dtype)
        scaler = Standardizer.fit(x, min_std, world=world)
        if data.is_image:
            return cls(scaler(x).contiguous(), scaler, False, world, dtype)
        return cls(x.contiguous(), scaler, True, world, dtype)

    def other(self, data: FashionMNIST, dtype: torch.dtype) -> torch.Tensor | StreamedRows:
        """Another split's inputs under this split's standardisation, held the same way."""
        x = pixels(data, dtype)
        if isinstance(x, StreamedRows):
            return x
        return x.contiguous() if self.folded else self.scaler(x).contiguous()

    @property
    def transform(self) -> dict[str, torch.Tensor | None]:
        if not self.folded:
            return {}
        return {"center": self.scaler.mean, "scale": self.scaler.std}

    def spectrum(self, power: float, floor: float) -> Spectrum:
        if not self.folded and self.world is None:
            return Spectrum(self.x, power, floor)
        # E[x x^T] (and E[x]) over every rank's rows, summed in float64.
        loss = SoftmaxLoss(
            self.x, torch.zeros(0, dtype=torch.long), world=self.world, dtype=self.dtype
        )
        second, mean = moments(loss)
        if not self.folded:  # standardised on these rows: E[x x^T] is their correlation
            return Spectrum(None, power, floor, correlation=second)
        std = self.scaler.std.double()
        correlation = (second - torch.outer(mean, mean)) / torch.outer(std, std)
        return Spectrum(None, power, floor, correlation=correlation)

    def model(self, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) acting on the inputs as held here."""
        if not self.folded:
            return w, b
        ws = w / self.scaler.std.to(w.dtype)
        return ws, b - ws @ self.scaler.mean.to(w.dtype)


@dataclass
class _Selected:
    """What the refit reuses from the selection: its answer and its weights."""

    selection: Selection
    weight: torch.Tensor  # the chosen candidate, folded onto raw [0, 1] pixels (float64)
    bias: torch.Tensor


def _rank_share(data: FashionMNIST, world: World | None) -> FashionMNIST:
    """This rank's contiguous share of ``data``'s rows (all of them without several ranks)."""
    if not _parallel(world):
        return data
    if getattr(data, "streamed", False):  # reads only the files its rows lie in
        return data.share(world.size, world.rank)
    lo, hi = share(len(data), world.size, world.rank)
    return data.subset(torch.arange(lo, hi, device=data.device))


def _select(
    fit: FashionMNIST,
    val: FashionMNIST,
    config: BestLinearConfig,
    world: World | None = None,
    progress: FitProgress | None = None,
) -> _Selected:
    world = world if _parallel(world) else None
    progress = progress or FitProgress()
    dtype, device = config.torch_dtype, resolve_device(config.device)
    n_fit, n_val = len(fit), len(val)
    fit, val = _rank_share(fit, world).to(device), _rank_share(val, world).to(device)
    inputs = _Inputs.of(fit, dtype, config.min_std, world)
    x_fit, scaler = inputs.x, inputs.scaler
    x_val = inputs.other(val, dtype)
    spectrum = inputs.spectrum(config.penalty_power, config.penalty_floor)
    state = _initial(config.seed, dtype, device, fit.num_classes, fit.num_inputs)
    candidates: list[Candidate] = progress.candidates  # those a resumed fit has already
    solutions = {
        c.weight_decay: tuple(t.to(device=device, dtype=dtype) for t in wb)
        for c, wb in zip(candidates, progress.solutions, strict=True)
    }
    if candidates:
        state = solutions[candidates[-1].weight_decay]
    for stage, wd in enumerate(sorted(config.weight_decays, reverse=True)):  # warm starts
        if stage < len(candidates):
            continue
        sol = solve(
            x_fit,
            fit.labels,
            wd,
            config.select_iters,
            init=state,
            spectrum=spectrum,
            history_size=config.history_size,
            block_rows=config.blocks(device),
            margin=config.margin,
            world=world,
            checkpoint=progress.stage(stage),
            dtype=dtype,
            **inputs.transform,
        )
        state = solutions[wd] = (sol.weight, sol.bias)
        held = inputs.model(sol.weight, sol.bias)
        val_acc, val_loss = _accuracy_and_loss(*held, x_val, val.labels, world)
        train_acc, _ = _accuracy_and_loss(*held, x_fit, fit.labels, world)
        candidates.append(
            Candidate(wd, val_acc, val_loss, train_acc, sol.objective, sol.evaluations, sol.seconds)
        )
        progress.solutions.append(state)
    best = max(candidates, key=lambda c: (c.val_acc, c.weight_decay))
    selection = Selection(candidates, best.weight_decay, n_fit, n_val, int(config.seed))
    w, b = scaler.fold(*solutions[best.weight_decay])
    return _Selected(selection, w, b)


def _split(train: FashionMNIST, config: BestLinearConfig) -> tuple[FashionMNIST, FashionMNIST]:
    from .data.split import split_validation  # the trainer's: same seed, same held-out images

    if not 0 < config.val_split < len(train):
        raise ConfigError(
            f"validation split of {config.val_split} images needs more than that to train on "
            f"({len(train)} available)"
        )
    fit_idx, val_idx = split_validation(
        config.val_split, train.labels, config.seed, train.num_classes
    )
    return (
        train.subset(fit_idx.to(train.device), split="train"),
        train.subset(val_idx.to(train.device), split="val"),
    )


def select_weight_decay(
    fit: FashionMNIST,
    val: FashionMNIST,
    config: BestLinearConfig = BestLinearConfig(),
    *,
    world: World | None = None,
) -> Selection:
    """Fit every candidate weight decay on ``fit``, score it on ``val``, keep the best.

    Only ever sees the two splits it is given; the test split is no argument of it. With a
    ``world`` of several ranks, call it on every rank with the whole of both splits: each
    rank fits and scores its share of the rows, and every rank returns the same selection.
    """
    return _select(fit, val, config, world).selection


@dataclass
class BestLinearModel:
    """The result of the recipe: a linear layer on [0, 1] pixels and how it was obtained."""

    weight: torch.Tensor  # (K, D) float32, acts on pixels in [0, 1] (or raw features)
    bias: torch.Tensor  # (K,) float32
    selection: Selection
    weight_decay: float  # used for the refit: chosen * n_fit / n_all
    train_acc: float  # all training images, final model
    train_loss: float  # mean cross-entropy on all training images (no penalty)
    objective: float  # mean cross-entropy + weight_decay / 2 * ||W||^2 (standardised W)
    evaluations: int  # loss + gradient passes over the data, selection and refit together
    select_seconds: float
    refit_seconds: float
    config: BestLinearConfig = field(default_factory=BestLinearConfig)
    is_image: bool = True  # fitted on images (pixels), else on float features

    @property
    def seconds(self) -> float:
        return self.select_seconds + self.refit_seconds

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, classes) logits for uint8 images (N, [C,] H, W), float pixels in [0, 1] or
        float features (N, D)."""
        x = images.reshape(images.shape[0], -1)
        if not x.is_floating_point():
            x = x.float().div(255)
        return torch.nn.functional.linear(x.float(), self.weight, self.bias)

    def how_chosen(self) -> str:
        s = self.selection
        n_all = s.n_fit + s.n_val
        tried = ", ".join(f"{c.weight_decay:g}: {c.val_acc:.4f}" for c in s.candidates)
        c = self.config
        inputs, rows, row = (
            ("pixel", "images", "image")
            if self.is_image
            else (
                "feature",
                "examples",
                "example",
            )
        )
        metric = (
            "plain L2"
            if c.penalty_power == 0
            else f"L2 in the {inputs}-correlation metric, power {c.penalty_power:g}, "
            f"floor {c.penalty_floor:g}"
        )
        metric += f", cross-entropy with margin {c.margin:g} (fixed in advance)"
        return (
            f"{metric}; weight decay {s.chosen_weight_decay:g} chosen by validation accuracy "
            f"on {s.n_val} {rows} held out from {n_all} (seeded, stratified, seed {s.seed}; "
            f"tried {tried}); "
            f"refit on all {n_all} training {rows} with weight decay {self.weight_decay:.4g} "
            f"(= {s.chosen_weight_decay:g} x {s.n_fit}/{n_all}, the same penalty per {row}); "
            f"the test split was not used"
        )


def fit_best_linear(
    train: FashionMNIST,
    config: BestLinearConfig = BestLinearConfig(),
    *,
    world: World | None = None,
    progress: FitProgress | None = None,
) -> BestLinearModel:
    """Choose the weight decay on a validation split of ``train``, then refit on all of it.

    The test split is no argument: nothing here can look at it. With a ``world`` of several
    ranks (torchrun), call it on every rank with the whole training split: the fit is
    data-parallel (module docstring) and every rank returns the same model. ``progress``
    (:class:`FitProgress`) continues a fit that was stopped and offers where it stands for
    keeping, so that a long fit can be continued in turn.
    """
    world = world if _parallel(world) else None
    progress = progress or FitProgress()
    # All of torch's threads (unlike the trainer's small steps): each evaluation is a series of
    # 1024-row matrix products, and two threads took 30% less time than one here.
    start = time.perf_counter()
    fit, val = _split(train, config)
    chosen = _select(fit, val, config, world, progress)
    del fit, val
    selection = chosen.selection
    select_seconds = time.perf_counter() - start

    start = time.perf_counter()
    dtype, device = config.torch_dtype, resolve_device(config.device)
    n_all = len(train)
    train = _rank_share(train, world).to(device)
    inputs = _Inputs.of(train, dtype, config.min_std, world)
    x, scaler = inputs.x, inputs.scaler
    wd = selection.chosen_weight_decay * selection.n_fit / n_all
    # Warm start from the chosen candidate, re-expressed for this standardisation; the
    # minimum is unique (strictly convex), so this only saves iterations.
    w0, b0 = scaler.unfold(chosen.weight, chosen.bias)
    sol = solve(
        x,
        train.labels,
        wd,
        config.refit_iters,
        init=(w0.to(dtype), b0.to(dtype)),
        # The penalty's metric from the images fitted now, as in the selection.
        spectrum=inputs.spectrum(config.penalty_power, config.penalty_floor),
        history_size=config.history_size,
        block_rows=config.blocks(device),
        margin=config.margin,
        world=world,
        checkpoint=progress.stage(len(config.weight_decays)),
        dtype=dtype,
        **inputs.transform,
    )
    held = inputs.model(sol.weight, sol.bias)
    train_acc, train_loss = _accuracy_and_loss(*held, x, train.labels, world)
    del x
    w, b = scaler.fold(sol.weight, sol.bias)
    return BestLinearModel(
        weight=w.float(),
        bias=b.float(),
        selection=selection,
        weight_decay=wd,
        train_acc=train_acc,
        train_loss=train_loss,
        objective=sol.objective,
        evaluations=sol.evaluations + sum(c.evaluations for c in selection.candidates),
        select_seconds=select_seconds,
        refit_seconds=time.perf_counter() - start,
        config=config,
        is_image=train.is_image,
    )


@dataclass(frozen=True)
class BestLinearRun:
    """One seed of the recipe: the model, its test numbers (reporting only) and its timings."""

    model: BestLinearModel
    test_acc: float
    test_loss: float
    seconds: float  # fit (selection + refit) + test evaluation

    def metrics(self) -> dict[str, float]:
        m = self.model
        best = next(
            c for c in m.selection.candidates if c.weight_decay == m.selection.chosen_weight_decay
        )
        return {
            "train_loss": m.train_loss,
            "train_acc": m.train_acc,
            "val_acc": best.val_acc,
            "test_acc": self.test_acc,
            "test_loss": self.test_loss,
            "weight_decay": m.weight_decay,
            "seconds": self.seconds,
        }


def evaluate_linear(
    weight: torch.Tensor, bias: torch.Tensor, data: FashionMNIST
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of a raw-input linear layer on one split."""
    x = pixels(data.to(weight.device), torch.float32)
    return _accuracy_and_loss(weight.float(), bias.float(), x, data.labels.to(weight.device))


def run_best_linear(
    train: FashionMNIST, test: FashionMNIST, config: BestLinearConfig = BestLinearConfig()
) -> BestLinearRun:
    """Fit with :func:`fit_best_linear` (no test data in sight), then evaluate test once."""
    start = time.perf_counter()
    model = fit_best_linear(train, config)
    test_acc, test_loss = evaluate_linear(model.weight, model.bias, test)
    return BestLinearRun(model, test_acc, test_loss, time.perf_counter() - start)
