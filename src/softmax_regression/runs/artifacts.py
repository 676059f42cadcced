"""Files a run leaves: the model, the resume checkpoint, the history, the run's description.

Tensors go into safetensors files (no pickle: opening someone else's model cannot run code),
descriptions into JSON beside them. Every file is written under a temporary name and renamed
(``_io``), so a crash never leaves a truncated file under a final name.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import struct
import sys
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..data import CLASSES
from ..errors import ModelFileError, ResumeError
from ..model import SoftmaxRegression
from ..preprocessing import Preprocessing
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
# A Fashion-MNIST model or checkpoint is a few tens of KB; a 100,000-feature model of a
# thousand classes is 400 MB. Anything far larger is not one of ours.
MAX_FILE_BYTES = 1 << 30


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


def _check_params(
    path: Path,
    tensors: dict[str, torch.Tensor],
    w: str,
    b: str,
    shape: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """The (classes, inputs) of the weight ``w`` and bias ``b``: float32, finite, matching
    each other (and ``shape`` when given); a one-line ModelFileError otherwise."""
    for name in (w, b):
        if tensors.get(name) is None:
            raise ModelFileError(f"{path}: tensor {name!r} is missing")
    weight = tensors[w]
    if weight.dim() != 2 or weight.shape[0] < 2 or weight.shape[1] < 1:
        shape_text = tuple(weight.shape)
        raise ModelFileError(f"{path}: tensor {w!r} is {shape_text}, not (classes, inputs)")
    k, d = shape or tuple(weight.shape)
    for name, want in ((w, (k, d)), (b, (k,))):
        t = tensors[name]
        if tuple(t.shape) != want or t.dtype != torch.float32:
            raise ModelFileError(
                f"{path}: tensor {name!r} is {t.dtype} {tuple(t.shape)}, expected float32 {want}"
            )
        if not bool(torch.isfinite(t).all()):
            raise ModelFileError(f"{path}: tensor {name!r} holds nan or inf")
    return k, d


# --------------------------------------------------------------------------- model

# What a model file from before inputs other than Fashion-MNIST's records implicitly.
FASHION_MNIST_SHAPE = (1, 28, 28)
IMAGE_RULES = ("fashion-mnist", "resize")
STATS = ("input.mean", "input.std")


@dataclass(frozen=True)
class SavedModel:
    """A model read back from disk, with everything needed to feed it inputs.

    ``input_shape`` is ``(C, H, W)`` for an image model, ``(D,)`` for a feature model;
    ``image_rule`` says how an image file becomes an input (None for features);
    ``preprocessing`` is what the trainer did between the dataset and the linear layer.
    """

    model: SoftmaxRegression
    classes: tuple[str, ...]
    normalize: bool
    path: Path
    info: dict[str, Any]
    input_shape: tuple[int, ...] = FASHION_MNIST_SHAPE
    image_rule: str | None = "fashion-mnist"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3


def _architecture(k: int, d: int) -> str:
    return f"nn.Sequential(nn.Flatten(), nn.Linear({d}, {k})): logits, no softmax"


def _describe_input(input_shape: tuple[int, ...], image_rule: str | None) -> str:
    if len(input_shape) != 3:
        return f"float32 features, {input_shape[0]} per example"
    c, h, w = input_shape
    mode = "grayscale" if c == 1 else "RGB"
    if image_rule == "fashion-mnist":
        return f"uint8 {mode} {h}x{w}, light object on a dark background (Fashion-MNIST's rule)"
    return f"uint8 {mode} {h}x{w} (an image file is converted to {mode} and resized)"


def save_model(
    directory: str | Path,
    model: SoftmaxRegression,
    *,
    normalize: bool = True,
    classes: tuple[str, ...] = CLASSES,
    metrics: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    input_shape: tuple[int, ...] = FASHION_MNIST_SHAPE,
    image_rule: str | None = "fashion-mnist",
    preprocessing: Preprocessing | None = None,
    data: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` (the tensors, self-describing) and ``model.json``.

    The file records the input shape, the class names, the preprocessing (its statistics
    as tensors ``input.mean`` / ``input.std`` when inputs are standardised), the image rule
    and ``data`` (the training data's name and fingerprint).
    """
    directory = Path(directory)
    prep = preprocessing or Preprocessing(normalize)
    input_shape = tuple(int(n) for n in input_shape)
    is_image = len(input_shape) == 3
    if not is_image:
        image_rule = None
    if len(classes) != model.num_classes or math.prod(input_shape) != model.num_inputs:
        raise ModelFileError(
            f"a model of {model.num_classes} classes and {model.num_inputs} inputs cannot be "
            f"saved as {len(classes)} classes of input shape {input_shape}"
        )
    tensors = dict(model.state_dict())
    if prep.standardized:
        assert prep.std is not None and prep.mean is not None
        tensors[STATS[0]], tensors[STATS[1]] = prep.mean.float(), prep.std.float()
    meta = {
        "format": MODEL_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "classes": json.dumps(list(classes)),
        "normalize": json.dumps(prep.scale),
        "input_shape": json.dumps(list(input_shape)),
        "image_rule": json.dumps(image_rule),
        "data": json.dumps(data or {}),
    }
    atomic_write_bytes(directory / MODEL_FILE, _safetensors_bytes(tensors, meta))
    info = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": _architecture(model.num_classes, model.num_inputs),
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "input_shape": list(input_shape),
        "classes": list(classes),
        "preprocessing": {
            "input": _describe_input(input_shape, image_rule),
            **prep.describe(is_image),
        },
        "image_rule": image_rule,
        "normalize": prep.scale,
        "data": data or {},
        "metrics": metrics or {},
        "config": config or {},
    }
    atomic_write_json(directory / MODEL_JSON, info)
    return directory / MODEL_FILE


def _json_meta(file: Path, meta: dict[str, str], key: str, default: Any) -> Any:
    if key not in meta:
        return default
    try:
        return json.loads(meta[key])
    except ValueError:
        raise ModelFileError(f"{file}: model metadata {key!r} is not valid JSON") from None


def load_model(path: str | Path) -> SavedModel:
    """Read a model written by :func:`save_model` (a file or its run directory).

    A file from before other datasets (no ``input_shape``) is a Fashion-MNIST model.
    """
    file = resolve_model_path(path)
    tensors, meta = _read_safetensors(file, "model file")
    _check_format(file, meta, MODEL_FORMAT, "model file")
    try:
        classes = tuple(json.loads(meta["classes"]))
        normalize = json.loads(meta["normalize"])
    except (KeyError, ValueError):
        raise ModelFileError(f"{file}: model metadata lacks its classes or preprocessing") from None
    shape = _json_meta(file, meta, "input_shape", list(FASHION_MNIST_SHAPE))
    rule = _json_meta(file, meta, "image_rule", "fashion-mnist")
    data = _json_meta(file, meta, "data", {})
    if (
        not isinstance(shape, list)
        or len(shape) not in (1, 3)
        or not all(isinstance(n, int) and n > 0 for n in shape)
    ):
        raise ModelFileError(f"{file}: input shape {shape!r} is not (C, H, W) or (features,)")
    input_shape = tuple(shape)
    if len(input_shape) == 3 and input_shape[0] not in (1, 3):
        raise ModelFileError(f"{file}: images of {input_shape[0]} channels (expected 1 or 3)")
    if len(input_shape) == 3 and rule not in IMAGE_RULES:
        raise ModelFileError(f"{file}: unknown image rule {rule!r}")
    k, d = _check_params(file, tensors, "1.weight", "1.bias")
    if d != math.prod(input_shape):
        raise ModelFileError(f"{file}: weights take {d} inputs, but the input shape is {shape}")
    if len(classes) != k or not all(isinstance(c, str) for c in classes):
        raise ModelFileError(f"{file}: expected {k} class names, got {len(classes)}")
    if not isinstance(normalize, bool):
        raise ModelFileError(f"{file}: preprocessing flag 'normalize' is {normalize!r}")
    extra = sorted(set(tensors) - {"1.weight", "1.bias", *STATS})
    if extra:
        raise ModelFileError(f"{file}: unexpected tensor {extra[0]!r}")
    prep = Preprocessing(normalize)
    if any(name in tensors for name in STATS):
        stats = [tensors.get(name) for name in STATS]
        for name, t in zip(STATS, stats, strict=True):
            if t is None or tuple(t.shape) != (d,) or t.dtype != torch.float32:
                raise ModelFileError(f"{file}: tensor {name!r} is missing or not float32 ({d},)")
            if not bool(torch.isfinite(t).all()):
                raise ModelFileError(f"{file}: tensor {name!r} holds nan or inf")
        if not bool((stats[1] > 0).all()):
            raise ModelFileError(f"{file}: tensor 'input.std' holds a value <= 0")
        prep = Preprocessing(normalize, stats[0], stats[1])
    model = SoftmaxRegression.untouched_rng(d, k)
    model.load_state_dict({"1.weight": tensors["1.weight"], "1.bias": tensors["1.bias"]})
    model.eval()
    info: dict[str, Any] = {}
    # model.json is for people; the safetensors file is self-sufficient without it.
    with contextlib.suppress(OSError, ValueError):
        info = json.loads((file.parent / MODEL_JSON).read_text(encoding="utf-8"))
    return SavedModel(
        model,
        classes,
        normalize,
        file,
        info if isinstance(info, dict) else {},
        input_shape=input_shape,
        image_rule=rule if len(input_shape) == 3 else None,
        preprocessing=prep,
        data=data if isinstance(data, dict) else {},
    )


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
    options: dict[str, Any] | None = None,
) -> None:
    """``config.json``; ``options`` are the run's own choices beyond its settings (no figures,
    no page), which a resumed run keeps."""
    atomic_write_json(
        Path(directory) / CONFIG_JSON,
        {
            "config": config,
            "seed": config.get("seed"),
            "device": device,
            "cpu_threads": threads,
            "versions": library_versions(),
            "data_sha256": data_sha256,
            **({"options": options} if options else {}),
        },
    )
