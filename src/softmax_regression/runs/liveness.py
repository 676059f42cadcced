"""Whether the process writing a run is still there: ``status.json`` never lies about one that
is gone.

A process killed by SIGKILL (the OOM killer, ``kill -9``), a power cut or a machine that
vanished cannot write its final status; its run would say ``running`` forever. So the writer
(:class:`LiveStatus`) records in ``status.json`` who it is (pid, host, the process's start
time: pids are reused) and a heartbeat, refreshed every :data:`HEARTBEAT_SECONDS` by a daemon
thread, and every reader asks :func:`truthful`: a ``running`` run whose process is gone from
this host, or whose heartbeat is older than :data:`STALE_SECONDS` when it was written on
another host, is shown as ``died``, with its last completed epoch and how to continue it.

The process start time is the kernel's (``/proc/PID/stat``, Linux); elsewhere it is not
recorded, and a pid that exists counts as alive. Nothing here needs torch.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import socket
import threading
from pathlib import Path
from typing import Any

from .._io import atomic_write_json

HEARTBEAT_SECONDS = 5.0
# A heartbeat older than this, written on another host, means its writer is gone: a dozen
# missed beats, room for a slow shared filesystem and clocks a little apart.
STALE_SECONDS = 60.0
LIVE = "running"
DIED = "died"


def host() -> str:
    return socket.gethostname()


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/PID/stat``'s field 22);
    None when it does not exist or this is not Linux."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        # The command name (field 2) is in parentheses and may hold spaces and ')'.
        return int(text[text.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _now() -> _dt.datetime:
    return _dt.datetime.now().astimezone()


def stamp(when: _dt.datetime | None = None) -> str:
    """A heartbeat: local time with its UTC offset, to the millisecond."""
    return (when or _now()).isoformat(timespec="milliseconds")


def identity() -> dict[str, Any]:
    """Who this process is, as ``status.json`` records it."""
    pid = os.getpid()
    return {"pid": pid, "host": host(), "process_start": process_start(pid)}


def alive(status: dict[str, Any], stale: float = STALE_SECONDS) -> bool | None:
    """Whether the process that wrote ``status`` (a ``running`` one) is still there: True,
    False, or None when the status does not say who wrote it (written before it did)."""
    pid, where = status.get("pid"), status.get("host")
    if not isinstance(pid, int) or not isinstance(where, str):
        return None
    if where == host():
        started = process_start(pid)
        if started is not None:
            recorded = status.get("process_start")
            return not isinstance(recorded, int) or recorded == started
        if Path("/proc/self/stat").exists():
            return False  # /proc works here, and has no such process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:  # it exists, another user's
            return True
        return True
    beat = status.get("heartbeat")
    try:
        when = _dt.datetime.fromisoformat(beat) if isinstance(beat, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        return None
    return (_now() - when).total_seconds() <= stale


def truthful(status: dict[str, Any] | None, directory: str | Path) -> dict[str, Any] | None:
    """``status`` as a reader should show it: a ``running`` run whose writer is gone is
    ``died``, with an ``error`` saying so, its last completed epoch and how to resume."""
    if not isinstance(status, dict) or status.get("status") != LIVE or alive(status) is not False:
        return status
    pid, where = status.get("pid"), status.get("host")
    if where == host():
        gone = f"its process ({pid}) is gone"
    else:
        gone = f"no heartbeat from {where} since {status.get('heartbeat')}"
    epochs, solver = status.get("epochs_completed"), status.get("solver")
    last = f"; last completed epoch {epochs}" if isinstance(epochs, int) else ""
    if isinstance(solver, dict) and isinstance(solver.get("iterations"), int):
        last = f"; solver state kept at L-BFGS iteration {solver['iterations']}"
    resume = f"; resume with `train --resume {directory}`" if status.get("resumable", True) else ""
    return {**status, "status": DIED, "error": f"{gone}{last}{resume}"}


class LiveStatus:
    """``status.json`` of a run this process is writing: ``running`` with a heartbeat every
    ``every`` seconds (a daemon thread; a missed beat on a full disk is only skipped), until
    :meth:`end` writes the final status, which no beat can overwrite afterwards."""

    def __init__(self, directory: str | Path, every: float = HEARTBEAT_SECONDS) -> None:
        self.path = Path(directory) / "status.json"
        self.every = every
        self.fields: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        atomic_write_json(self.path, {"status": LIVE, **self.fields, "heartbeat": stamp()})

    def start(self, **fields: Any) -> None:
        """Write ``running`` with ``fields`` and who is writing; then beat."""
        with self._lock:
            self.fields = {**fields, **identity()}
            self._write()
        self._thread = threading.Thread(target=self._beat, name="run-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock, contextlib.suppress(OSError):
                if not self._stop.is_set():
                    self._write()

    def update(self, **fields: Any) -> None:
        """Add ``fields`` (the last completed epoch, say) and write them now."""
        with self._lock:
            if self._stop.is_set():
                return
            self.fields.update(fields)
            self._write()

    def end(self, status: str, **fields: Any) -> None:
        """Stop beating; write the final ``status`` (who wrote it kept beside it)."""
        self.stop()
        kept = {k: self.fields[k] for k in ("pid", "host", "process_start") if k in self.fields}
        atomic_write_json(self.path, {"status": status, **fields, **kept})

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
