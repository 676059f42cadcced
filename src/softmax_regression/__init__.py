"""Softmax regression on Fashion-MNIST: the Dive into Deep Learning recipe, fast and exact."""

from __future__ import annotations

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
    "FashionMNIST",
    "ImageError",
    "ModelFileError",
    "NonFiniteLossError",
    "ResumeError",
    "SoftmaxRegressionError",
    "__version__",
    "load_fashion_mnist",
]
