"""A training run on disk: ``runs/<name>/`` with everything a run leaves behind.

:func:`train_run` is what ``softmax-regression train`` does: load the data, write the run's
description, train with a resume checkpoint after every epoch, then the model, the history,
the evaluation and the figures; ``status.json`` says whether it completed, failed or was
interrupted. The files are listed in :data:`RUN_FILES`.
"""

from __future__ import annotations

import datetime as _dt
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import artifacts
from .config import TrainConfig, resolve_device
from .data import FashionMNIST, load_fashion_mnist
from .errors import ConfigError, NonFiniteLossError, ResumeError
from .evaluation import Evaluation, evaluate, predict_classes
from .train import Progress, TrainResult, TrainState, fit

DEFAULT_ROOT = "runs"
# What a resumed run may change: more epochs, and where the (checksum-verified) data lives.
RESUMABLE_CHANGES = ("epochs", "data_dir")
PREDICTION_IMAGES = 12

RUN_FILES = {
    artifacts.CONFIG_JSON: "the settings, seed, device, library versions, data checksums",
    artifacts.STATUS_JSON: "running / completed / failed / interrupted, and why",
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


def default_name(now: _dt.datetime | None = None) -> str:
    return (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")


def make_run_dir(out: str | Path | None = None, root: str | Path = DEFAULT_ROOT) -> Path:
    """A new, empty run directory: ``out``, or ``root/<date-time>`` (suffixed if taken)."""
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"{path} already exists and is not empty; choose a new --out")
    else:
        base = Path(root) / default_name()
        path, k = base, 1
        while path.exists():
            k += 1
            path = base.with_name(f"{base.name}-{k}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create run directory {path}: {e.strerror or e}") from None
    return path


def load_data(config: TrainConfig) -> tuple[FashionMNIST, FashionMNIST]:
    return load_fashion_mnist("train", config.data_dir), load_fashion_mnist("test", config.data_dir)


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The settings of the run in ``run_dir`` with ``overrides`` applied; only
    :data:`RESUMABLE_CHANGES` may differ, anything else is a :class:`ResumeError`."""
    saved = artifacts.read_run_config(run_dir)["config"]
    try:
        base = TrainConfig.from_dict(saved)
    except ConfigError as e:
        raise ResumeError(f"{run_dir}: its config.json is not usable ({e})") from None
    config = base.replace(**(overrides or {}))
    check_resumable(run_dir, saved, config)
    return config


def check_resumable(run_dir: str | Path, saved: dict[str, Any], config: TrainConfig) -> None:
    wanted = config.to_dict()
    for key in sorted(set(saved) | set(wanted)):
        if key in RESUMABLE_CHANGES or saved.get(key) == wanted.get(key):
            continue
        raise ResumeError(
            f"{run_dir} was trained with {key}={saved.get(key)!r}, not {wanted.get(key)!r}; "
            f"a resumed run keeps every setting except {', '.join(RESUMABLE_CHANGES)}"
        )


class _Writer:
    """Writes files on a background thread: each checkpoint's fsync (~8 ms here) overlaps the
    next epoch instead of adding to it. Writes happen in submission order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], Any] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="run-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is None:
                try:
                    job()
                except BaseException as e:  # re-raised in the caller's thread by close()
                    self._error = e

    def submit(self, job: Callable[[], Any]) -> None:
        self._queue.put(job)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _warm_matplotlib() -> threading.Thread:
    """Import the plotting stack on a thread while the data loads (which mostly waits on
    decompression and hashing with the GIL released), instead of after training."""

    def work() -> None:
        try:
            import matplotlib.backends.backend_agg  # noqa: F401
            import matplotlib.figure  # noqa: F401
        except Exception:  # pragma: no cover - plotting reports its own error later
            pass

    t = threading.Thread(target=work, name="import-matplotlib", daemon=True)
    t.start()
    return t


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def train_run(
    config: TrainConfig,
    *,
    out: str | Path | None = None,
    root: str | Path = DEFAULT_ROOT,
    resume: str | Path | None = None,
    train: FashionMNIST | None = None,
    test: FashionMNIST | None = None,
    progress: Progress | None = None,
    plots: bool = True,
) -> RunOutcome:
    """Train ``config`` into a run directory (new, or ``resume``'s) and write every artifact.

    ``train``/``test`` may be passed in to reuse loaded data. A non-finite loss leaves the
    directory marked failed (status.json, the history so far, the last good checkpoint) and
    no model file; the error is re-raised.
    """
    device = resolve_device(config.device)  # before anything is read or written
    warm = _warm_matplotlib() if plots else None
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
    else:
        directory = make_run_dir(out, root)

    artifacts.write_run_config(
        directory,
        config.to_dict(),
        device=str(device),
        data_sha256=sha,
        threads=1 if device.type == "cpu" else None,
    )
    started = _now()
    artifacts.write_status(directory, "running", started=started)

    writer = _Writer()
    last: list[TrainState] = [state] if state is not None else []
    cfg_dict = config.to_dict()

    def on_epoch(snapshot: TrainState) -> None:
        last[:] = [snapshot]
        writer.submit(lambda: artifacts.save_checkpoint(directory, snapshot, cfg_dict))

    try:
        result = fit(config, train, test, state=state, progress=progress, on_epoch=on_epoch)
    except (NonFiniteLossError, KeyboardInterrupt) as e:
        failed = isinstance(e, NonFiniteLossError)
        writer.close()
        history = last[0].history if last else None
        if history is not None:
            artifacts.write_history(directory, history)
        artifacts.write_status(
            directory,
            "failed" if failed else "interrupted",
            started=started,
            finished=_now(),
            epochs_completed=len(history) if history is not None else 0,
            error=str(e) if failed else "interrupted",
            **({"epoch": e.epoch, "step": e.step} if failed else {}),
        )
        raise
    except BaseException:
        writer.close()
        raise

    final = result.final
    ev = evaluate(result.model, test, normalize=config.normalize)
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
            normalize=config.normalize,
            classes=test.classes,
            metrics=metrics,
            config=cfg_dict,
        )
    )
    files: list[Path] = []
    if plots:
        if warm is not None:
            warm.join()
        files += write_plots(directory, result, ev, test, config.normalize)
    writer.close()
    artifacts.write_status(
        directory,
        "completed",
        started=started,
        finished=_now(),
        epochs_completed=len(result.history),
        metrics=metrics,
    )
    files = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    return RunOutcome(directory, result, ev, files)


def write_plots(
    directory: str | Path,
    result: TrainResult,
    ev: Evaluation,
    test: FashionMNIST,
    normalize: bool = True,
) -> list[Path]:
    """The four figures of a run, from its returned numbers."""
    from . import plots

    directory = Path(directory)
    n = min(PREDICTION_IMAGES, len(test))
    imgs = test.images[:n].cpu()
    pred = predict_classes(result.model, imgs, normalize).cpu().tolist()
    true = test.labels[:n].cpu().tolist()
    names = test.classes
    return [
        plots.save(plots.curves(result.history, result.config.epochs), directory / "curves.png"),
        plots.save(
            plots.predictions(imgs, [names[t] for t in true], [names[p] for p in pred]),
            directory / "predictions.png",
        ),
        plots.save(plots.confusion(ev.confusion, names), directory / "confusion.png"),
        plots.save(plots.weights(result.model.weight, names), directory / "weights.png"),
    ]
