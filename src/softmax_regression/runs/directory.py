"""Where a run directory goes, and the timestamps its status file carries."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from ..errors import ConfigError

DEFAULT_ROOT = "runs"


def default_name(now: _dt.datetime | None = None) -> str:
    return (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")


def now() -> str:
    """Local time with its UTC offset, to the second: ``started`` and ``finished`` of a status."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


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


def output_dir(out: str | Path) -> Path:
    """``out`` as a directory to write into (made when the first file is written; files of the
    same names are replaced). Refused, before any work, if it is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    return out
