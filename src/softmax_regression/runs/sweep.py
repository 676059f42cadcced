"""A sweep's directory: ``sweep.csv`` (one row per setting), ``sweep.json`` (everything, with
per-epoch mean curves) and ``curves.png``. The sweep itself (:mod:`softmax_regression.sweep`)
writes nothing."""

from __future__ import annotations

from pathlib import Path

from .._io import atomic_write_json, atomic_write_text, jsonable
from ..sweep import SweepResult
from .directory import output_dir

SWEEP_JSON = "sweep.json"
SWEEP_CSV = "sweep.csv"
CURVES_PNG = "curves.png"


def write_sweep(out: str | Path, result: SweepResult) -> list[Path]:
    """The sweep's three files in ``out``; returns their paths."""
    from ..plots.sweep import plot_sweep_curves

    out = output_dir(out)
    atomic_write_json(out / SWEEP_JSON, jsonable(result.to_dict()))
    atomic_write_text(out / SWEEP_CSV, result.to_csv())
    plot_sweep_curves(
        [
            {
                "label": r.setting.label,
                "epochs": r.curves["epoch"],
                **r.curves,
                "best_epoch": r.best_epoch,
            }
            for r in result.results
        ],
        out / CURVES_PNG,
    )
    return [out / SWEEP_CSV, out / SWEEP_JSON, out / CURVES_PNG]
