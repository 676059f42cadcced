"""Tables: CSV, TSV and Parquet, read with pyarrow (the ``[tables]`` extra, imported here only).

One column is the label (``label``: its name; default the column named ``label``); every
other column is a feature and must be numeric (integers, floats or booleans) with no missing
values. Features become one float32 ``(N, D)`` array, in the table's column order; a test
table must have the same feature columns (matched by name). Rows are counted from 1, the
header not included.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, CorruptDataError, DataError
from .arrays import check_finite, file_sha256
from .parts import Part

DEFAULT_LABEL = "label"


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError:
        raise ConfigError(
            "reading CSV/TSV/Parquet tables needs pyarrow: pip install 'softmax-regression[tables]'"
        ) from None
    return pyarrow


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith((".parquet", ".pq"))


def _bad_line(path: Path, delimiter: str) -> str:
    """Where a ragged CSV first goes wrong ('line 7 has 4 fields, the header 3'), if found."""
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            rows = csv.reader(f, delimiter=delimiter)
            header = next(rows, [])
            for row in rows:
                if row and len(row) != len(header):
                    return f"line {rows.line_num} has {len(row)} fields, the header {len(header)}"
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    return ""


def read_table(path: Path) -> Any:  # -> pyarrow.Table
    pa = _pyarrow()
    try:
        if _is_parquet(path):
            return pa.parquet.read_table(path)
        delimiter = "\t" if ".tsv" in path.name.lower() else ","
        return pa.csv.read_csv(
            path,
            parse_options=pa.csv.ParseOptions(delimiter=delimiter),
            # An empty label is a missing one, not the class "".
            convert_options=pa.csv.ConvertOptions(strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        where = "" if _is_parquet(path) else _bad_line(path, delimiter)
        raise CorruptDataError(
            f"{path}: cannot read the table ({where + ': ' if where else ''}{detail})"
        ) from None


def _first_null(column: Any) -> int:
    mask = column.is_null().to_numpy(zero_copy_only=False)
    return int(np.argmax(mask)) + 1


def read(path: Path, *, label: str | None, columns: list[str] | None = None) -> Part:
    """A table as a Part; ``columns``: the training table's feature columns (for a test one)."""
    pa = _pyarrow()
    table = read_table(path)
    names = list(table.column_names)
    label = label or DEFAULT_LABEL
    if label not in names:
        given = "" if label != DEFAULT_LABEL else " (no column named 'label')"
        raise ConfigError(
            f"{path}: no column {label!r}{given}; columns are {', '.join(names)}; "
            "pass --label COLUMN"
        )
    features = [n for n in names if n != label]
    if columns is not None:
        missing = [c for c in columns if c not in features]
        extra = [c for c in features if c not in columns]
        if missing or extra:
            what = f"lacks {missing[0]!r}" if missing else f"has {extra[0]!r}"
            raise DataError(
                f"train and test do not match: {path} {what}, the training table's feature "
                f"columns are {', '.join(columns)}"
            )
        features = columns
    if not features:
        raise DataError(f"{path}: no feature columns besides the label {label!r}")
    n = table.num_rows
    if n == 0:
        raise DataError(f"{path}: no examples (zero rows)")
    y_col = table.column(label)
    if y_col.null_count:
        raise DataError(
            f"{path}: column {label!r} has {y_col.null_count:,} missing labels (first at row "
            f"{_first_null(y_col)}); drop those rows or fill them"
        )
    x = np.empty((n, len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        col = table.column(name)
        t = col.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            if pa.types.is_null(t):
                raise DataError(f"{path}: column {name!r} is empty; drop it")
            raise DataError(f"{path}: column {name!r} is not numeric ({t}); drop it or encode it")
        if col.null_count:
            raise DataError(
                f"{path}: column {name!r} has {col.null_count:,} missing values (first at row "
                f"{_first_null(col)}); fill or drop them"
            )
        x[:, j] = col.to_numpy()
    y = y_col.to_numpy(zero_copy_only=False)
    if y.dtype.kind == "O" or pa.types.is_dictionary(y_col.type):
        y = np.asarray(y_col.to_pylist(), dtype=str)
    check_finite(x, str(path))
    sha = file_sha256(path)
    return Part(
        inputs=x,
        labels=y,
        where=str(path),
        name=path.name.split(".")[0],
        sha256={path.name: sha} if sha else {},
        columns=features,
    )
