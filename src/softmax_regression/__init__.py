"""Softmax regression on Fashion-MNIST: the Dive into Deep Learning recipe, fast and exact."""

from __future__ import annotations

from .config import TrainConfig
from .data import CLASSES, Batches, FashionMNIST, load_fashion_mnist
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
from .evaluation import Evaluation, evaluate
from .model import SoftmaxRegression
from .runs.artifacts import load_model, save_model
from .runs.book import train_run
from .train import EpochRecord, History, TrainResult, fit

__version__ = "0.1.0"

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
