"""A run directory as a place on disk: where it goes, what its files are called, and its JSON
descriptions read back (the status, the settings a resumed run must keep).

Nothing here needs torch, so the command line checks ``--out``, ``--resume`` and a MODEL path
before it imports torch; :mod:`.artifacts` writes and reads the files' contents.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..errors import ConfigError, ModelFileError, ResumeError
from .liveness import LIVE, alive, truthful

DEFAULT_ROOT = "runs"
MODEL_FILE = "model.safetensors"
MODEL_JSON = "model.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
CONFIG_JSON = "config.json"
STATUS_JSON = "status.json"
HISTORY_JSON = "history.json"
METRICS_CSV = "metrics.csv"
# What a resumed run may change: more epochs, and where the (checksum-verified) data lives.
RESUMABLE_CHANGES = ("epochs", "data_dir")


def default_name(now: _dt.datetime | None = None) -> str:
    return (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")


def now() -> str:
    """Local time with its UTC offset, to the second: ``started`` and ``finished`` of a status."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def check_new(out: str | Path | None) -> None:
    """Refuse an ``out`` that exists and is not an empty directory (None: a new name is made)."""
    if out is None:
        return
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"{path} already exists and is not empty; choose a new --out")


def make_run_dir(out: str | Path | None = None, root: str | Path = DEFAULT_ROOT) -> Path:
    """A new, empty run directory: ``out``, or ``root/<date-time>`` (suffixed if taken)."""
    check_new(out)
    if out is not None:
        path = Path(out)
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


def read_status(directory: str | Path, *, as_written: bool = False) -> dict[str, Any] | None:
    """The run's ``status.json`` as a reader should show it: a ``running`` run whose process is
    gone is ``died`` (:func:`.liveness.truthful`); ``as_written`` reads the file as it is."""
    try:
        data = json.loads((Path(directory) / STATUS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return data if as_written else truthful(data, directory)


def check_not_running(directory: str | Path) -> None:
    """Refuse to continue a run whose process is still writing it: two writers must never
    share a run directory."""
    status = read_status(directory, as_written=True)
    if status is None or status.get("status") != LIVE or alive(status) is False:
        return
    who = f"pid {status.get('pid')} on {status.get('host')}" if "pid" in status else "a process"
    raise ResumeError(
        f"{directory} is still running ({who}); stop that process first, or wait for it"
    )


def read_run_config(directory: str | Path) -> dict[str, Any]:
    if not Path(directory).is_dir():
        raise ResumeError(f"{directory}: no such run directory")
    path = Path(directory) / CONFIG_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResumeError(f"{directory}: no {CONFIG_JSON}; not a run directory") from None
    except (OSError, ValueError) as e:
        raise ResumeError(f"{path}: unreadable ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ResumeError(f"{path}: not a run description")
    return data


def resolve_model_path(path: str | Path) -> Path:
    """A model file, or a run directory holding one (with a reason when it does not)."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: no such file")
    if not p.is_dir():
        return p
    file = p / MODEL_FILE
    if file.exists():
        return file
    status = read_status(p)
    why = ""
    if status and status.get("status") != "completed":
        error = f": {status['error']}" if status.get("error") else ""
        why = f" (the run {status['status']}{error})"
    raise ModelFileError(f"{p}: no {MODEL_FILE} in this directory{why}")


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The settings of the run in ``run_dir`` with ``overrides`` applied; only
    :data:`RESUMABLE_CHANGES` may differ, anything else is a :class:`ResumeError`."""
    check_not_running(run_dir)
    saved = read_run_config(run_dir)["config"]
    try:
        base = TrainConfig.from_dict(saved)
    except ConfigError as e:
        raise ResumeError(f"{run_dir}: its config.json is not usable ({e})") from None
    config = base.replace(**(overrides or {}))
    check_resumable(run_dir, saved, config)
    return config


def check_resumable(run_dir: str | Path, saved: dict[str, Any], config: TrainConfig) -> None:
    wanted = config.to_dict()
    # A setting that an older run's config.json lacks had its default there.
    defaults = type(config)().to_dict()
    for key in sorted(set(saved) | set(wanted)):
        if key in RESUMABLE_CHANGES or saved.get(key, defaults.get(key)) == wanted.get(key):
            continue
        was = saved.get(key, defaults.get(key))
        raise ResumeError(
            f"{run_dir} was trained with {key}={was!r}, not {wanted.get(key)!r}; "
            f"a resumed run keeps every setting except {', '.join(RESUMABLE_CHANGES)}"
        )
