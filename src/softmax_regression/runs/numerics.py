"""The numerics report on disk: ``numerics.json`` and ``numerics.png``. The report itself
(:mod:`softmax_regression.numerics`) writes nothing."""

from __future__ import annotations

from pathlib import Path

from .._io import atomic_write_json, jsonable
from ..numerics import NumericsReport
from .directory import output_dir

NUMERICS_JSON = "numerics.json"
NUMERICS_PNG = "numerics.png"


def write_numerics(out: str | Path, report: NumericsReport) -> list[Path]:
    """The report's two files in ``out``; returns their paths."""
    from ..plots.numerics import plot_numerics

    out = output_dir(out)
    atomic_write_json(out / NUMERICS_JSON, jsonable(report.to_dict()))
    plot_numerics(report, out / NUMERICS_PNG)
    return [out / NUMERICS_JSON, out / NUMERICS_PNG]
