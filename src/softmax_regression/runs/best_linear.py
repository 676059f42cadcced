"""The best-linear recipe as a run on disk.

:func:`best_linear_run` is what ``softmax-regression train --recipe best-linear`` does: choose
the weight decay on a validation split, refit (:mod:`softmax_regression.best_linear`, which
writes nothing), save the model in the book model's format, evaluate the test split once, and
write down how everything was chosen.

Under torchrun (a ``world`` of several ranks) the one run is fitted data-parallel on every
rank (:func:`softmax_regression.best_linear.fit_best_linear`); rank 0 alone creates and writes
the run directory and evaluates the test split, as the book's recipe does (``ranks.py``).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_json, atomic_write_text
from ..best_linear import BestLinearConfig, BestLinearModel, fit_best_linear
from ..config import TrainConfig, resolve_device
from ..data import Dataset
from ..distributed import World
from ..evaluation import Evaluation, evaluate, predict_classes
from ..model import SoftmaxRegression
from ..preprocessing import Preprocessing
from . import artifacts
from .book import PREDICTION_IMAGES, final_status, load_data, model_file_fields
from .directory import make_run_dir, now
from .liveness import LiveStatus
from .ranks import on_main

BEST_LINEAR_JSON = "best_linear.json"
CANDIDATES_CSV = "candidates.csv"


def as_module(weight: torch.Tensor, bias: torch.Tensor) -> SoftmaxRegression:
    """The book's ``Flatten + Linear(inputs, classes)`` holding these weights (on raw inputs:
    pixels in [0, 1], or features as they are)."""
    model = SoftmaxRegression.untouched_rng(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        model.weight.copy_(weight)
        model.bias.copy_(bias)
    return model.eval()


@dataclass
class BestLinearOutcome:
    directory: Path
    model: BestLinearModel
    evaluation: Evaluation | None  # None on the ranks other than 0, which evaluate nothing
    metrics: dict[str, Any]
    files: list[Path] = field(default_factory=list)


def best_linear_run(
    config: BestLinearConfig | None = None,
    *,
    out: str | Path | None = None,
    root: str | Path = "runs",
    train: Dataset | None = None,
    test: Dataset | None = None,
    data_dir: str | None = None,
    data: dict[str, Any] | None = None,
    plots: bool = True,
    world: World | None = None,
) -> BestLinearOutcome:
    """Fit the best-linear recipe into a run directory; the test split is evaluated once.

    Files: ``config.json``, ``status.json``, ``best_linear.json`` (every candidate's validation
    numbers, the choice and how it was made, the final numbers labelled validation / train /
    test), ``candidates.csv``, ``model.safetensors`` + ``model.json`` (the same format as the
    book's recipe), and unless ``plots`` is false ``weights.png``, ``confusion.png``,
    ``predictions.png``, ``selection.png`` (a model of features: ``confusion.png`` and
    ``selection.png``). ``data`` describes where the data comes from
    (``DataSpec.to_dict()``; None: Fashion-MNIST, from ``data_dir``); it is read unless
    ``train`` and ``test`` are given.

    With a ``world`` of several ranks, call it on every rank with the same settings and data:
    the fit is data-parallel, the directory rank 0's; the other ranks write nothing and
    return the same model, with no evaluation and the metrics of the fit only.
    """
    config = config or BestLinearConfig()
    parallel = world is not None and world.parallel
    if parallel:
        device = world.device
        settings = {**dataclasses.asdict(config), "out": None if out is None else str(out)}
        config = dataclasses.replace(config, device=device.type)
    else:
        device = resolve_device(config.device)
        config = dataclasses.replace(config, device=str(device))
    if train is None or test is None:
        loaded = load_data(TrainConfig(data=data, data_dir=data_dir))
        train = train if train is not None else loaded[0]
        test = test if test is not None else loaded[1]
    if parallel:
        # Every rank fits its share of the same rows with the same settings, or none does.
        world.check_same({**settings, "data": data, **_fingerprint(train)})
    cfg = {"recipe": "best-linear", **dataclasses.asdict(config)}
    if data is not None:
        cfg["data"] = data

    def prepare() -> tuple[Path, str]:
        directory = make_run_dir(out, root)
        artifacts.write_run_config(
            directory,
            cfg,
            device=str(device),
            data_sha256={**train.sha256, **test.sha256},
            threads=1 if device.type == "cpu" else None,
        )
        started = now()
        extra = {"ranks": world.size} if parallel else {}
        live = LiveStatus(directory)
        live.start(started=started, resumable=False, **extra)
        live_status[:] = [live]
        return directory, started

    # Rank 0 prepares the directory; when it cannot, the others end with its error.
    live_status: list[LiveStatus] = []  # rank 0's, which alone writes status.json
    directory, started = on_main(world, prepare, "creating the run directory")
    if parallel and not world.is_main:
        return _follow(directory, train, config, world)
    (live,) = live_status
    start = time.perf_counter()
    try:
        # Sees the training split only; data-parallel over the ranks when there are several.
        fit_on = {"world": world} if parallel else {}
        model = fit_best_linear(train, config, **fit_on)
        module = as_module(model.weight, model.bias)
        ev = evaluate(module, test, normalize=True)  # the one look at the test split
        seconds = time.perf_counter() - start
        chosen = next(
            c
            for c in model.selection.candidates
            if c.weight_decay == model.selection.chosen_weight_decay
        )
        metrics = {
            "train_loss": model.train_loss,
            "train_acc": model.train_acc,
            "val_acc": chosen.val_acc,
            "test_acc": ev.accuracy,
            "test_macro_f1": ev.macro_f1,
            "weight_decay": model.weight_decay,
            "seconds": seconds,
        }
        artifacts.save_model(
            directory,
            module,
            metrics=metrics,
            config=cfg,
            **model_file_fields(train, test, Preprocessing(scale=True)),
        )
        ranks = world.size if parallel else None
        report = _report(model, ev, metrics, train, ranks)
        atomic_write_json(directory / BEST_LINEAR_JSON, report)
        atomic_write_text(directory / CANDIDATES_CSV, _candidates_csv(model))
        if plots:
            _plots(directory, model, module, ev, test)
        live.end("completed", started=started, finished=now(), metrics=metrics)
    except BaseException as e:
        # Every way out leaves a final status with its reason, and no model file beside it.
        status, reason = final_status(e)
        extra = {"signal": reason.rsplit(" ", 1)[-1]} if status == "terminated" else {}
        live.stop()
        with contextlib.suppress(OSError):
            for name in (artifacts.MODEL_FILE, artifacts.MODEL_JSON):
                (directory / name).unlink(missing_ok=True)
            live.end(status, started=started, finished=now(), error=reason, **extra)
        raise
    files = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    return BestLinearOutcome(directory, model, ev, metrics, files)


def _fingerprint(train: Dataset) -> dict[str, Any]:
    """What every rank's training split must agree on for a data-parallel fit."""
    return {
        "training examples": len(train),
        "inputs": train.num_inputs,
        "classes": train.num_classes,
        "training data sha256": dict(sorted(train.sha256.items())),
    }


def _follow(
    directory: Path, train: Dataset, config: BestLinearConfig, world: World
) -> BestLinearOutcome:
    """A rank other than 0: its share of the fit, and nothing written."""
    model = fit_best_linear(train, config, world=world)
    metrics = {
        "train_loss": model.train_loss,
        "train_acc": model.train_acc,
        "weight_decay": model.weight_decay,
    }
    return BestLinearOutcome(directory, model, None, metrics)


def _report(
    model: BestLinearModel,
    ev: Evaluation,
    metrics: dict[str, Any],
    train: Dataset,
    ranks: int | None = None,
) -> dict[str, Any]:
    s = model.selection
    inputs = "raw pixels in [0, 1]" if train.is_image else "the features as they are"
    # A data-parallel fit says over how many ranks (torchrun); one process says nothing.
    parallel = {} if ranks is None else {"ranks": ranks}
    return {
        "recipe": "best-linear",
        **parallel,
        "model": f"Linear({train.num_inputs}, {train.num_classes}) on {inputs}; "
        "standardisation folded into it",
        "how_chosen": model.how_chosen(),
        "selection": {
            "rule": s.rule,
            "chosen_weight_decay": s.chosen_weight_decay,
            "fit_images": s.n_fit,
            "validation_images": s.n_val,
            "seed": s.seed,
            "candidates": [dataclasses.asdict(c) for c in s.candidates],
        },
        "refit": {
            "images": s.n_fit + s.n_val,
            "weight_decay": model.weight_decay,
            "objective": model.objective,
            "lbfgs_passes_total": model.evaluations,
            "select_seconds": model.select_seconds,
            "refit_seconds": model.refit_seconds,
        },
        "validation": {
            "accuracy": metrics["val_acc"],
            "note": "the chosen candidate, fitted "
            "on the other training images: what the choice was based on",
        },
        "train": {"accuracy": model.train_acc, "loss": model.train_loss},
        "test": {
            "accuracy": ev.accuracy,
            "macro_f1": ev.macro_f1,
            "note": "evaluated once, after everything was fixed; used for nothing",
        },
        "seconds": metrics["seconds"],
        "config": dataclasses.asdict(model.config),
    }


def _candidates_csv(model: BestLinearModel) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [f.name for f in dataclasses.fields(model.selection.candidates[0])]
    w.writerow([*cols, "chosen"])
    for c in model.selection.candidates:
        chosen = c.weight_decay == model.selection.chosen_weight_decay
        w.writerow([repr(getattr(c, k)) for k in cols] + [int(chosen)])
    return buf.getvalue()


def _plots(
    directory: Path,
    model: BestLinearModel,
    module: SoftmaxRegression,
    ev: Evaluation,
    test: Dataset,
) -> list[Path]:
    from ..plots import run as plots
    from ..plots.selection import plot_selection

    names = test.classes
    out = []
    if ev.confusion is not None:  # (None: too many classes for one picture)
        out.append(plots.save(plots.confusion(ev.confusion, names), directory / "confusion.png"))
    if not test.is_image:
        plot_selection(model.selection, directory / "selection.png")
        return [*out, directory / "selection.png"]
    n = min(PREDICTION_IMAGES, len(test))
    imgs = test.subset(torch.arange(n)).images.cpu()
    pred = predict_classes(module, imgs).cpu().tolist()
    true = [names[t] for t in test.labels[:n].cpu().tolist()]
    weights = plots.weights(module.weight.detach(), names, test.input_shape)
    out = [
        plots.save(weights, directory / "weights.png"),
        *out,
        plots.save(
            plots.predictions(imgs, true, [names[p] for p in pred]),
            directory / "predictions.png",
        ),
    ]
    plot_selection(model.selection, directory / "selection.png")
    return [*out, directory / "selection.png"]
