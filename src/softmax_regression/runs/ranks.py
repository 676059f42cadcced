"""What the ranks of a data-parallel job do around a run directory.

Only rank 0 reads and writes the run directory (the other ranks may be on machines that do
not share its filesystem): it resolves ``--resume`` or a restart, creates the directory,
then hands the directory's name and the checkpoint's state to every other rank in one
broadcast; they train from the same state and write nothing. When rank 0 cannot prepare
the run, the others receive its error instead and end with its exit status, silently (rank 0
has printed it).

Elastic restarts (``torchrun --max-restarts K``): torchrun starts every worker again with the
same arguments after one dies. A restarted job finds its run directory by name (``--out``,
which is therefore required when restarts are allowed) and continues from the last
completed epoch's checkpoint there, which is the same run as one that never stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..config import TrainConfig
from ..distributed import World
from ..errors import ConfigError, RankZeroFailed, SoftmaxRegressionError
from ..train import TrainState
from .directory import CHECKPOINT_FILE, read_run_config

T = TypeVar("T")


def agree(world: World | None, config: TrainConfig, **extra: Any) -> None:
    """Every rank was started with the same settings (checked before anything is written)."""
    if world is None or not world.parallel:
        return
    settings = {k: v for k, v in config.to_dict().items() if k not in ("data_dir", "device")}
    world.check_same({**settings, **{k: None if v is None else str(v) for k, v in extra.items()}})


def after_restart(
    world: World | None,
    config: TrainConfig,
    out: str | Path | None,
    resume: str | Path | None,
) -> str | Path | None:
    """The run directory to resume (or None) for rank 0, given torchrun's restart count.

    On a restart, ``out`` holding a checkpoint is resumed; ``out`` without one (the job died
    in its first epoch) is emptied of the run's files and started again, but only when its
    config.json is this run's: a directory that was never this job's is left alone.
    """
    if world is None:
        return resume
    if world.max_restarts > 0 and out is None and resume is None:
        raise ConfigError(
            "with torchrun --max-restarts, name the run directory with --out DIR, so that a "
            "restarted job finds it and continues from its last completed epoch"
        )
    if world.restart == 0 or resume is not None or out is None:
        return resume
    directory = Path(out)
    if (directory / CHECKPOINT_FILE).exists():
        return directory
    try:
        ours = read_run_config(directory)["config"] == config.to_dict()
    except SoftmaxRegressionError:
        ours = False
    if ours:
        for path in directory.iterdir():
            if path.is_file() and (path.name.startswith(".") or path.suffix in _RUN_SUFFIXES):
                path.unlink(missing_ok=True)
    return None


_RUN_SUFFIXES = (".json", ".csv", ".png", ".safetensors")


def hand_over(world: World | None, directory: Path, state: TrainState | None) -> None:
    """Rank 0: tell the other ranks where the run is and which state it starts from."""
    if world is not None and world.parallel:
        world.broadcast(
            {"directory": str(directory), "state": state}, "handing the run to the other ranks"
        )


def hand_over_error(world: World | None, error: BaseException) -> None:
    """Rank 0: the run cannot start; the other ranks end with this exit status."""
    if world is not None and world.parallel and isinstance(error, SoftmaxRegressionError):
        world.broadcast(
            {"error": str(error), "exit_code": error.exit_code},
            "telling the other ranks that the run cannot start",
        )


def receive(world: World) -> tuple[Path, TrainState | None]:
    """Every rank but 0: the run directory's name and the state to start from."""
    message = world.broadcast(None, "waiting for rank 0 to prepare the run directory")
    if "error" in message:
        raise RankZeroFailed(message["error"], message["exit_code"])
    return Path(message["directory"]), message["state"]


def on_main(world: World | None, make: Callable[[], T], what: str) -> T:
    """``make()`` on rank 0 (creating a directory, say), its value on every rank; when it
    raises, rank 0 raises the error and the other ranks end silently with its status."""
    if world is None or not world.parallel:
        return make()
    if world.is_main:
        try:
            value = make()
        except BaseException as e:
            hand_over_error(world, e)
            raise
        world.broadcast({"value": value}, what)
        return value
    message = world.broadcast(None, what)
    if "error" in message:
        raise RankZeroFailed(message["error"], message["exit_code"])
    return message["value"]
