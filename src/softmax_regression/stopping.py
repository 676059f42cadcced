"""How a process is asked to stop, and how it stops: like Ctrl-C, whatever asked.

Ctrl-C (SIGINT) raises Python's :class:`KeyboardInterrupt`. The signals a scheduler or a
closing terminal sends mean the same thing and are handled the same way: SIGTERM (``timeout``,
Slurm's time limit, Kubernetes, systemd, ``kill``) and SIGHUP (the terminal or the SSH session
closed) raise :class:`Terminated`, a subclass of :class:`KeyboardInterrupt`, in the main
thread. So every place that ends a run on Ctrl-C (the run's final status, the pending writes
waited for, the command's one line and exit status) ends it the same way on them; the status
word is ``terminated`` and the signal is named beside it, the exit status 128 + the signal's
number, as a shell reports for a program the signal ended.

The first termination signal raises; later ones while the run is ending are ignored, so a
second ``kill`` cannot cut the final status short (SIGKILL still ends the process at once).
Once the command has its answer (:func:`ending`), a first signal is only recorded: the process
is already on its way out with its own status and one line, and a signal arriving while the
interpreter shuts down (torchrun stopping the ranks of a failed job) must not print a
traceback there.
A SIGHUP that the parent ignores (``nohup``) stays ignored.

:func:`pause_point` is the test suite's way to stop a real run at a point it chooses: with
``SOFTMAX_REGRESSION_TEST_PAUSE=epoch:2`` (or ``lbfgs:5``: the fifth L-BFGS iteration of a
best-linear fit) the process writes ``SOFTMAX_REGRESSION_TEST_PAUSE_MARKER`` (its pid) when it
gets there and waits for a signal, so that what a signal finds is decided, not timed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType

TERMINATING = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)

PAUSE_ENV = "SOFTMAX_REGRESSION_TEST_PAUSE"
PAUSE_MARKER_ENV = "SOFTMAX_REGRESSION_TEST_PAUSE_MARKER"
# A paused process that no signal reaches goes on after this long (the test then fails on
# what it finds instead of hanging).
PAUSE_SECONDS = 120.0


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by ``signum`` (SIGTERM or SIGHUP)."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"terminated by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        return signal_name(self.signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


_received: int | None = None
_ending = False


def received() -> int | None:
    """The termination signal this process has received (None: none yet)."""
    return _received


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is not None:
        return  # already ending: let the final status be written
    _received = signum
    if _ending:
        return  # the command has its answer and is on its way out
    raise Terminated(signum)


def ending() -> None:
    """The command has its answer (a status, or the error it ends with): from here on a
    termination signal is recorded, not raised."""
    global _ending
    _ending = True


def install() -> None:
    """Make SIGTERM and SIGHUP raise :class:`Terminated` in this (the main) thread; nothing
    elsewhere, and an ignored SIGHUP (``nohup``) stays ignored."""
    global _ending
    if threading.current_thread() is not threading.main_thread():
        return
    _ending = False
    for sig in TERMINATING:
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue
        signal.signal(sig, _handler)


def outcome(error: BaseException) -> tuple[str, dict[str, str]]:
    """(status word, extra fields) of a run that ``error`` ended, when it was asked to stop:
    ``terminated`` with the signal's name, or ``interrupted`` (Ctrl-C). An error raised after
    a termination signal arrived (a rank whose peer stopped first) is that signal's too."""
    if isinstance(error, Terminated):
        return "terminated", {"signal": error.signal_name}
    if _received is not None:
        return "terminated", {"signal": signal_name(_received)}
    return "interrupted", {}


def pausing(kind: str, number: int) -> bool:
    """Whether :func:`pause_point` ``(kind, number)`` will pause (so that the writes it should
    find on disk can be waited for first)."""
    return os.environ.get(PAUSE_ENV) == f"{kind}:{number}"


def pause_point(kind: str, number: int) -> None:
    """Stop here and wait for a signal when ``SOFTMAX_REGRESSION_TEST_PAUSE`` is
    ``kind:number`` (module docstring). Does nothing otherwise."""
    if not pausing(kind, number):
        return
    marker = os.environ.get(PAUSE_MARKER_ENV)
    if marker and os.environ.get("RANK", "0") == "0":
        tmp = Path(f"{marker}.tmp")
        tmp.write_text(str(os.getpid()), encoding="utf-8")
        tmp.replace(marker)
    deadline = time.monotonic() + PAUSE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.01)
