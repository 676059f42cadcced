"""A run as one self-contained HTML page: curves, evaluation, gallery, weights, and "Try it".

``write_report(run_dir)`` writes ``report.html`` for a run, a ``--seeds`` directory or a sweep
directory; ``write_index(runs_dir)`` writes a page comparing the runs of a directory. The page
is one file: the run's numbers go in as JSON, the CSS and JavaScript (``page.css``,
``page.js``, package data) are inlined, and the page draws everything itself (SVG charts,
canvas images), so it opens offline from ``file://`` and can be mailed as it is.

Safety is structural: the JSON is embedded with ``<``, ``>`` and ``&`` escaped, the script
renders every string from the run with ``textContent`` (never as HTML), and a
Content-Security-Policy meta tag allows only the page's own script (by its SHA-256) and no
network source at all.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..errors import ReportError
from . import collect

REPORT_HTML = "report.html"

__all__ = ["REPORT_HTML", "page_html", "write_index", "write_report"]


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _json_for_script(data: Any) -> str:
    text = json.dumps(collect.clean(data), separators=(",", ":"), allow_nan=False)
    # Inside <script type="application/json"> only "</script" could end the element early;
    # escaping every <, > and & makes any string from the run inert.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_html(data: dict[str, Any]) -> str:
    """The complete page for ``data`` (from :mod:`.collect`)."""
    from .. import __version__

    data = {
        **data,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "generator": f"softmax-regression {__version__}",
    }
    script = _asset("page.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    csp = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "img-src data: blob:; base-uri 'none'; form-action 'none'"
    )
    parts = {
        "TITLE": html.escape(f"{data.get('name', 'run')} · softmax-regression report"),
        "CSP": html.escape(csp),
        "STYLE": _asset("page.css"),
        "DATA": _json_for_script(data),
        "SCRIPT": script,
    }
    # One pass, so that text coming from the run can never be taken for a placeholder.
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: parts[m.group(1)], _asset("template.html"))


def _directory(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise ReportError(f"{p}: no such directory")
    if not p.is_dir():
        raise ReportError(f"{p}: not a directory (give a run directory or a directory of runs)")
    return p


class _TestSplits:
    """The test splits of the runs one call writes pages for, each source loaded once.

    A run's own test split is the one its config.json's data spec describes (Fashion-MNIST's
    without one); a split the caller passed is used instead for every run it fits.
    """

    def __init__(self, data_dir: str | None, given: Any = None) -> None:
        self.data_dir = data_dir
        self.given = given
        self.loaded: dict[str, tuple[Any, str | None]] = {}

    def __call__(self, directory: Path) -> tuple[Any, str | None]:
        spec, run_data_dir = collect.data_source(directory)
        data_dir = self.data_dir if self.data_dir is not None else run_data_dir
        key = json.dumps([spec, data_dir], sort_keys=True, default=str)
        if key not in self.loaded:
            self.loaded[key] = collect.load_test(data_dir, spec)
        return self.loaded[key]


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    data_dir: str | None = None,
    test=None,
) -> Path:
    """Write the page of a run (or of a ``--seeds`` / sweep directory); returns its path.

    ``test`` is the test split if the caller has it loaded; otherwise the run's own is
    loaded: the data its config.json describes (Fashion-MNIST's from ``data_dir``, the usual
    search, when it names none). If that fails the page says so and leaves out the sections
    that need the test split. A ``--seeds`` directory's page links to the seeds' own pages,
    which are written too (with ``test`` where it fits their model).
    """
    return _write(_directory(run_dir), out, _TestSplits(data_dir, test), explicit=True)


def _write(directory: Path, out: str | Path | None, splits: _TestSplits, explicit: bool) -> Path:
    kind = collect.kind_of(directory)
    if kind == "runs":
        return _write_index(directory, out, splits)
    target = Path(out) if out is not None else directory / REPORT_HTML
    if kind == "run":
        if explicit and splits.given is not None:
            data = collect.run_data(directory, splits.given)  # not this model's data: said so
        else:
            data = collect.run_data(directory, splits.given, load_test=splits)
    elif kind == "seeds":
        data = collect.seeds_data(directory)
        _sub_pages(directory, data["rows"], target, out is not None, splits)
    else:
        data = collect.sweep_data(directory)
    _save(target, page_html(data))
    return target


def _sub_pages(
    directory: Path, rows: list[dict[str, Any]], target: Path, elsewhere: bool, splits: _TestSplits
) -> None:
    """The page of each run a summary page links to, where it has none.

    A summary page written into its own directory puts them in the runs' directories, as
    before; one written elsewhere (``--out FILE``) puts them beside itself, in
    ``<FILE's name>-pages/``, and links there: reading runs writes nothing into them (they
    may be someone else's, or on read-only storage)."""
    for row in rows:
        if row.get("href") is None:
            continue
        sub = directory / row["name"]
        page = sub / REPORT_HTML
        if elsewhere:
            if not page.exists():
                page = target.parent / f"{target.stem}-pages" / row["name"] / REPORT_HTML
            row["href"] = Path(os.path.relpath(page, target.parent)).as_posix()
        if not page.exists() or page.parent != sub:
            _write(sub, page, splits, explicit=False)


def _save(target: Path, text: str) -> None:
    """Write a page; a refused write (a full disk, read-only storage) is one line naming it."""
    try:
        atomic_write_text(target, text)
    except OSError as e:
        raise ReportError(f"cannot write {target}: {e.strerror or e}") from None


def write_index(
    runs_dir: str | Path,
    out: str | Path | None = None,
    *,
    data_dir: str | None = None,
    test=None,
) -> Path:
    """Write a page comparing the runs in ``runs_dir`` (one row each, curves overlaid), and
    the page of every run there that has none yet (``test`` used where it fits the model,
    each run's own test split otherwise)."""
    return _write_index(_directory(runs_dir), out, _TestSplits(data_dir, test))


def _write_index(directory: Path, out: str | Path | None, splits: _TestSplits) -> Path:
    data = collect.index_data(directory)
    if not data["rows"]:
        raise ReportError(
            f"{directory}: not a run directory (no config.json, status.json or model), "
            "and no run directories in it"
        )
    target = Path(out) if out is not None else directory / REPORT_HTML
    _sub_pages(directory, data["rows"], target, out is not None, splits)
    _save(target, page_html(data))
    return target
