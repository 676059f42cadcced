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
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..best_linear import (
    BestLinearConfig,
    BestLinearModel,
    Candidate,
    FitProgress,
    fit_best_linear,
)
from ..config import TrainConfig, resolve_device
from ..data import Dataset
from ..distributed import World
from ..errors import ModelFileError, ResumeError
from ..evaluation import Evaluation, evaluate, predict_classes
from ..model import SoftmaxRegression
from ..preprocessing import Preprocessing
from ..solver import LbfgsState
from . import artifacts
from .book import PREDICTION_IMAGES, final_status, load_data, model_file_fields
from .directory import check_not_running, make_run_dir, now
from .liveness import LiveStatus
from .ranks import on_main

BEST_LINEAR_JSON = "best_linear.json"
CANDIDATES_CSV = "candidates.csv"
SOLVER_STATE = "solver.safetensors"
SOLVER_STATE_FORMAT = "softmax-regression/solver-state"
# How often a fit's state is written: at most every few minutes, so that writing it costs
# nothing next to the fit (a fit of hours on a large feature set loses at most this).
SOLVER_STATE_SECONDS = 180.0


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
    resume: str | Path | None = None,
    options: dict[str, Any] | None = None,
    save_every: float | None = SOLVER_STATE_SECONDS,
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

    A long fit can be continued: every ``save_every`` seconds (None: never) the solver's
    state goes into ``solver.safetensors`` (:data:`SOLVER_STATE`), and ``resume`` (a run
    directory whose fit did not complete, with the settings and data of its config.json)
    goes on from the last one, to the answer the uninterrupted fit reaches. ``options`` are
    recorded in config.json for a resume to keep (``--no-plots``, ``--no-report``).
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

    sha = {**train.sha256, **test.sha256}

    def prepare() -> tuple[Path, str, FitProgress | None]:
        progress = None
        if resume is not None:
            directory = Path(resume)
            check_not_running(directory)
            progress = _resumable(directory, cfg, sha)
        else:
            directory = make_run_dir(out, root)
        artifacts.write_run_config(
            directory,
            cfg,
            device=str(device),
            data_sha256=sha,
            threads=1 if device.type == "cpu" else None,
            options=options,
        )
        started = now()
        extra = {"ranks": world.size} if parallel else {}
        live = LiveStatus(directory)
        live.start(started=started, **extra)
        live_status[:] = [live]
        return directory, started, progress

    # Rank 0 prepares the directory; when it cannot, the others end with its error.
    live_status: list[LiveStatus] = []  # rank 0's, which alone writes status.json
    directory, started, progress = on_main(world, prepare, "creating the run directory")
    progress = progress or FitProgress()
    progress.every = save_every
    if parallel and not world.is_main:
        return _follow(directory, train, config, world, progress)
    (live,) = live_status

    def keep(now_at: FitProgress) -> None:
        save_fit_progress(directory, now_at, cfg)
        live.update(solver={"stage": now_at.at_stage, "iterations": now_at.iterations})

    progress.keep = keep
    start = time.perf_counter()
    try:
        # Sees the training split only; data-parallel over the ranks when there are several.
        fit_on = {"world": world} if parallel else {}
        model = fit_best_linear(train, config, progress=progress, **fit_on)
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
        (directory / SOLVER_STATE).unlink(missing_ok=True)  # nothing left to continue
        live.end("completed", started=started, finished=now(), metrics=metrics)
    except BaseException as e:
        # Every way out leaves a final status with its reason, and no model file beside it.
        status, reason = final_status(e)
        extra = {"signal": reason.rsplit(" ", 1)[-1]} if status == "terminated" else {}
        if status != "failed":
            e.run_directory = directory  # type: ignore[attr-defined] (the command says how)
        live.stop()
        with contextlib.suppress(OSError):
            for name in (artifacts.MODEL_FILE, artifacts.MODEL_JSON):
                (directory / name).unlink(missing_ok=True)
            live.end(status, started=started, finished=now(), error=reason, **extra)
        raise
    files = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    return BestLinearOutcome(directory, model, ev, metrics, files)


# --------------------------------------------------------------------------- solver state


def save_fit_progress(directory: str | Path, progress: FitProgress, cfg: dict[str, Any]) -> Path:
    """``solver.safetensors``: the candidates fitted so far and their solutions, the stage
    being solved and its L-BFGS state, and the settings they belong to."""
    tensors: dict[str, torch.Tensor] = {}
    for i, (w, b) in enumerate(progress.solutions):
        tensors[f"solution.{i}.weight"], tensors[f"solution.{i}.bias"] = w, b
    lbfgs: dict[str, Any] | None = None
    state = progress.lbfgs
    if state is not None:
        for name in ("x", "flat_grad", "prev_flat_grad", "d"):
            tensors[f"lbfgs.{name}"] = getattr(state, name)
        for name in ("old_dirs", "old_stps", "ro"):
            for i, t in enumerate(getattr(state, name)):
                tensors[f"lbfgs.{name}.{i}"] = t
        lbfgs = {"loss": state.loss, "iterations": state.iterations}
        lbfgs.update(evaluations=state.evaluations, history=len(state.old_dirs))
        for name in ("t", "h_diag"):  # a number, or a 0-dim tensor: kept as it was
            value = getattr(state, name)
            if isinstance(value, torch.Tensor):
                tensors[f"lbfgs.{name}"], lbfgs[name] = value, None
            else:
                lbfgs[name] = value
    body = {
        "stage": progress.at_stage,
        "iterations": progress.iterations,
        "candidates": [dataclasses.asdict(c) for c in progress.candidates],
        "lbfgs": lbfgs,
    }
    meta = {
        "format": SOLVER_STATE_FORMAT,
        "format_version": str(artifacts.FORMAT_VERSION),
        "config": json.dumps(_comparable(cfg), sort_keys=True),
        "progress": json.dumps(body),
    }
    path = Path(directory) / SOLVER_STATE
    atomic_write_bytes(path, artifacts._safetensors_bytes(tensors, meta))
    return path


def load_fit_progress(
    directory: str | Path, cfg: dict[str, Any], device: torch.device | str = "cpu"
) -> FitProgress | None:
    """The fit's progress kept in ``directory`` (None when there is none: it starts over);
    a ResumeError when it is not one of these settings' or not readable."""
    path = Path(directory) / SOLVER_STATE
    if not path.exists():
        return None
    try:
        tensors, meta = artifacts._read_safetensors(path, "solver state")
        artifacts._check_format(path, meta, SOLVER_STATE_FORMAT, "solver state")
        if json.loads(meta["config"]) != json.loads(json.dumps(_comparable(cfg))):
            raise ResumeError(f"{path}: the solver state of other settings than config.json's")
        body = json.loads(meta["progress"])
        t = {k: v.to(device) for k, v in tensors.items()}
        candidates = [Candidate(**c) for c in body["candidates"]]
        solutions = [
            (t[f"solution.{i}.weight"], t[f"solution.{i}.bias"]) for i in range(len(candidates))
        ]
        state = None
        lb = body["lbfgs"]
        if lb is not None:
            n = lb["history"]
            state = LbfgsState(
                t["lbfgs.x"],
                lb["loss"],
                t["lbfgs.flat_grad"],
                t["lbfgs.prev_flat_grad"],
                t["lbfgs.d"],
                t["lbfgs.t"] if lb["t"] is None else lb["t"],
                t["lbfgs.h_diag"] if lb["h_diag"] is None else lb["h_diag"],
                [t[f"lbfgs.old_dirs.{i}"] for i in range(n)],
                [t[f"lbfgs.old_stps.{i}"] for i in range(n)],
                [t[f"lbfgs.ro.{i}"] for i in range(n)],
                lb["iterations"],
                lb["evaluations"],
            )
        return FitProgress(
            candidates, solutions, body["stage"], state, iterations=body["iterations"]
        )
    except ModelFileError as e:
        raise ResumeError(str(e)) from None
    except (KeyError, ValueError, TypeError) as e:
        raise ResumeError(f"{path}: incomplete solver state ({type(e).__name__}: {e})") from None


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """The settings a solver state belongs to (the device may differ: the same arithmetic)."""
    return {k: v for k, v in cfg.items() if k != "device"}


def _resumable(directory: Path, cfg: dict[str, Any], sha: dict[str, str]) -> FitProgress | None:
    """Check that ``directory`` is a best-linear run of these settings and data that did not
    complete; its fit's progress (None: it starts over there). Its model files go."""
    saved = artifacts.read_run_config(directory)
    if _comparable(saved["config"]) != json.loads(json.dumps(_comparable(cfg))):
        raise ResumeError(f"{directory} was fitted with other settings; resume it as it was")
    old_sha = saved.get("data_sha256") or {}
    changed = sorted(k for k in sha if k in old_sha and old_sha[k] != sha[k])
    if changed:
        raise ResumeError(f"{directory} was trained on different data ({changed[0]} differs)")
    status = artifacts.read_status(directory) or {}
    if status.get("status") == "completed":
        raise ResumeError(f"{directory} is a completed run; there is nothing to continue")
    progress = load_fit_progress(directory, cfg)
    for name in (artifacts.MODEL_FILE, artifacts.MODEL_JSON):
        (directory / name).unlink(missing_ok=True)
    return progress


def _fingerprint(train: Dataset) -> dict[str, Any]:
    """What every rank's training split must agree on for a data-parallel fit."""
    return {
        "training examples": len(train),
        "inputs": train.num_inputs,
        "classes": train.num_classes,
        "training data sha256": dict(sorted(train.sha256.items())),
    }


def _follow(
    directory: Path, train: Dataset, config: BestLinearConfig, world: World, progress: FitProgress
) -> BestLinearOutcome:
    """A rank other than 0: its share of the fit (from where rank 0 resumed it), and nothing
    written."""
    model = fit_best_linear(train, config, world=world, progress=progress)
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
