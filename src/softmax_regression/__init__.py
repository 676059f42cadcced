"""Softmax regression on Fashion-MNIST: the Dive into Deep Learning recipe, fast and exact.

The public names are imported on first use (:mod:`._lazy`): ``import softmax_regression``
and the command line's ``--help`` cost no torch import; ``from softmax_regression import
fit`` imports what ``fit`` needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import exports
from .errors import (
    ConfigError,
    CorruptDataError,
    DataError,
    DataNotFoundError,
    DeviceError,
    DownloadError,
    ImageError,
    ModelFileError,
    NonFiniteLossError,
    ResumeError,
    SoftmaxRegressionError,
)

if TYPE_CHECKING:
    from .config import TrainConfig
    from .data import CLASSES, Batches, FashionMNIST, load_fashion_mnist
    from .evaluation import Evaluation, evaluate
    from .model import SoftmaxRegression
    from .runs.artifacts import load_model, save_model
    from .runs.book import train_run
    from .train import EpochRecord, History, TrainResult, fit

__version__ = "0.1.0"

_EXPORTS = {
    "TrainConfig": ".config",
    "CLASSES": ".data",
    "Batches": ".data",
    "FashionMNIST": ".data",
    "load_fashion_mnist": ".data",
    "Evaluation": ".evaluation",
    "evaluate": ".evaluation",
    "SoftmaxRegression": ".model",
    "load_model": ".runs.artifacts",
    "save_model": ".runs.artifacts",
    "train_run": ".runs.book",
    "EpochRecord": ".train",
    "History": ".train",
    "TrainResult": ".train",
    "fit": ".train",
}
__getattr__, __dir__ = exports(__name__, _EXPORTS)

__all__ = [
    "CLASSES",
    "Batches",
    "ConfigError",
    "CorruptDataError",
    "DataError",
    "DataNotFoundError",
    "DeviceError",
    "DownloadError",
    "EpochRecord",
    "Evaluation",
    "FashionMNIST",
    "History",
    "ImageError",
    "ModelFileError",
    "NonFiniteLossError",
    "ResumeError",
    "SoftmaxRegression",
    "SoftmaxRegressionError",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "evaluate",
    "fit",
    "load_fashion_mnist",
    "load_model",
    "save_model",
    "train_run",
]
