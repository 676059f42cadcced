"""Start torchrun jobs on this machine's loopback for the multi-process tests, and end them.

Every job binds to 127.0.0.1 on a free port (``--rdzv-endpoint``), gloo is told to use the
loopback interface, each job runs in its own process group and is killed as a group if it
outlives its timeout or the test fails, so no test leaves a process behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

WORKER = Path(__file__).with_name("dist_fit.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHELASTIC_", "MASTER_"))}
    e.update(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return {**e, **(extra or {})}


def torchrun_args(
    nproc: int,
    port: int,
    *,
    nnodes: int = 1,
    node_rank: int | None = None,
    max_restarts: int = 0,
    backend: str = "c10d",
) -> list[str]:
    args = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes)]
    args += ["--nproc-per-node", str(nproc), "--rdzv-endpoint", f"127.0.0.1:{port}"]
    args += ["--rdzv-backend", backend, "--max-restarts", str(max_restarts)]
    args += ["--monitor-interval", "0.2"]
    if node_rank is not None:
        args += ["--node-rank", str(node_rank)]
    return args


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


class Job:
    """A started command in its own session; :meth:`wait` or the context exit ends it."""

    def __init__(
        self, args: Sequence[str], cwd: Path | None = None, extra_env: dict | None = None
    ) -> None:
        self.args = list(args)
        self.proc = subprocess.Popen(
            self.args,
            cwd=cwd,
            env=env(extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def wait(self, timeout: float) -> Finished:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate()
            raise AssertionError(
                f"{' '.join(self.args)} still running after {timeout} s\n{out}\n{err}"
            ) from None
        return Finished(self.proc.returncode, out, err)

    def kill(self) -> None:
        """SIGKILL to the job and everything under it: torchrun starts each worker in a
        session of its own, so the job's process group alone would miss them."""
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)

    def workers(self) -> dict[int, int]:
        """{rank: pid} of the workers torchrun started under this job (read from /proc)."""
        found = {}
        for pid in _descendants(self.proc.pid):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            values = dict(v.split(b"=", 1) for v in environ if b"=" in v)
            if b"RANK" in values and b"TORCHELASTIC_RUN_ID" in values:
                found[int(values[b"RANK"])] = pid
        return found


def _descendants(pid: int) -> Iterator[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return
    for c in map(int, children):
        yield c
        yield from _descendants(c)


@contextlib.contextmanager
def started(
    args: Sequence[str], cwd: Path | None = None, extra_env: dict | None = None
) -> Iterator[Job]:
    job = Job(args, cwd, extra_env)
    try:
        yield job
    finally:
        job.kill()  # whatever is still running, torchrun's workers included
        if job.proc.returncode is None:
            job.proc.communicate()


def run(
    args: Sequence[str], timeout: float, cwd: Path | None = None, extra_env: dict | None = None
) -> Finished:
    with started(args, cwd, extra_env) as job:
        return job.wait(timeout)
