"""Read a run directory (or a directory of runs) into the plain data a report page shows.

It reads the files only through the names and formats of :mod:`softmax_regression.runs`.

Everything here returns JSON-ready dicts and lists; the page's JavaScript draws them. A file
that is missing or unreadable becomes a sentence in ``problems`` and the section that needs it
is left out, so a failed or partial run still gets a page that says what is missing.

The page's size is bounded whatever the model:

* test images are embedded (base64 uint8, ``(n, C, H, W)``) only for an image model, and only
  where the page shows them: the top losses, and up to ``PER_CELL`` per confusion cell for at
  most ``MAX_CELLS`` cells (every diagonal cell, then the largest off-diagonal ones), with
  fewer per cell when they would pass ``IMAGE_BUDGET`` bytes. A Fashion-MNIST page keeps 8 per
  cell of every cell (about 0.6 MB); a 100-class one stays within a few MB;
* the weights (float32) are embedded only for an image model of at most ``MAX_WEIGHTS``
  values: the page draws them and "Try it" runs them. A feature model's page shows instead
  its strongest features per class (``TOP_FEATURES`` each way), which need no weights;
* the confusion matrix is a dense table up to ``DENSE_CONFUSION`` classes, its non-zero
  cells beyond.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import load_model
from ..errors import ModelFileError, SoftmaxRegressionError
from ..runs.best_linear import BEST_LINEAR_JSON, CANDIDATES_CSV
from ..runs.directory import CONFIG_JSON, HISTORY_JSON, MODEL_FILE, MODEL_JSON, STATUS_JSON
from ..runs.liveness import truthful
from ..runs.seeds import SEEDS_JSON
from ..runs.sweep import SWEEP_JSON
from ..train import History

PER_CELL = 8  # test images kept per confusion cell, the most confident first
TOP_LOSSES = 16
MAX_CELLS = 300  # cells whose examples are embedded: all of a 10-class matrix, 3 per class at 100
IMAGE_BUDGET = 1_500_000  # bytes of test images embedded (2 MB as base64)
MAX_WEIGHTS = 1 << 20  # weights embedded (4 MiB as float32): 100 classes of 3x32x32 images fit
MAX_STATS = 1 << 16  # inputs whose standardisation mean and std are embedded
TOP_FEATURES = 5  # features per class and sign in a feature model's table
DENSE_CONFUSION = 256  # classes up to which the confusion matrix is a table of K x K counts


def clean(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (JSON has no nan), tuples lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    return str(obj)


def _read_json(path: Path, problems: list[str], *, required: bool = True) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            problems.append(f"no {path.name} in the run directory")
    except (OSError, ValueError) as e:
        problems.append(f"{path.name} is unreadable ({type(e).__name__}: {e})")
    return None


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def kind_of(directory: Path) -> str:
    """``run``, ``seeds``, ``sweep`` or ``runs`` (a directory of runs)."""
    if (directory / SEEDS_JSON).exists():
        return "seeds"
    if (directory / SWEEP_JSON).exists():
        return "sweep"
    if any((directory / f).exists() for f in (CONFIG_JSON, STATUS_JSON, MODEL_FILE)):
        return "run"
    return "runs"


def _history(directory: Path, problems: list[str], recipe: str | None) -> list[dict] | None:
    raw = _read_json(directory / HISTORY_JSON, problems, required=recipe != "best-linear")
    if raw is None:
        return None
    try:
        history = History.from_dict(raw)
    except (KeyError, TypeError, ValueError) as e:
        problems.append(f"{HISTORY_JSON} is not a run history ({type(e).__name__}: {e})")
        return None
    return [dataclasses.asdict(r) for r in history]


def _model(directory: Path, problems: list[str], status: dict | None):
    if not (directory / MODEL_FILE).exists():
        why = ""
        if status and status.get("status") not in (None, "completed"):
            why = f" (the run {status['status']})"  # the page shows status.json's error
        problems.append(f"no {MODEL_FILE}{why}: no evaluation, gallery, weights or Try it")
        return None
    try:
        return load_model(directory)
    except ModelFileError as e:
        problems.append(f"{e}: no evaluation, gallery, weights or Try it")
        return None


def _feature_names(saved, d: int) -> list[str] | None:
    names = saved.data.get("feature_names") if isinstance(saved.data, dict) else None
    if isinstance(names, list) and len(names) == d and all(isinstance(n, str) for n in names):
        return names
    return None


def strongest_features(w: np.ndarray, n: int = TOP_FEATURES) -> list[dict[str, list]]:
    """Per class (row of ``w``, (K, D)): the ``n`` features of largest weight, largest first,
    and the ``n`` of smallest, smallest first, as [feature index, weight] pairs."""
    n = min(n, w.shape[1])
    out = []
    for row in w:
        if n < row.size:
            hi = np.argpartition(-row, n - 1)[:n]
            lo = np.argpartition(row, n - 1)[:n]
        else:
            hi = lo = np.arange(row.size)
        hi = hi[np.lexsort((hi, -row[hi]))]  # ties: the lower index first
        lo = lo[np.lexsort((lo, row[lo]))]
        out.append(
            {
                "positive": [[int(i), float(row[i])] for i in hi],
                "negative": [[int(i), float(row[i])] for i in lo],
            }
        )
    return out


def _model_data(saved) -> dict[str, Any]:
    w = saved.model.weight.detach().cpu().numpy().astype("<f4")
    b = saved.model.bias.detach().cpu().numpy().astype("<f4")
    k, d = w.shape
    info = saved.info if isinstance(saved.info, dict) else {}
    prep = saved.preprocessing
    embed = saved.is_image and w.size <= MAX_WEIGHTS
    stats = prep.standardized and d <= MAX_STATS
    out: dict[str, Any] = {
        "classes": list(saved.classes),
        "normalize": saved.normalize,
        "input_shape": list(saved.input_shape),  # (C, H, W) images, (D,) features
        "image_rule": saved.image_rule,
        "is_image": saved.is_image,
        "preprocessing": {
            "scale": prep.scale,
            "standardized": prep.standardized,
            # float32 little-endian, (D,) each; None when not standardised (or D > MAX_STATS)
            "mean": b64(prep.mean.cpu().numpy().astype("<f4")) if stats else None,
            "std": b64(prep.std.cpu().numpy().astype("<f4")) if stats else None,
            "describe": prep.describe(saved.is_image),
        },
        "data": saved.data if isinstance(saved.data, dict) else {},
        "weight": b64(w) if embed else None,  # float32 little-endian, (K, D) row-major
        "weight_note": None,
        "bias": b64(b),
        "features": None,
        "metrics": info.get("metrics") if isinstance(info.get("metrics"), dict) else {},
    }
    if saved.is_image and not embed:
        out["weight_note"] = (
            f"the model's {k} x {d} weights are too many to embed in the page "
            f"(at most {MAX_WEIGHTS:,}): no weight images and no Try it"
        )
    if not saved.is_image:
        out["features"] = {
            "top": min(TOP_FEATURES, d),
            "names": _feature_names(saved, d),
            "classes": strongest_features(w),
        }
    return out


def mismatch(saved, test) -> str | None:
    """Why ``test`` is not data this model can be evaluated on, or None."""
    k = len(saved.classes)
    if tuple(test.input_shape) != tuple(saved.input_shape):
        return (
            f"the test split's inputs are {tuple(test.input_shape)}, but the model takes "
            f"{tuple(saved.input_shape)}"
        )
    if test.num_classes != k or (len(test) and int(test.labels.max()) >= k):
        return f"the test split has {test.num_classes} classes, but the model {k}"
    if len(test) == 0:
        return "the test split is empty"
    return None


def _ranked_cells(keys: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Positions in ``keys`` (cells ``true * k + pred`` with ``counts`` examples): every
    diagonal cell in class order, then the off-diagonal ones, largest first."""
    diagonal = keys // k == keys % k
    diag = np.flatnonzero(diagonal)
    off = np.flatnonzero(~diagonal)
    off = off[np.lexsort((keys[off], -counts[off]))]
    return np.concatenate([diag, off])[:MAX_CELLS]


@torch.no_grad()
def _evaluation(saved, test) -> tuple[dict[str, Any], dict[str, Any]]:
    """(evaluation, gallery) of the model on the test split, read chunk by chunk."""
    from ..evaluation import evaluation_from_predictions
    from ..model import class_scores
    from ..train import EVAL_CHUNK, cpu_threads

    model = saved.model.cpu()
    prep = saved.preprocessing.to("cpu")
    classes = tuple(saved.classes)
    k = len(classes)
    labels = test.labels.cpu()
    preds, losses, confs = [], [], []

    def log_probs(rows: torch.Tensor) -> torch.Tensor:  # (n, K)
        return torch.log_softmax(class_scores(model, prep(rows.cpu())), dim=0).t()

    with cpu_threads(1):
        lo = 0
        for chunk in test.chunks(EVAL_CHUNK):
            logp = log_probs(chunk)
            y = labels[lo : lo + logp.shape[0]]
            lo += logp.shape[0]
            top = logp.max(1)
            preds.append(top.indices)
            confs.append(top.values.exp())
            losses.append(-logp.gather(1, y[:, None])[:, 0])
    pred = torch.cat(preds)
    labels_np, pred_np = labels.numpy(), pred.numpy()
    loss, conf = torch.cat(losses).numpy(), torch.cat(confs).numpy()

    key = labels_np.astype(np.int64) * k + pred_np
    order = np.lexsort((-conf, key))  # by cell, then most confident first
    keys, starts, counts = np.unique(key[order], return_index=True, return_counts=True)
    ranked = _ranked_cells(keys, counts, k)
    n_top = min(TOP_LOSSES, len(loss))
    per_cell = PER_CELL
    if saved.is_image:
        size = math.prod(saved.input_shape)
        n_top = min(n_top, max(1, IMAGE_BUDGET // 4 // size))
        room = max(0, IMAGE_BUDGET - n_top * size) // size  # images left for the cells
        while per_cell > 1 and np.minimum(counts[ranked], per_cell).sum() > room:
            per_cell -= 1
        fits = np.cumsum(np.minimum(counts[ranked], per_cell)) <= room
        ranked = ranked[fits]  # only when even one per cell is too many

    chosen: list[int] = []  # test positions whose examples the page embeds
    slot: dict[int, int] = {}

    def take(idx: int) -> int:
        if idx not in slot:
            slot[idx] = len(chosen)
            chosen.append(idx)
        return slot[idx]

    cells: dict[str, list[int]] = {}
    for c in ranked:
        idx = order[starts[c] : starts[c] + min(int(counts[c]), per_cell)]
        cells[f"{keys[c] // k},{keys[c] % k}"] = [take(int(i)) for i in idx]
    top_losses = [take(int(i)) for i in np.argsort(-loss, kind="stable")[:n_top]]

    sel = torch.tensor(chosen, dtype=torch.long)
    rows = test.rows(sel.to(test.labels.device)).cpu()
    with cpu_threads(1):
        probs = log_probs(rows).exp().numpy()
    top3 = np.argsort(-probs, axis=1, kind="stable")[:, : min(3, k)]
    items = [
        {
            "index": int(i),
            "label": int(labels_np[i]),
            "pred": int(pred_np[i]),
            "loss": float(loss[i]),
            "top": [[int(c), float(probs[n, c])] for c in top3[n]],
        }
        for n, i in enumerate(chosen)
    ]
    ev = evaluation_from_predictions(pred, labels, classes, dense_up_to=DENSE_CONFUSION)
    per_class = [dataclasses.asdict(c) for c in ev.per_class]
    correct, confusion, nonzero = ev.correct, ev.confusion, None
    if confusion is None:
        nonzero = [[int(c // k), int(c % k), int(n)] for c, n in zip(keys, counts, strict=True)]
    total = len(labels_np)
    evaluation = {
        "accuracy": correct / total,
        "correct": correct,
        "total": total,
        "macro_f1": sum(c["f1"] for c in per_class) / k,
        "confusion": confusion,  # [true][predicted] counts, or None past DENSE_CONFUSION
        "confusion_cells": nonzero,  # [true, predicted, count] of the non-zero cells then
        "per_class": per_class,
    }
    gallery: dict[str, Any] = {
        "images": None,
        "shape": None,
        "items": items,
        "cells": cells,
        "per_cell": per_cell,
        "cells_nonempty": len(keys),
        "max_cells": MAX_CELLS,
        "top_losses": top_losses,
    }
    if saved.is_image:
        shape = [len(chosen), *saved.input_shape]  # (n, C, H, W)
        gallery["images"] = b64(rows.numpy().astype(np.uint8).reshape(shape))
        gallery["shape"] = shape
    return evaluation, gallery


def _candidates(directory: Path, problems: list[str]) -> list[dict] | None:
    try:
        text = (directory / CANDIDATES_CSV).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        problems.append(f"{CANDIDATES_CSV} is unreadable ({e})")
        return None
    rows = []
    for row in csv.DictReader(text.splitlines()):
        out: dict[str, Any] = {}
        for k, v in row.items():
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                out[k] = v
        rows.append(out)
    return rows


def run_data(
    directory: Path, test=None, test_problem: str | None = None, *, load_test=None
) -> dict[str, Any]:
    """Everything a single run's page shows.

    ``test`` is the test split (or None). ``load_test(directory) -> (test, problem)`` loads
    the run's own; given, it is called when ``test`` is None or is not data of this model
    (another input shape or number of classes). Without it, such a ``test`` is a problem the
    page states.
    """
    problems: list[str] = []
    config = _read_json(directory / CONFIG_JSON, problems)
    if config is not None and not isinstance(config, dict):
        problems.append(f"{CONFIG_JSON} is not a run description")
        config = None
    status = _read_json(directory / STATUS_JSON, problems)
    if status is not None and not isinstance(status, dict):
        problems.append(f"{STATUS_JSON} is not a run status")
        status = None
    status = truthful(status, directory)  # a run whose process is gone is shown as died
    settings = config.get("config") if config else None
    recipe = settings.get("recipe") if isinstance(settings, dict) else None
    history = _history(directory, problems, recipe)
    saved = _model(directory, problems, status)
    model_json = _read_json(directory / MODEL_JSON, problems, required=False)
    best = _read_json(directory / BEST_LINEAR_JSON, problems, required=False)
    data: dict[str, Any] = {
        "kind": "run",
        "name": directory.resolve().name,
        "path": str(directory.resolve()),
        "recipe": recipe or "book",
        "config": config,
        "status": status,
        "history": history,
        "model": _model_data(saved) if saved is not None else None,
        "model_json": model_json if isinstance(model_json, dict) else None,
        "best_linear": best if isinstance(best, dict) else None,
        "candidates": _candidates(directory, problems) if best else None,
        "evaluation": None,
        "gallery": None,
        "data_problem": None,
    }
    if saved is not None:
        trained_on = saved.data.get("name", "Fashion-MNIST")
        if test is None and trained_on != "Fashion-MNIST" and data_source(directory)[0] is None:
            # Nothing says where this model's data is: Fashion-MNIST's would not fit it.
            test_problem = (
                f"the model was trained on {trained_on}; no config.json says where that is"
            )
            load_test = None
        if load_test is not None and (test is None or mismatch(saved, test)):
            test, test_problem = load_test(directory)
        if test is None:
            data["data_problem"] = test_problem or "the test split was not loaded"
        elif why := mismatch(saved, test):
            data["data_problem"] = why
        else:
            data["evaluation"], data["gallery"] = _evaluation(saved, test)
    data["problems"] = problems
    return data


def data_source(directory: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(data spec dict or None for Fashion-MNIST, data_dir) from a run's config.json."""
    try:
        config = json.loads((directory / CONFIG_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    settings = config.get("config") if isinstance(config, dict) else None
    if not isinstance(settings, dict):
        return None, None
    spec = settings.get("data")
    data_dir = settings.get("data_dir")
    return (spec if isinstance(spec, dict) and spec else None), (
        data_dir if isinstance(data_dir, str) else None
    )


def load_test(data_dir: str | None, spec: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """(test split, None) or (None, why it could not be loaded): the split ``spec`` (a run
    config's ``data``) describes, Fashion-MNIST's when None."""
    try:
        if spec is None:
            from ..data import load_fashion_mnist

            return load_fashion_mnist("test", data_dir), None
        from ..data.spec import DataSpec

        return DataSpec.from_dict(spec).load(data_dir=data_dir).test, None
    except SoftmaxRegressionError as e:
        return None, f"the test split could not be loaded ({e})"


# --------------------------------------------------------------------------- several runs


def _final(history: list[dict] | None) -> dict[str, Any]:
    if not history:
        return {}
    last = history[-1]
    out = {k: last[k] for k in ("train_loss", "train_acc", "val_acc", "test_acc")}
    out["epochs"] = last["epoch"]
    out["seconds"] = sum(r["seconds"] for r in history)
    return {k: v for k, v in out.items() if v is not None}


def _curves(history: list[dict] | None) -> dict[str, list]:
    if not history:
        return {}
    out = {k: [r[k] for r in history] for k in ("epoch", "train_loss", "train_acc", "test_acc")}
    if any(r.get("val_acc") is not None for r in history):
        out["val_acc"] = [r["val_acc"] for r in history]
    return out


def run_row(directory: Path, href: str) -> dict[str, Any]:
    """One run as a row of an index page: settings, final metrics, curves."""
    problems: list[str] = []
    config = _read_json(directory / CONFIG_JSON, problems)
    status = truthful(_read_json(directory / STATUS_JSON, problems), directory)
    settings = dict(config.get("config") or {}) if isinstance(config, dict) else {}
    settings = {"recipe": settings.pop("recipe", "book"), **settings}
    history = _history(directory, problems, settings["recipe"])
    metrics = _final(history)
    if settings.get("recipe") == "best-linear":
        best = _read_json(directory / BEST_LINEAR_JSON, problems, required=False) or {}
        m = (status or {}).get("metrics") or best.get("metrics") or {}
        metrics.update({k: v for k, v in m.items() if isinstance(v, int | float)})
    if isinstance(status, dict) and status.get("status") == "died":
        problems.append(f"the run died: {status.get('error')}")
    return {
        "name": directory.name,
        "href": href,
        "status": (status or {}).get("status") if isinstance(status, dict) else None,
        "settings": settings,
        "metrics": metrics,
        "curves": _curves(history),
        "problems": problems,
    }


def seeds_data(directory: Path) -> dict[str, Any]:
    problems: list[str] = []
    body = _read_json(directory / SEEDS_JSON, problems) or {}
    rows = []
    for name in body.get("runs") or []:
        sub = directory / str(name)
        if sub.is_dir():
            rows.append(run_row(sub, f"{name}/report.html"))
        else:
            problems.append(f"{name}/ listed in {SEEDS_JSON} is missing")
    return {
        "kind": "index",
        "subkind": "seeds",
        "name": directory.resolve().name,
        "path": str(directory.resolve()),
        "summary": body.get("summary"),
        "notes": [body[k] for k in ("std", "labels") if isinstance(body.get(k), str)],
        "rows": rows,
        "problems": problems,
    }


def sweep_data(directory: Path) -> dict[str, Any]:
    problems: list[str] = []
    body = _read_json(directory / SWEEP_JSON, problems) or {}
    rows = []
    for s in body.get("settings") or []:
        summary = s.get("summary") or {}
        metrics = {k: v.get("mean") for k, v in summary.items() if isinstance(v, dict)}
        metrics.update({f"{k} std": v.get("std") for k, v in summary.items() if k != "seconds"})
        if s.get("best_epoch") is not None:
            metrics["best_epoch"] = s["best_epoch"]
            metrics["test_acc_at_best_epoch"] = s.get("test_acc_at_best_epoch")
        label = f"lr {s.get('lr')}, batch {s.get('batch_size')}, {s.get('epochs')} epochs"
        rows.append(
            {
                "name": label,
                "href": None,
                "status": None,
                "settings": {k: s.get(k) for k in ("lr", "batch_size", "epochs")}
                | {"seeds": len(s.get("seeds") or [])},
                "metrics": metrics,
                "curves": s.get("curves") or {},
                "problems": [],
            }
        )
    return {
        "kind": "index",
        "subkind": "sweep",
        "name": directory.resolve().name,
        "path": str(directory.resolve()),
        "summary": None,
        "base_config": body.get("base_config"),
        "notes": [n for n in body.get("notes") or [] if isinstance(n, str)],
        "rows": rows,
        "problems": problems,
    }


def index_data(directory: Path) -> dict[str, Any]:
    rows = []
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
        kind = kind_of(sub)
        if kind == "run":
            rows.append(run_row(sub, f"{sub.name}/report.html"))
        elif kind in ("seeds", "sweep"):
            part = seeds_data(sub) if kind == "seeds" else sweep_data(sub)
            summary = part.get("summary") or {}
            rows.append(
                {
                    "name": sub.name,
                    "href": f"{sub.name}/report.html",
                    "status": kind,
                    "settings": {"runs": len(part["rows"])},
                    "metrics": {k: v.get("mean") for k, v in summary.items()},
                    "curves": {},
                    "problems": part["problems"],
                }
            )
    return {
        "kind": "index",
        "subkind": "runs",
        "name": directory.resolve().name,
        "path": str(directory.resolve()),
        "summary": None,
        "notes": [],
        "rows": rows,
        "problems": [],
    }
