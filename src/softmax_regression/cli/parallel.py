"""The options every training command shares for running as several processes.

``--nproc N`` starts the same command as N ranks on this machine through torch's launcher
API (what ``torchrun --nproc-per-node N`` does); under torchrun, or in one of those ranks,
:func:`join` joins the process group. Ranks other than 0 print nothing: their standard output
goes to the null device, and their errors are shown only when they are their own (rank 0
reports the ones every rank shares). Nothing here imports torch until a process group is
actually needed, so the command line still answers a bad argument at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError, NonFiniteLossError, RankZeroFailed, ResumeError

if TYPE_CHECKING:
    from ..distributed import World

# distributed.DEFAULT_TIMEOUT, which is not imported here (it imports torch); a test holds
# the two equal.
DEFAULT_TIMEOUT = 300.0


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="run as N processes on this machine (torch.distributed; the same as "
        "torchrun --nproc-per-node N -m softmax_regression ...)",
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="under torchrun: how long a rank waits for the others before the job fails "
        "(default: %(default)g)",
    )


def launched() -> bool:
    """True in a process that torchrun (or ``--nproc``) started as one rank of a job."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def owns_paths() -> bool:
    """Whether this process checks the paths it is given (``--out`` new and empty, the run
    to ``--resume``): one process, or rank 0 of a job's first attempt. The other ranks may
    not see rank 0's filesystem; after an elastic restart ``--out`` is the run to continue."""
    if not launched():
        return True
    return os.environ["RANK"] == "0" and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"


def is_rank_0() -> bool:
    return not launched() or os.environ["RANK"] == "0"


def relaunch(args: argparse.Namespace) -> int | None:
    """With ``--nproc N`` outside torchrun: run this command as N ranks, return its exit
    status. Otherwise None (go on in this process)."""
    if args.nproc is None or launched():
        return None
    if args.nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {args.nproc}")
    from ..distributed import launch

    return launch(args.nproc, _without_nproc(args.argv))


def _without_nproc(argv: Sequence[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def join(args: argparse.Namespace, device: str) -> World | None:
    """This process's place in the job (None when not launched by torchrun)."""
    if not launched():
        return None
    from ..distributed import init

    world = init(device, args.dist_timeout)
    if world is not None and not world.is_main:
        args.quiet = True
        args.no_report = True  # rank 0 writes the report page, as every other file
        _quiet.append(open(os.devnull, "w"))  # noqa: SIM115 (closed by leave())
        sys.stdout = _quiet[-1]
    return world


_quiet: list = []  # this rank's null stdout, while it is one


def leave() -> None:
    """Leave the process group, if this process joined one."""
    if "softmax_regression.distributed" in sys.modules:
        from ..distributed import shutdown

        shutdown()
    while _quiet:
        quiet = _quiet.pop()
        if sys.stdout is quiet:
            sys.stdout = sys.__stdout__
        quiet.close()


# Errors every rank raises alike (a setting, a resume, a loss that diverged): rank 0 reports.
_SHARED = (ConfigError, ResumeError, NonFiniteLossError, RankZeroFailed)


def silent_on_this_rank(error: BaseException) -> bool:
    """True when this process is a rank other than 0 and ``error`` is one rank 0 reports."""
    return not is_rank_0() and isinstance(error, _SHARED)
