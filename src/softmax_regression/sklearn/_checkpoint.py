"""``checkpoint=``: a fit of the estimators that can be stopped and continued.

Ours, not scikit-learn's (it has no equivalent). With a file path, a fit keeps where its
solver stands in that file: every :data:`CHECKPOINT_SECONDS` (``softmax_regression.sklearn.
CHECKPOINT_SECONDS``, read when a fit starts) and when the fit is stopped by Ctrl-C, SIGTERM
or SIGHUP (a :class:`KeyboardInterrupt`; while such a fit runs, SIGTERM and SIGHUP raise
:class:`softmax_regression.stopping.Terminated` unless the program handles them itself). A fit
started again with the same path, data and parameters goes on from the kept state, through the
steps the uninterrupted fit takes, to its answer; the file is removed when the fit completes.

What is kept: the solver's state (the iterate, L-BFGS's or OWL-QN's history, the stopping
test's count) and where the fit is (the unit of work: the one fit, or for
``LogisticRegressionCV`` the position in its path over folds, l1 ratios and Cs, then the
refit; the float32 or float64 phase; whether the full covariance's preconditioner is in use,
which is rebuilt from the rows), and the results finished before it (``LogisticRegressionCV``'s
paths, scores and iterations). The file is written beside its final name and renamed over it:
a kill at any moment leaves the last complete state, never a half-written one. A checkpoint of
other data or other parameters is refused with a :class:`~softmax_regression.errors.
ResumeError` naming what differs, never used.

One safetensors file: the tensors, and the metadata (JSON) that says whose state it is
(:func:`identity`) and where the fit was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import stopping
from .._io import atomic_write_bytes
from ..errors import ConfigError, ResumeError
from ..solver import LbfgsState, OwlqnState

FORMAT = "softmax-regression/sklearn-checkpoint"
FORMAT_VERSION = 1
# Parameters that change how a fit runs, not what it computes: a checkpoint of a fit on the
# GPU is continued on the CPU as well (the same steps, up to the last bits of the sums).
_NOT_COMPARED = ("checkpoint", "device", "n_jobs", "verbose")
_STATES = {"LbfgsState": LbfgsState, "OwlqnState": OwlqnState}


def check_path(value: Any) -> Path | None:
    """``checkpoint``'s value as a path (None: no checkpoint); a one-line ConfigError (a
    ValueError) for anything else."""
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise ConfigError(
            f"checkpoint must be None or a file path (str or os.PathLike), got {value!r}"
        )
    path = Path(value)
    if path.is_dir():
        raise ConfigError(f"checkpoint must be a file path, got the directory {str(path)!r}")
    return path


def _every() -> float:
    from . import CHECKPOINT_SECONDS  # the package's, so that setting it there takes effect

    return float(CHECKPOINT_SECONDS)


def _plain(value: Any) -> Any:
    """A parameter's value as JSON compares it: plain values as they are, the rest by their
    repr without memory addresses (a scorer function's differs between processes)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | int | bool | type(None)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def digest(*arrays: np.ndarray) -> str:
    """A fingerprint of index arrays (``LogisticRegressionCV``'s folds), each with its length."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.int64).reshape(-1)
        h.update(np.int64(len(a)).tobytes())
        h.update(a.view(np.uint8))
    return h.hexdigest()


def identity(
    estimator: Any, data: str, shape: tuple[int, int], name: str | None = None, **more: Any
) -> dict[str, Any]:
    """Whose state a checkpoint is: the estimator's class (or ``name``) and parameters (those
    that change the answer), the data's fingerprint (``_common._fingerprint``) and shape, and
    ``more`` (the classes, the folds)."""
    params = {
        k: _plain(v)
        for k, v in sorted(estimator.get_params(deep=False).items())
        if k not in _NOT_COMPARED
    }
    who = name or type(estimator).__name__
    return {"estimator": who, "shape": list(shape), "data": data, "params": params, **more}


def _difference(saved: dict[str, Any], now: dict[str, Any]) -> str | None:
    """What differs between a checkpoint's identity and this fit's, in words (None: nothing)."""
    if saved.get("estimator") != now["estimator"]:
        return f"written by {saved.get('estimator')}'s fit, not {now['estimator']}'s"
    if saved.get("shape") != now["shape"]:
        (n, d), (m, e) = saved.get("shape") or (None, None), now["shape"]
        return f"other data ({n} rows x {d} features there, {m} x {e} here)"
    if saved.get("data") != now["data"]:
        return "other data (the same shape, other values of X, y or sample_weight)"
    old, new = saved.get("params", {}), now["params"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"other parameters ({key}={old.get(key)!r} there, {new.get(key)!r} here)"
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key):
            return f"other {key} ({saved.get(key)!r} there, {now.get(key)!r} here)"
    return None


@dataclass
class Resume:
    """Where the stopped fit was: unit, phase (-1: OWL-QN's one), preconditioner (``full``:
    the full covariance's; ``cov``: the dtype that covariance was computed in, None when it
    was not, so that it is rebuilt to the same bits), iterations of that unit before the
    phase's solver started."""

    unit: int
    phase: int
    full: bool
    iterations: int
    cov: str | None = None


class Checkpoint:
    """The file of one fit (module docstring). ``results`` are the caller's arrays of finished
    work, written with each state (:meth:`restore` copies the stopped fit's into them), and
    ``notes`` anything JSON can hold beside them (after :meth:`open`, the stopped fit's)."""

    def __init__(self, path: Path, identity: dict[str, Any], device: torch.device) -> None:
        self.path, self.identity, self.device = path, identity, device
        self.every = _every()
        self.results: dict[str, np.ndarray] = {}
        self._kept_results: dict[str, np.ndarray] = {}  # the stopped fit's, for restore()
        self.notes: dict[str, Any] = {}
        self.resume: Resume | None = None
        self._state: Any = None  # the kept solver state, until the fit takes it
        self._latest: tuple[dict[str, Any], Any] | None = None
        self._written: Any = None
        self._written_at = time.monotonic()
        self.offers = 0  # iterations offered over the whole fit (the test pause counts them)

    @classmethod
    def open(
        cls, path: Path | None, identity: Callable[[], dict[str, Any]], device: torch.device
    ) -> Checkpoint | None:
        """The checkpoint at ``path`` for the fit ``identity()`` describes (None: no path, and
        ``identity`` is not called: it reads all the data): the kept state when the file
        exists (a ResumeError when it is another fit's or no checkpoint), else an empty one."""
        if path is None:
            return None
        checkpoint = cls(path, identity(), device)
        if path.exists():
            checkpoint._load()
        return checkpoint

    # ------------------------------------------------------------------ reading

    def _load(self) -> None:
        from safetensors.torch import load

        path = self.path
        try:
            tensors = load(path.read_bytes())
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                meta = json.loads(f.read(n)).get("__metadata__") or {}
        except OSError as e:
            raise ResumeError(f"{path}: cannot read the checkpoint ({e.strerror or e})") from None
        except Exception as e:  # safetensors' own errors, json's
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ResumeError(f"{path}: not a softmax-regression checkpoint ({detail})") from None
        if meta.get("format") != FORMAT:
            found = meta.get("format") or "no format tag"
            raise ResumeError(f"{path}: not a checkpoint of softmax_regression.sklearn ({found})")
        if meta.get("format_version") != str(FORMAT_VERSION):
            raise ResumeError(
                f"{path}: checkpoint format version {meta.get('format_version')!r} is not "
                f"supported (this version reads {FORMAT_VERSION}); delete it to start afresh"
            )
        try:
            saved = json.loads(meta["identity"])
            differs = _difference(saved, json.loads(json.dumps(self.identity)))
            if differs is not None:
                raise ResumeError(
                    f"{path}: the checkpoint of another fit: {differs}; delete it to start "
                    "this one afresh, or fit what it was written for"
                )
            position = json.loads(meta["position"])
            self.offers = int(position.pop("offers"))
            self.resume = Resume(**position)
            self._state = _state_from(json.loads(meta["solver"]), tensors, self.device)
            self.notes = json.loads(meta["notes"])
            self._kept_results = {
                k.removeprefix("results."): v.numpy()
                for k, v in tensors.items()
                if k.startswith("results.")
            }
        except (KeyError, TypeError, ValueError) as e:
            detail = f"{type(e).__name__}: {e}"
            raise ResumeError(f"{path}: an incomplete checkpoint ({detail})") from None

    def restore(self, name: str, into: np.ndarray) -> None:
        """Copy the stopped fit's ``results[name]`` into the caller's array ``into``."""
        kept = self._kept_results.get(name)
        if kept is None or kept.shape != into.shape:
            got = None if kept is None else kept.shape
            raise ResumeError(f"{self.path}: an incomplete checkpoint ({name}: {got})")
        into[...] = kept

    # ------------------------------------------------------------------ the fit's side

    def done(self, unit: int) -> bool:
        """Whether the stopped fit had finished ``unit`` (its results are in :attr:`results`)."""
        return self.resume is not None and unit < self.resume.unit

    def fit(self, unit: int) -> _FitCheckpoint:
        """What ``_Problem.fit`` is given for the unit of work ``unit``."""
        resume = self.resume if self.resume is not None and self.resume.unit == unit else None
        return _FitCheckpoint(self, unit, resume)

    def _offer(self, position: dict[str, Any], snapshot: Callable[[], Any]) -> None:
        self.offers += 1
        self._latest = (position, snapshot())
        if time.monotonic() - self._written_at >= self.every:
            self.write()
        stopping.pause_point("lbfgs", self.offers)  # (the test suite's; nothing otherwise)

    def write(self) -> None:
        """Write the latest state (nothing when no iteration has been offered yet)."""
        if self._latest is None or self._latest is self._written:
            return
        from safetensors.torch import save

        position, state = self._latest
        tensors, solver = _state_parts(state)
        for name, array in self.results.items():
            tensors[f"results.{name}"] = torch.from_numpy(np.ascontiguousarray(array))
        meta = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "identity": json.dumps(self.identity, sort_keys=True),
            "position": json.dumps({**position, "offers": self.offers}),
            "solver": json.dumps(solver),
            "notes": json.dumps(self.notes),
        }
        body = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)
        atomic_write_bytes(self.path, body)
        self._written, self._written_at = self._latest, time.monotonic()

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Around the fit: SIGTERM and SIGHUP stop it as Ctrl-C does (where the program left
        them to their default), the latest state is written when it is stopped so, and the
        file is removed when it completes."""
        with _terminating_raises():
            try:
                yield
            except KeyboardInterrupt:
                self.write()
                raise
        self.path.unlink(missing_ok=True)


class _FitCheckpoint:
    """One unit of work's side of a :class:`Checkpoint`: ``resume`` is where it was stopped
    (None: it starts afresh), :meth:`stage` the solver's ``checkpoint`` for each phase."""

    def __init__(self, owner: Checkpoint, unit: int, resume: Resume | None) -> None:
        self.owner, self.unit, self.resume = owner, unit, resume

    def stage(self, phase: int, full: bool, iterations: int, cov: str | None) -> _Stage:
        position = {"unit": self.unit, "phase": phase, "full": full, "iterations": iterations}
        position["cov"] = cov
        state = None
        r = self.resume
        if r is not None and (r.phase, r.full, r.iterations) == (phase, full, iterations):
            state, self.owner._state = self.owner._state, None  # taken once
            self.resume = None
        return _Stage(self.owner, position, state)


@dataclass
class _Stage:
    """What :func:`softmax_regression.solver.lbfgs` (or ``owlqn``) asks of its checkpoint."""

    owner: Checkpoint
    position: dict[str, Any]
    state: Any

    def offer(self, iteration: int, snapshot: Callable[[], Any]) -> None:
        self.owner._offer(self.position, snapshot)


# --------------------------------------------------------------------------- the solver's state


def _state_parts(state: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON) of an :class:`LbfgsState` or :class:`OwlqnState`: tensors and lists of
    tensors as tensors, numbers (``t`` and ``h_diag`` may be either) and counters in JSON."""
    tensors: dict[str, torch.Tensor] = {}
    body: dict[str, Any] = {"kind": type(state).__name__, "lists": {}, "tensors": [], "values": {}}
    for f in fields(state):
        value = getattr(state, f.name)
        if isinstance(value, torch.Tensor):
            tensors[f"solver.{f.name}"] = value
            body["tensors"].append(f.name)
        elif isinstance(value, list):
            for i, t in enumerate(value):
                tensors[f"solver.{f.name}.{i}"] = t
            body["lists"][f.name] = len(value)
        else:
            body["values"][f.name] = value
    return tensors, body


def _state_from(body: dict[str, Any], tensors: dict[str, torch.Tensor], device: torch.device):
    kind = _STATES[body["kind"]]
    values: dict[str, Any] = dict(body["values"])
    for name in body["tensors"]:
        values[name] = tensors[f"solver.{name}"].to(device)
    for name, n in body["lists"].items():
        values[name] = [tensors[f"solver.{name}.{i}"].to(device) for i in range(n)]
    return kind(**values)


# --------------------------------------------------------------------------- signals


@contextlib.contextmanager
def _terminating_raises() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`~softmax_regression.stopping.Terminated` (a
    KeyboardInterrupt) inside the block, where they have their default action (which ends the
    process with nothing written); a program's own handlers, an ignored SIGHUP and threads
    other than the main one are left alone. A second signal while the first is handled is
    ignored, so that the state is written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal raised
        if raised:
            return
        raised = True
        raise stopping.Terminated(signum)

    previous = {}
    for sig in stopping.TERMINATING:
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
