"""Every knob of a training run, with the book's defaults, validated when it is built.

The checks need no torch (only :func:`resolve_device` imports it), so the library and the
command line share them and a bad value is reported before torch is imported.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DeviceError

if TYPE_CHECKING:
    import torch

OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")
LOSSES = ("torch", "stable", "naive")
ENGINES = ("auto", "fast", "autograd")


@dataclass(frozen=True)
class TrainConfig:
    """A training run's settings; the defaults are the book's concise chapter."""

    batch_size: int = 256  # d2l.load_data_fashion_mnist(256)
    optimizer: str = "sgd"  # the book's torch.optim.SGD; "adam" for comparison
    lr: float = 0.1  # the book's learning rate
    epochs: int = 10  # the book's num_epochs
    momentum: float = 0.0  # torch.optim.SGD's default: plain SGD, as the book
    weight_decay: float = 0.0  # L2 added to the gradient (torch.optim); none in the book
    seed: int = 0  # weights, shuffling and the validation split all follow from it
    device: str = "auto"  # "auto" = cuda when available, else cpu
    val_split: int = 0  # training images held out (stratified) for validation; 0 = the book
    loss: str = "torch"  # nn.CrossEntropyLoss as the book; "stable" = ours; "naive" = the warning
    normalize: bool = True  # pixels / 255 as ToTensor; False = raw 0-255 (a classic mistake)
    standardize: bool = False  # (x - mean) / std per input, training-split statistics
    engine: str = "auto"  # "fast" = closed-form gradient, "autograd" = loss.backward(); auto picks
    data_dir: str | None = None  # where the IDX files are; None = discover them
    # Where the data comes from (softmax_regression.data.DataSpec.to_dict()); None = the
    # built-in Fashion-MNIST.
    data: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a one-line message naming the first bad field."""
        _int(self, "batch_size", low=1)
        _int(self, "epochs", low=1)
        _int(self, "seed", low=0)
        _int(self, "val_split", low=0)
        _choice(self, "optimizer", OPTIMIZERS)
        _choice(self, "device", DEVICES)
        _choice(self, "loss", LOSSES)
        _choice(self, "engine", ENGINES)
        _number(self, "lr", positive=True)
        _number(self, "weight_decay")
        _number(self, "momentum")
        if self.momentum >= 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.momentum and self.optimizer != "sgd":
            raise ConfigError(f"momentum applies to sgd only, not {self.optimizer!r}")
        for flag in ("normalize", "standardize"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if self.engine == "fast" and self.loss != "torch":
            raise ConfigError(
                f"engine 'fast' computes the gradient of the default loss in closed form; "
                f"loss {self.loss!r} needs engine 'autograd' (or 'auto')"
            )
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ConfigError(f"data_dir must be a path string, got {self.data_dir!r}")
        if self.data is not None and not isinstance(self.data, dict):
            raise ConfigError(f"data must be a data description (a mapping), got {self.data!r}")

    @property
    def resolved_engine(self) -> str:
        """The engine that will run: the closed form wherever it computes the same thing."""
        if self.engine != "auto":
            return self.engine
        return "fast" if self.loss == "torch" else "autograd"

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error, missing ones default."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r}")
        return cls(**data)


def resolve_device(name: str) -> torch.device:
    """``auto``/``cpu``/``cuda`` -> a usable torch.device, or a one-line DeviceError."""
    import torch  # here, not at the top: the command line validates a config without torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                "--device cuda was asked for but no CUDA GPU is available "
                f"(torch {torch.__version__}, built {'with' if torch.version.cuda else 'without'} "
                "CUDA); use --device cpu or auto"
            )
        return torch.device("cuda")
    raise DeviceError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")


def _int(cfg: TrainConfig, name: str, *, low: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name.replace('_', ' ')} must be an integer, got {value!r}")
    if value < low:
        raise ConfigError(f"{name.replace('_', ' ')} must be at least {low}, got {value}")


def _number(cfg: TrainConfig, name: str, *, positive: bool = False) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name.replace('_', ' ')} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{name.replace('_', ' ')} must be positive, got {value!r}")
    if not positive and value < 0:
        raise ConfigError(f"{name.replace('_', ' ')} must not be negative, got {value!r}")


def _choice(cfg: TrainConfig, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
