"""The book's recipe as a run on disk: ``runs/<name>/`` with everything a run leaves behind.

:func:`train_run` is what ``softmax-regression train`` does: load the data, write the run's
description, train with a resume checkpoint after every epoch, then the model, the history,
the evaluation and the figures; ``status.json`` says whether it completed, failed or was
interrupted. The files are listed in :data:`RUN_FILES`.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import stopping
from ..config import TrainConfig, resolve_device
from ..data import Dataset
from ..distributed import World
from ..errors import NonFiniteLossError, ResumeError, SoftmaxRegressionError
from ..evaluation import Evaluation, evaluate, predict_classes
from ..preprocessing import Preprocessing
from ..train import Progress, TrainResult, TrainState, check_world_size, fit
from . import artifacts, ranks
from .directory import DEFAULT_ROOT, check_not_running, check_resumable, make_run_dir, now
from .liveness import LiveStatus

PREDICTION_IMAGES = 12

RUN_FILES = {
    artifacts.CONFIG_JSON: "the settings, seed, device, library versions, data checksums",
    artifacts.STATUS_JSON: "running / completed / failed / interrupted / terminated, and why; "
    "who is writing the run (pid, host, heartbeat)",
    artifacts.METRICS_CSV: "per epoch: train loss, train acc, test acc, val acc, seconds",
    artifacts.HISTORY_JSON: "the same as JSON",
    artifacts.CHECKPOINT_FILE: "weights, optimizer and RNG state after the last epoch (--resume)",
    artifacts.MODEL_FILE: "the trained weights (safetensors; only when the run completed)",
    artifacts.MODEL_JSON: "classes, input shape, preprocessing, final metrics",
    "curves.png": "the book's figure: train loss, train acc, test acc by epoch",
    "predictions.png": "the first test images, titled true / predicted label",
    "confusion.png": "the test confusion matrix with class names",
    "weights.png": "the ten weight vectors as 28x28 images",
}


@dataclass
class RunOutcome:
    """A finished run: its directory, the training result and the test evaluation."""

    directory: Path
    result: TrainResult
    evaluation: Evaluation | None
    files: list[Path] = field(default_factory=list)


def load_data(config: TrainConfig) -> tuple[Dataset, Dataset]:
    """The (train, test) splits ``config`` names: its ``data`` description, or Fashion-MNIST."""
    from ..data.spec import DataSpec

    loaded = DataSpec.from_dict(config.data).load(data_dir=config.data_dir)
    return loaded.train, loaded.test


# Past this many entries a data fingerprint is one digest of all of them (an image folder
# may list a file per image).
MAX_FINGERPRINT_ENTRIES = 16


def fingerprint(train: Dataset, test: Dataset) -> dict[str, Any]:
    """What a model file says about the data it was trained on: name, sizes, checksums."""
    import hashlib

    sha = {**train.sha256, **test.sha256}
    if len(sha) > MAX_FINGERPRINT_ENTRIES:
        h = hashlib.sha256()
        for k in sorted(sha):
            h.update(f"{k}\0{sha[k]}\0".encode())
        sha = {"all": h.hexdigest()}
    out = {
        "name": train.name,
        "train_examples": len(train),
        "test_examples": len(test),
        "input_shape": list(train.input_shape),
        "sha256": sha,
    }
    if train.feature_names is not None:  # a table's columns: the report names the features
        out["feature_names"] = list(train.feature_names)
    return out


def model_file_fields(train: Dataset, test: Dataset, prep: Preprocessing) -> dict[str, Any]:
    """The keyword arguments of :func:`artifacts.save_model` that describe the data."""
    return {
        "classes": train.classes,
        "input_shape": train.input_shape,
        "image_rule": train.image_rule,
        "preprocessing": prep,
        "data": fingerprint(train, test),
    }


class _Writer:
    """Writes files on a background thread: each checkpoint's fsync (~8 ms here) overlaps the
    next epoch instead of adding to it. Writes happen in submission order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], Any] | threading.Event | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="run-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if isinstance(job, threading.Event):  # wait(): everything before it is done
                job.set()
            elif self._error is None:
                try:
                    job()
                except BaseException as e:  # re-raised in the caller's thread by close()
                    self._error = e

    def submit(self, job: Callable[[], Any]) -> None:
        self._queue.put(job)

    def wait(self) -> None:
        """Wait until every write submitted so far is done (or was abandoned on an error)."""
        done = threading.Event()
        self._queue.put(done)
        while self._thread.is_alive() and not done.wait(0.05):
            pass

    def close(self) -> None:
        """Wait for every submitted write; re-raise the first one that failed (once)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error


class _PlotWorker:
    """Draws the run's figures in a helper process started before the data loads.

    Importing matplotlib takes about as long as training; in the helper (which never imports
    torch) it happens on the other core while this process trains, instead of after. In this
    process a thread doing the import would instead hold the interpreter lock in turns with
    the training loop and slow every step. If the helper fails in any way, the figures are
    drawn here after all.
    """

    def __init__(self) -> None:
        from ..plots.run import worker_command

        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.proc = subprocess.Popen(
                worker_command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError:
            self.proc = None

    def draw(self, directory: Path, request: dict[str, Any]) -> list[Path]:
        from ..plots.run import render_run

        if self.proc is not None:
            payload = json.dumps({"directory": str(directory), **request}).encode()
            try:
                out, _ = self.proc.communicate(payload, timeout=300)
                answer = json.loads(out or b"{}")
                if self.proc.returncode == 0 and "files" in answer:
                    return [Path(f) for f in answer["files"]]
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.cancel()
        return render_run(directory, request)

    def cancel(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def train_run(
    config: TrainConfig,
    *,
    out: str | Path | None = None,
    root: str | Path = DEFAULT_ROOT,
    resume: str | Path | None = None,
    train: Dataset | None = None,
    test: Dataset | None = None,
    progress: Progress | None = None,
    plots: bool = True,
    world: World | None = None,
    options: dict[str, Any] | None = None,
) -> RunOutcome:
    """Train ``config`` into a run directory (new, or ``resume``'s) and write every artifact.

    ``options`` (JSON) are recorded in config.json for a later resume to keep (the command
    line's ``--no-plots``, ``--no-report``).

    ``train``/``test`` may be passed in to reuse loaded data. Once ``status.json`` says
    ``running``, every way out leaves a final status with its reason (:func:`final_status`):
    a non-finite loss, an error while saving, a failed background write, Ctrl-C. A run that
    did not complete keeps the history of its checkpointed epochs and the last good
    checkpoint, and has no model file; the error is re-raised.

    With a ``world`` of several ranks, call it on every rank: the run is trained
    data-parallel, rank 0 alone writes the directory (``ranks.py``), and the other ranks
    return the same result with no evaluation and no files.
    """
    if world is not None and world.parallel:
        check_world_size(world, config)
        ranks.agree(world, config, out=out, resume=resume)
        if not world.is_main:
            return _follow(config, world, train, test)
        device = world.device
    else:
        device = resolve_device(config.device)  # before anything is read or written
    painter = _PlotWorker() if plots else None
    try:
        return _train_run(
            config, device, out, root, resume, train, test, progress, painter, world, options
        )
    finally:
        if painter is not None:
            painter.cancel()


def _follow(
    config: TrainConfig, world: World, train: Dataset | None, test: Dataset | None
) -> RunOutcome:
    """A rank other than 0: train from the state rank 0 hands over; write nothing."""
    directory, state = ranks.receive(world)
    if train is None or test is None:
        loaded = load_data(config)
        train, test = train or loaded[0], test or loaded[1]
    result = fit(config, train, test, state=state, world=world)
    return RunOutcome(directory, result, None)


def _prepare(
    config: TrainConfig,
    out: str | Path | None,
    root: str | Path,
    resume: str | Path | None,
    train: Dataset | None,
    test: Dataset | None,
) -> tuple[Path, TrainState | None, Dataset, Dataset, dict[str, str]]:
    """The run's directory (resumed or new), its starting state, the data and its hashes."""
    state: TrainState | None = None
    if resume is not None:
        directory = Path(resume)
        state, saved = artifacts.load_checkpoint(directory)
        check_resumable(directory, saved, config)
        if state.epoch >= config.epochs:
            raise ResumeError(
                f"{directory} already has {state.epoch} epochs; pass --epochs above "
                f"{state.epoch} to train further"
            )
    if train is None or test is None:
        loaded = load_data(config)
        train, test = train or loaded[0], test or loaded[1]
    sha = {**train.sha256, **test.sha256}
    if resume is not None:
        old_sha = artifacts.read_run_config(directory).get("data_sha256") or {}
        changed = sorted(k for k in sha if k in old_sha and old_sha[k] != sha[k])
        if changed:
            raise ResumeError(f"{directory} was trained on different data ({changed[0]} differs)")
        # A model file exists only beside "completed"; the checkpoint keeps these weights.
        for name in (artifacts.MODEL_FILE, artifacts.MODEL_JSON):
            (directory / name).unlink(missing_ok=True)
    else:
        directory = make_run_dir(out, root)
    return directory, state, train, test, sha


def _train_run(
    config: TrainConfig,
    device: torch.device,
    out: str | Path | None,
    root: str | Path,
    resume: str | Path | None,
    train: Dataset | None,
    test: Dataset | None,
    progress: Progress | None,
    painter: _PlotWorker | None,
    world: World | None = None,
    options: dict[str, Any] | None = None,
) -> RunOutcome:
    try:
        if resume is not None:
            check_not_running(resume)  # (a restart's own directory is its dead job's)
        resume = ranks.after_restart(world, config, out, resume)
        directory, state, train, test, sha = _prepare(config, out, root, resume, train, test)
    except BaseException as e:
        ranks.hand_over_error(world, e)
        raise
    ranks.hand_over(world, directory, state)
    artifacts.write_run_config(
        directory,
        config.to_dict(),
        device=str(device),
        data_sha256=sha,
        threads=1 if device.type == "cpu" else None,
        options=options,
    )
    started = now()
    extra = {"ranks": world.size} if world is not None and world.parallel else {}
    live = LiveStatus(directory)
    live.start(started=started, epochs_completed=state.epoch if state else 0, **extra)

    writer = _Writer()
    # The last state whose checkpoint is on disk: what an unfinished run's history stops at.
    saved: list[TrainState] = [state] if state is not None else []
    cfg_dict = config.to_dict()

    def on_epoch(snapshot: TrainState) -> None:
        def job() -> None:
            artifacts.save_checkpoint(directory, snapshot, cfg_dict)
            saved[:] = [snapshot]
            live.update(epochs_completed=snapshot.epoch)

        writer.submit(job)
        if stopping.pausing("epoch", snapshot.epoch):
            writer.wait()  # the test's pause finds this epoch's checkpoint on disk

    try:
        result = fit(
            config, train, test, state=state, progress=progress, on_epoch=on_epoch, world=world
        )
        final = result.final
        ev = evaluate(result.model, test, normalize=result.preprocessing)
        metrics = {
            "epochs": len(result.history),
            "train_loss": final.train_loss,
            "train_acc": final.train_acc,
            "test_acc": final.test_acc,
            **({"val_acc": final.val_acc} if final.val_acc is not None else {}),
            "test_macro_f1": ev.macro_f1,
        }
        writer.submit(lambda: artifacts.write_history(directory, result.history))
        writer.submit(
            lambda: artifacts.save_model(
                directory,
                result.model,
                metrics=metrics,
                config=cfg_dict,
                **model_file_fields(train, test, result.preprocessing),
            )
        )
        if painter is not None:
            painter.draw(directory, plot_request(result, ev, test, result.preprocessing))
        writer.close()
        live.end(
            "completed",
            started=started,
            finished=now(),
            epochs_completed=len(result.history),
            metrics=metrics,
            **extra,
        )
    except BaseException as e:
        _end_unfinished(directory, e, writer, saved, started, live)
        raise
    files = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    return RunOutcome(directory, result, ev, files)


def final_status(error: BaseException) -> tuple[str, str]:
    """The status a run that ended with ``error`` is left at, and the reason written beside it.

    Ctrl-C and a closed output pipe (``softmax-regression train | head``: whoever read the
    output stopped reading) are the user's choice, so the run is ``interrupted`` and resumable;
    SIGTERM and SIGHUP (a scheduler's time limit, a closed terminal: :mod:`..stopping`) leave
    it ``terminated`` (the signal in the reason, and as ``signal`` in the status), as
    resumable; anything else is a ``failed`` run, with the error's own one-line message.
    """
    if isinstance(error, KeyboardInterrupt) or stopping.received() is not None:
        status, extra = stopping.outcome(error)
        return status, f"terminated by {extra['signal']}" if extra else "interrupted"
    if isinstance(error, BrokenPipeError):
        return "interrupted", "output closed (broken pipe)"
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return "failed", f"{where}{error.strerror}"
    if isinstance(error, SoftmaxRegressionError) and str(error):
        return "failed", str(error)
    return "failed", f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _end_unfinished(
    directory: Path,
    error: BaseException,
    writer: _Writer,
    saved: list[TrainState],
    started: str,
    live: LiveStatus,
) -> None:
    """Leave a run that stopped with ``error`` in a final state: pending writes finished (a
    write that fails now is not allowed to hide ``error``), the history of the epochs whose
    checkpoint was taken, no model file (one exists only beside ``completed``), and the
    status with its reason. Best effort: if the disk refuses even this, ``error`` still
    propagates and is what the caller sees."""
    with contextlib.suppress(Exception):
        writer.close()
    history = saved[0].history if saved else None
    status, reason = final_status(error)
    extra: dict[str, Any] = {}
    if isinstance(error, NonFiniteLossError):
        extra = {"epoch": error.epoch, "step": error.step}
    with contextlib.suppress(OSError):
        if history is not None:
            artifacts.write_history(directory, history)
        for name in (artifacts.MODEL_FILE, artifacts.MODEL_JSON):
            (directory / name).unlink(missing_ok=True)
    if status != "failed":
        extra = {"signal": reason.rsplit(" ", 1)[-1]} if status == "terminated" else {}
        if history is not None:  # a checkpoint to continue from: the command says how
            error.run_directory = directory  # type: ignore[attr-defined]
    live.stop()
    with contextlib.suppress(OSError):
        live.end(
            status,
            started=started,
            finished=now(),
            epochs_completed=len(history) if history is not None else 0,
            error=reason,
            **extra,
        )


def plot_request(
    result: TrainResult,
    ev: Evaluation,
    test: Dataset,
    normalize: bool | Preprocessing = True,
) -> dict[str, Any]:
    """What :func:`~softmax_regression.plots.run.render_run` needs, as plain JSON-able
    numbers (no pictures of the inputs when they are features)."""
    names = list(test.classes)
    history = result.history
    columns = ("epoch", "train_loss", "train_acc", "test_acc", "val_acc")
    request: dict[str, Any] = {
        "history": {c: history.series(c) for c in columns},
        "epochs": result.config.epochs,
        "classes": names,
        "confusion": ev.confusion,
        "input_shape": list(test.input_shape),
    }
    if not test.is_image:
        return request
    n = min(PREDICTION_IMAGES, len(test))
    imgs = test.subset(torch.arange(n)).images.cpu() if n else test.images[:0].cpu()
    pred = predict_classes(result.model, imgs, normalize).cpu().tolist()
    request.update(
        weight=result.model.weight.detach().cpu().tolist(),
        images=imgs.tolist(),
        true=[names[t] for t in test.labels[:n].cpu().tolist()],
        predicted=[names[p] for p in pred],
    )
    return request


def write_plots(
    directory: str | Path,
    result: TrainResult,
    ev: Evaluation,
    test: Dataset,
    normalize: bool | Preprocessing = True,
) -> list[Path]:
    """The four figures of a run (in this process), from its returned numbers."""
    from ..plots.run import render_run

    return render_run(directory, plot_request(result, ev, test, normalize))
