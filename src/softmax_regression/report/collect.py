"""Read a run directory (or a directory of runs) into the plain data a report page shows.

It reads the files only through the names and formats of :mod:`softmax_regression.runs`.

Everything here returns JSON-ready dicts and lists; the page's JavaScript draws them. A file
that is missing or unreadable becomes a sentence in ``problems`` and the section that needs it
is left out, so a failed or partial run still gets a page that says what is missing.

Images of the test split are embedded only where the page shows them (a bounded number per
confusion cell, the top losses), as base64 uint8, which keeps a book run's page well under
2 MB.
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
from ..errors import DataError, ModelFileError
from ..runs.best_linear import BEST_LINEAR_JSON, CANDIDATES_CSV
from ..runs.directory import CONFIG_JSON, HISTORY_JSON, MODEL_FILE, MODEL_JSON, STATUS_JSON
from ..runs.seeds import SEEDS_JSON
from ..runs.sweep import SWEEP_JSON
from ..train import History

PER_CELL = 8  # test images kept per confusion cell, the most confident first
TOP_LOSSES = 16


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


def _model_data(saved) -> dict[str, Any]:
    w = saved.model.weight.detach().cpu().numpy().astype("<f4")
    b = saved.model.bias.detach().cpu().numpy().astype("<f4")
    info = saved.info if isinstance(saved.info, dict) else {}
    return {
        "classes": list(saved.classes),
        "normalize": saved.normalize,
        "weight": b64(w),  # float32 little-endian, (10, 784) row-major
        "bias": b64(b),
        "metrics": info.get("metrics") if isinstance(info.get("metrics"), dict) else {},
    }


@torch.no_grad()
def _evaluation(saved, test) -> tuple[dict[str, Any], dict[str, Any]]:
    """(evaluation, gallery) of the model on the test split."""
    from ..evaluation import evaluation_from_predictions
    from ..model import class_scores
    from ..train import cpu_threads, images_to_float

    model = saved.model
    images = test.images.cpu()
    labels = test.labels.cpu()
    with cpu_threads(1):
        x = images_to_float(images.reshape(images.shape[0], -1), saved.normalize)
        logp = torch.log_softmax(class_scores(model.cpu(), x), dim=0).t()  # (N, 10)
    pred = logp.argmax(1)
    ev = evaluation_from_predictions(pred, labels, saved.classes)
    probs = logp.exp().numpy()
    loss = (-logp.gather(1, labels[:, None])[:, 0]).numpy()
    pred_np, labels_np = pred.numpy(), labels.numpy()
    conf = probs[np.arange(len(pred_np)), pred_np]

    chosen: list[int] = []  # test indices whose images the page embeds
    slot: dict[int, int] = {}

    def take(idx: int) -> int:
        if idx not in slot:
            slot[idx] = len(chosen)
            chosen.append(idx)
        return slot[idx]

    cells: dict[str, list[int]] = {}
    key = labels_np * 10 + pred_np
    order = np.lexsort((-conf, key))  # by cell, then most confident first
    sorted_keys = key[order]
    starts = np.searchsorted(sorted_keys, np.arange(100))
    ends = np.searchsorted(sorted_keys, np.arange(100), side="right")
    for k in range(100):
        idx = order[starts[k] : min(ends[k], starts[k] + PER_CELL)]
        if idx.size:
            cells[f"{k // 10},{k % 10}"] = [take(int(i)) for i in idx]
    top_losses = [take(int(i)) for i in np.argsort(-loss, kind="stable")[:TOP_LOSSES]]

    sel = np.array(chosen, dtype=np.int64)
    top3 = np.argsort(-probs[sel], axis=1, kind="stable")[:, :3]
    items = [
        {
            "index": int(i),
            "label": int(labels_np[i]),
            "pred": int(pred_np[i]),
            "loss": float(loss[i]),
            "top": [[int(c), float(probs[i, c])] for c in top3[n]],
        }
        for n, i in enumerate(chosen)
    ]
    evaluation = {
        "accuracy": ev.accuracy,
        "correct": ev.correct,
        "total": ev.total,
        "macro_f1": ev.macro_f1,
        "confusion": ev.confusion,
        "per_class": [dataclasses.asdict(c) for c in ev.per_class],
    }
    gallery = {
        "images": b64(images[sel].numpy().astype(np.uint8)),  # (len(items), 28, 28)
        "items": items,
        "cells": cells,
        "per_cell": PER_CELL,
        "top_losses": top_losses,
    }
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


def run_data(directory: Path, test=None, test_problem: str | None = None) -> dict[str, Any]:
    """Everything a single run's page shows; ``test`` is the test split (or None)."""
    problems: list[str] = []
    config = _read_json(directory / CONFIG_JSON, problems)
    if config is not None and not isinstance(config, dict):
        problems.append(f"{CONFIG_JSON} is not a run description")
        config = None
    status = _read_json(directory / STATUS_JSON, problems)
    if status is not None and not isinstance(status, dict):
        problems.append(f"{STATUS_JSON} is not a run status")
        status = None
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
        if test is None:
            data["data_problem"] = test_problem or "the test split was not loaded"
        else:
            data["evaluation"], data["gallery"] = _evaluation(saved, test)
    data["problems"] = problems
    return data


def load_test(data_dir: str | None) -> tuple[Any, str | None]:
    """(test split, None) or (None, why it could not be loaded)."""
    from ..data import load_fashion_mnist

    try:
        return load_fashion_mnist("test", data_dir), None
    except DataError as e:
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
    status = _read_json(directory / STATUS_JSON, problems)
    settings = dict(config.get("config") or {}) if isinstance(config, dict) else {}
    settings = {"recipe": settings.pop("recipe", "book"), **settings}
    history = _history(directory, problems, settings["recipe"])
    metrics = _final(history)
    if settings.get("recipe") == "best-linear":
        best = _read_json(directory / BEST_LINEAR_JSON, problems, required=False) or {}
        m = (status or {}).get("metrics") or best.get("metrics") or {}
        metrics.update({k: v for k, v in m.items() if isinstance(v, int | float)})
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
