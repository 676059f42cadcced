"""Several processes, one training run: the process group that ``torchrun`` sets up, as a
:class:`World` the trainer and the run directory can use.

``torchrun`` (or ``train --nproc N``, which starts the same thing through torch's launcher API)
starts one process per rank and tells each who it is in environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` or its own store).
:func:`init` reads them, joins the group with gloo on the CPU or NCCL on CUDA (one GPU per
local rank) and a collective timeout, and returns a :class:`World`; without them it returns
None and everything runs in one process as before.

Data parallelism here is the single-process run cut into pieces, not a different recipe:
every rank draws the same seeded permutation, takes its share of each global batch
(:func:`share`: as even as possible, so a rank may have nothing in the last batch and still
joins the all-reduce), and the gradients are *sums* over the shares divided by the global
batch size. Integer counts are summed as int64 and losses as float64, so the reduced metrics
are the same numbers whatever the number of ranks, up to the float32 rounding of each share.

Every collective goes through :class:`World`, which turns a failure (a rank that died, a
rank that hangs past the timeout, a rendezvous nobody answers) into one
:class:`DistributedError` line naming the rank and what it was waiting for.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from . import stopping
from .errors import ConfigError, DeviceError, DistributedError

# Seconds a collective may wait for the other ranks before the run is ended with an error:
# long enough for a slow rank to load the data and write a checkpoint, short enough that a
# hung job does not sit on its machines for torch's default half hour.
DEFAULT_TIMEOUT = 300.0
# The variables torchrun gives every worker; their presence is what "launched" means here.
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel job, and the collectives it runs.

    ``size == 1`` (torchrun with one process) has no process group: every collective is the
    identity, and :func:`fit <softmax_regression.train.fit>` takes its single-process path.
    """

    rank: int
    size: int
    local_rank: int
    local_size: int
    device: torch.device  # this rank's device: cpu, or cuda:<local rank>
    timeout: float
    restart: int = 0  # torchrun's restart count: > 0 after an elastic restart
    max_restarts: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and writes files."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    # ---------------------------------------------------------------- collectives

    def sum_(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """All-reduce ``tensor`` in place (sum over ranks); every rank gets the same bits."""
        if self.parallel:
            with self._failing(what):
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_same_(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """:meth:`sum_` taken in rank order on every rank (every rank's tensor gathered, then
        added 0, 1, 2, ...), in place. The backend's all-reduce may add in another order on
        each rank (gloo with 3 or more ranks does), which changes the last bits: fine for a
        step's gradient, not for the numbers a solver's decisions are made on (a line search
        that stops on one rank and not on another leaves the others waiting)."""
        if not self.parallel:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        with self._failing(what):
            dist.all_gather(parts, tensor.contiguous())
        total = parts[0].clone()
        for part in parts[1:]:
            total += part
        return tensor.copy_(total)

    def gather(self, obj: Any, what: str) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.parallel:
            return [obj]
        out: list[Any] = [None] * self.size
        with self._failing(what):
            dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any, what: str) -> Any:
        """Rank 0's ``obj`` on every rank (the others pass anything, e.g. None)."""
        if not self.parallel:
            return obj
        box = [obj if self.is_main else None]
        with self._failing(what):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def check_same(self, settings: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` on every rank when any rank's ``settings`` differ from
        rank 0's, naming the first setting and the first rank that differs. Run once at the
        start: ranks that disagree would otherwise train on different batches or hang."""
        everyone = self.gather(settings, "comparing the settings of every rank")
        first = everyone[0]
        for rank, other in enumerate(everyone[1:], start=1):
            for key in sorted(set(first) | set(other)):
                if first.get(key) != other.get(key):
                    raise ConfigError(
                        f"the ranks disagree on {key}: rank 0 has {first.get(key)!r}, rank "
                        f"{rank} has {other.get(key)!r}; start every rank with the same settings"
                    )

    def _failing(self, what: str) -> _Failing:
        return _Failing(self, what)


class _Failing:
    """Turns an error from a collective into a one-line :class:`DistributedError`."""

    def __init__(self, world: World, what: str) -> None:
        self.world, self.what = world, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: Any) -> bool:
        if e is None or not isinstance(e, RuntimeError):
            return False
        raise collective_error(self.world.rank, self.what, self.world.timeout, e) from None


def collective_error(rank: int, what: str, timeout: float, e: BaseException) -> DistributedError:
    text = " ".join(str(e).split())
    low = text.lower()
    if "timed out" in low or "timeout" in low:
        why = (
            f"no answer within the {timeout:g} s collective timeout: another rank is hung or "
            "stopped (see its output; --dist-timeout sets the limit)"
        )
    elif "closed" in low or "reset" in low or "broken pipe" in low or "refused" in low:
        why = "another rank went away (it crashed or was killed; see its output)"
    else:
        why = text[:300]
    return DistributedError(f"rank {rank}: {what} failed: {why}")


# --------------------------------------------------------------------------- shares


def share(n: int, size: int, rank: int) -> tuple[int, int]:
    """``[lo, hi)``: rank ``rank``'s part of ``n`` items split over ``size`` ranks as evenly
    as possible, the first ``n % size`` ranks taking one more; contiguous and disjoint."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def local_indices(
    perm: torch.Tensor, batch: int, size: int, rank: int
) -> tuple[torch.Tensor, list[int]]:
    """This rank's part of every global batch of ``perm`` (batches of ``batch``, the last one
    shorter), concatenated, and the length of each part (zero where it has none)."""
    n = perm.shape[0]
    full, rest = divmod(n, batch)
    lo, hi = share(batch, size, rank)
    parts = [perm[: full * batch].view(full, batch)[:, lo:hi].reshape(-1)]
    sizes = [hi - lo] * full
    if rest:
        rlo, rhi = share(rest, size, rank)
        parts.append(perm[full * batch + rlo : full * batch + rhi])
        sizes.append(rhi - rlo)
    return torch.cat(parts), sizes


# --------------------------------------------------------------------------- set-up


def launched() -> bool:
    """True in a process that torchrun (or an equivalent launcher) started."""
    return all(k in os.environ for k in _ENV)


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ConfigError(f"the launcher did not set {name}")
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} from the launcher is not an integer") from None


def _device(requested: str, local_rank: int, local_size: int) -> torch.device:
    """cpu, or the local rank's own GPU; one GPU per local rank or a one-line error."""
    if requested not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"device must be one of auto, cpu, cuda, got {requested!r}")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested == "cpu" or (requested == "auto" and gpus < local_size):
        return torch.device("cpu")
    if gpus < local_size:
        raise DeviceError(
            f"--device cuda needs one GPU per local rank: {local_size} ranks on this machine, "
            f"{gpus} GPU{'s' if gpus != 1 else ''} visible; start fewer processes per node "
            "(--nproc-per-node) or use --device cpu"
        )
    return torch.device("cuda", local_rank)


def init(device: str = "auto", timeout: float = DEFAULT_TIMEOUT) -> World | None:
    """Join the process group torchrun set up (once per process); None when not launched.

    The backend follows the device: gloo on the CPU, NCCL on CUDA. ``timeout`` (seconds)
    bounds every collective, so a hung or stopped rank ends the job with an error instead
    of stalling it.
    """
    if not launched():
        return None
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ConfigError(f"the collective timeout must be a positive number, got {timeout!r}")
    rank, size = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK")
    local_size = _env_int("LOCAL_WORLD_SIZE", size)
    where = _device(device, local_rank, local_size)
    world = World(
        rank=rank,
        size=size,
        local_rank=local_rank,
        local_size=local_size,
        device=where,
        timeout=float(timeout),
        restart=_env_int("TORCHELASTIC_RESTART_COUNT", 0),
        max_restarts=_env_int("TORCHELASTIC_MAX_RESTARTS", 0),
    )
    if size > 1 and not dist.is_initialized():
        _check_reachable(rank, timeout)
        if where.type == "cuda":
            torch.cuda.set_device(where)
        backend = "nccl" if where.type == "cuda" else "gloo"
        try:
            dist.init_process_group(
                backend,
                timeout=_dt.timedelta(seconds=timeout),
                **_rendezvous(rank, size, world.restart, timeout),
                **({"device_id": where} if where.type == "cuda" else {}),
            )
        except (RuntimeError, ValueError) as e:
            addr = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
            text = " ".join(str(e).split())[:200]
            raise DistributedError(
                f"rank {rank}: cannot join the process group at {addr} ({backend}): {text}"
            ) from None
    return world


def _rendezvous(rank: int, size: int, restart: int, timeout: float) -> dict[str, Any]:
    """How the group finds itself: torchrun's own store, under a key prefix of its own per
    restart, else the ``MASTER_ADDR`` variables (``env://``).

    torchrun keeps one store for the whole job and its workers reuse it; after an elastic
    restart the previous attempt's addresses are still in it, and a new rank that reads its
    peer's old address before the peer has written its new one fails to connect (seen in this
    project's restart test). A prefix per attempt keeps the attempts apart.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {}
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        size,
        is_master=False,
        timeout=_dt.timedelta(seconds=timeout),
    )
    prefix = f"softmax-regression/{os.environ.get('TORCHELASTIC_RUN_ID', '')}/attempt-{restart}"
    return {"store": dist.PrefixStore(prefix, store), "rank": rank, "world_size": size}


def _check_reachable(rank: int, timeout: float) -> None:
    """Outside torchrun (plain ``RANK``/``MASTER_ADDR`` variables), a rank other than 0 first
    checks that the master's port answers, retrying until ``timeout``: torch's own store
    client would report the same failure as pages of C++ log."""
    if rank == 0 or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return
    addr, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    where = f"{addr}:{port}"
    if not addr or not port.isdigit():
        raise DistributedError(
            f"rank {rank}: MASTER_ADDR and MASTER_PORT must name the "
            f"rendezvous (host and port), got {where!r}"
        )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((addr, int(port)), timeout=min(timeout, 5.0)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"rank {rank}: the rendezvous at {where} did not answer within {timeout:g} s "
                    f"({e.strerror or e}); is rank 0 running, and is the address reachable?"
                ) from None
            time.sleep(0.5)


def shutdown() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def ranks_of(items: int, world: World | None) -> Iterator[int]:
    """The items (by index) this rank runs when independent runs are spread over the ranks:
    ``i % size == rank``, so each run lands on one rank and every rank gets its turn."""
    if world is None:
        yield from range(items)
    else:
        yield from range(world.rank, items, world.size)


def launch(nproc: int, argv: Sequence[str], *, max_restarts: int = 0) -> int:
    """Run ``python -m softmax_regression ARGV`` as ``nproc`` ranks on this machine, through
    torch's own launcher (``torch.distributed.launcher.api``, what torchrun uses), with a
    rendezvous on a free loopback port. Returns the exit status: 0, or that of the first
    rank that failed (its one-line error is already on stderr)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"--nproc must be a positive integer, got {nproc!r}")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        run_id=f"softmax-regression-{uuid.uuid4().hex[:12]}",
        max_restarts=max_restarts,
        monitor_interval=0.2,
    )
    # The agent logs each worker it stops; the failed rank's own line says what went wrong.
    # Its modules' loggers have levels of their own (the signal it passes on is logged too).
    agent_logs = [
        logging.getLogger(name)
        for name in ["torch.distributed.elastic", *list(logging.Logger.manager.loggerDict)]
        if name == "torch.distributed.elastic" or name.startswith("torch.distributed.elastic.")
    ]
    levels = [log.level for log in agent_logs]
    for log in agent_logs:
        log.setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, sys.executable)("-m", "softmax_regression", *argv)
    except ChildFailedError as e:
        first = min(e.failures.values(), key=lambda f: f.timestamp)
        code = first.exitcode
        return code if 0 < code < 256 else 1
    except SignalException as e:
        # The launcher was signalled (SIGTERM, SIGHUP, Ctrl-C): the agent has passed the
        # signal on to every rank and waited for them; each ended as that signal ends a run,
        # and rank 0 said so. The launcher ends the same way, silently.
        return 128 + int(e.sigval)
    finally:
        for log, level in zip(agent_logs, levels, strict=True):
            log.setLevel(level)
        stopping.install()  # the agent replaced the handlers with its own
    return 0
