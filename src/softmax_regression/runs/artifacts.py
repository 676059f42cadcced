"""Files a run leaves: the model, the resume checkpoint, the history, the run's description.

Tensors go into safetensors files (no pickle: opening someone else's model cannot run code),
descriptions into JSON beside them. Every file is written under a temporary name and renamed
(``_io``), so a crash never leaves a truncated file under a final name.
"""

from __future__ import annotations

import contextlib
import json
import platform
import struct
import sys
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..data import CLASSES
from ..errors import ModelFileError, ResumeError
from ..model import NUM_CLASSES, NUM_INPUTS, SoftmaxRegression
from ..train import History, TrainState

# The file names and the JSON descriptions read back need no torch: they live in .directory,
# and are this module's names too (``artifacts.read_status(run)``, ``artifacts.MODEL_FILE``).
from .directory import CHECKPOINT_FILE as CHECKPOINT_FILE
from .directory import CONFIG_JSON as CONFIG_JSON
from .directory import HISTORY_JSON as HISTORY_JSON
from .directory import METRICS_CSV as METRICS_CSV
from .directory import MODEL_FILE as MODEL_FILE
from .directory import MODEL_JSON as MODEL_JSON
from .directory import STATUS_JSON as STATUS_JSON
from .directory import read_run_config as read_run_config
from .directory import read_status as read_status
from .directory import resolve_model_path as resolve_model_path

MODEL_FORMAT = "softmax-regression/model"
CHECKPOINT_FORMAT = "softmax-regression/checkpoint"
FORMAT_VERSION = 1
# A model or checkpoint of ours is a few tens of KB; anything far larger is not one of ours.
MAX_FILE_BYTES = 64 << 20


# --------------------------------------------------------------------------- safetensors


def _safetensors_bytes(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)


def _read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; a one-line ModelFileError if it is not one."""
    from safetensors.torch import load

    try:
        if path.is_dir():
            raise ModelFileError(f"{path}: is a directory, not a {what}")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ModelFileError(f"{path}: {size} bytes is far too large for a {what}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n]) if 8 + n <= len(data) else None
        tensors = load(data)
    except Exception as e:  # safetensors raises its own error types, json/struct theirs
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(f"{path}: not a valid safetensors file ({detail})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return tensors, meta if isinstance(meta, dict) else {}


def _check_format(path: Path, meta: dict[str, str], expected: str, what: str) -> None:
    fmt = meta.get("format")
    if fmt != expected:
        found = f"format {fmt!r}" if fmt else "no format tag"
        raise ModelFileError(f"{path}: not a softmax-regression {what} ({found})")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        version = -1
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: {what} format version {meta.get('format_version')!r} is not supported "
            f"(this version reads {FORMAT_VERSION})"
        )


def _check_params(path: Path, tensors: dict[str, torch.Tensor], w: str, b: str) -> None:
    shapes = {w: (NUM_CLASSES, NUM_INPUTS), b: (NUM_CLASSES,)}
    for name, shape in shapes.items():
        t = tensors.get(name)
        if t is None:
            raise ModelFileError(f"{path}: tensor {name!r} is missing")
        if tuple(t.shape) != shape or t.dtype != torch.float32:
            raise ModelFileError(
                f"{path}: tensor {name!r} is {t.dtype} {tuple(t.shape)}, expected float32 {shape}"
            )
        if not bool(torch.isfinite(t).all()):
            raise ModelFileError(f"{path}: tensor {name!r} holds nan or inf")


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class SavedModel:
    """A model read back from disk, with what is needed to feed it images."""

    model: SoftmaxRegression
    classes: tuple[str, ...]
    normalize: bool
    path: Path
    info: dict[str, Any]


def save_model(
    directory: str | Path,
    model: SoftmaxRegression,
    *,
    normalize: bool = True,
    classes: tuple[str, ...] = CLASSES,
    metrics: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` (the tensors, self-describing) and ``model.json``."""
    directory = Path(directory)
    preprocessing = {
        "input": "uint8 grayscale 28x28, light object on a dark background (Fashion-MNIST)",
        "scale": "divide by 255" if normalize else "none (raw 0-255 values)",
    }
    meta = {
        "format": MODEL_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "classes": json.dumps(list(classes)),
        "normalize": json.dumps(normalize),
    }
    atomic_write_bytes(directory / MODEL_FILE, _safetensors_bytes(model.state_dict(), meta))
    info = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": "nn.Sequential(nn.Flatten(), nn.Linear(784, 10)): logits, no softmax",
        "tensors": {k: list(v.shape) for k, v in model.state_dict().items()},
        "input_shape": [1, 28, 28],
        "classes": list(classes),
        "preprocessing": preprocessing,
        "normalize": normalize,
        "metrics": metrics or {},
        "config": config or {},
    }
    atomic_write_json(directory / MODEL_JSON, info)
    return directory / MODEL_FILE


def load_model(path: str | Path) -> SavedModel:
    """Read a model written by :func:`save_model` (a file or its run directory)."""
    file = resolve_model_path(path)
    tensors, meta = _read_safetensors(file, "model file")
    _check_format(file, meta, MODEL_FORMAT, "model file")
    _check_params(file, tensors, "1.weight", "1.bias")
    try:
        classes = tuple(json.loads(meta["classes"]))
        normalize = json.loads(meta["normalize"])
    except (KeyError, ValueError):
        raise ModelFileError(f"{file}: model metadata lacks its classes or preprocessing") from None
    if len(classes) != NUM_CLASSES or not all(isinstance(c, str) for c in classes):
        raise ModelFileError(f"{file}: expected {NUM_CLASSES} class names, got {classes!r}")
    if not isinstance(normalize, bool):
        raise ModelFileError(f"{file}: preprocessing flag 'normalize' is {normalize!r}")
    extra = sorted(set(tensors) - {"1.weight", "1.bias"})
    if extra:
        raise ModelFileError(f"{file}: unexpected tensor {extra[0]!r}")
    model = SoftmaxRegression.untouched_rng()
    model.load_state_dict(tensors)
    model.eval()
    info: dict[str, Any] = {}
    # model.json is for people; the safetensors file is self-sufficient without it.
    with contextlib.suppress(OSError, ValueError):
        info = json.loads((file.parent / MODEL_JSON).read_text(encoding="utf-8"))
    return SavedModel(model, classes, normalize, file, info if isinstance(info, dict) else {})


# --------------------------------------------------------------------------- checkpoint


def save_checkpoint(directory: str | Path, state: TrainState, config: dict[str, Any]) -> Path:
    """The resume checkpoint: weights, optimizer state, generator state, history, config."""
    tensors = {"weight": state.weight, "bias": state.bias, "generator": state.generator}
    tensors.update({f"optimizer.{k}": v for k, v in state.optimizer.items()})
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "epoch": str(state.epoch),
        "config": json.dumps(config, sort_keys=True),
        "history": json.dumps(state.history.to_dict()),
    }
    path = Path(directory) / CHECKPOINT_FILE
    atomic_write_bytes(path, _safetensors_bytes(tensors, meta))
    return path


def load_checkpoint(directory: str | Path) -> tuple[TrainState, dict[str, Any]]:
    """(state, config dict) from a run directory's checkpoint; ResumeError if there is none."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ResumeError(f"{directory}: no such run directory")
    path = directory / CHECKPOINT_FILE
    if not path.exists():
        raise ResumeError(f"{directory}: no {CHECKPOINT_FILE} (no epoch was completed there)")
    try:
        tensors, meta = _read_safetensors(path, "checkpoint")
        _check_format(path, meta, CHECKPOINT_FORMAT, "checkpoint")
        _check_params(path, tensors, "weight", "bias")
        config = json.loads(meta["config"])
        history = History.from_dict(json.loads(meta["history"]))
        epoch = int(meta["epoch"])
        generator = tensors["generator"]
    except ModelFileError as e:
        raise ResumeError(str(e)) from None
    except (KeyError, ValueError, TypeError) as e:
        raise ResumeError(f"{path}: incomplete checkpoint ({type(e).__name__}: {e})") from None
    if generator.dtype != torch.uint8 or len(history) != epoch:
        raise ResumeError(
            f"{path}: inconsistent checkpoint (epoch {epoch}, {len(history)} records)"
        )
    prefix = "optimizer."
    optimizer = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    state = TrainState(epoch, tensors["weight"], tensors["bias"], optimizer, generator, history)
    return state, config


# --------------------------------------------------------------------------- run files


def write_history(directory: str | Path, history: History) -> None:
    directory = Path(directory)
    atomic_write_text(directory / METRICS_CSV, history.to_csv())
    atomic_write_json(directory / HISTORY_JSON, history.to_dict())


def read_history(directory: str | Path) -> History:
    return History.from_dict(json.loads((Path(directory) / HISTORY_JSON).read_text("utf-8")))


def write_status(directory: str | Path, status: str, **fields: Any) -> None:
    atomic_write_json(Path(directory) / STATUS_JSON, {"status": status, **fields})


def library_versions() -> dict[str, str]:
    """Versions that decide the numbers: torch's own build string (``2.13.0+cpu``,
    ``2.11.0+cu130``: package metadata may drop the build tag) and its CUDA, the others from
    package metadata (nothing more imported)."""
    out = {"python": platform.python_version(), "platform": sys.platform}
    for name in ("softmax-regression", "numpy", "safetensors", "matplotlib"):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.version.cuda or "none"
    return out


def write_run_config(
    directory: str | Path,
    config: dict[str, Any],
    *,
    device: str,
    data_sha256: dict[str, str],
    threads: int | None,
) -> None:
    atomic_write_json(
        Path(directory) / CONFIG_JSON,
        {
            "config": config,
            "seed": config.get("seed"),
            "device": device,
            "cpu_threads": threads,
            "versions": library_versions(),
            "data_sha256": data_sha256,
        },
    )
