"""One error tree for the whole package.

The CLI catches :class:`SoftmaxRegressionError`, prints its one-line message and exits with
its ``exit_code``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SoftmaxRegressionError(Exception):
    """Base class of every error the package raises on purpose."""

    exit_code = 1


class ConfigError(SoftmaxRegressionError, ValueError):
    """A bad hyperparameter, option or argument value."""

    exit_code = 2


class DeviceError(ConfigError):
    """A requested device that does not exist or cannot be used."""


class DataError(SoftmaxRegressionError):
    """Anything wrong with the dataset files."""

    exit_code = 3


class DataNotFoundError(DataError):
    """Fashion-MNIST could not be found anywhere and could not be downloaded."""


class CorruptDataError(DataError):
    """A dataset file exists but is malformed, truncated or fails its checksum."""


class DownloadError(DataError):
    """Every mirror failed or served bad bytes."""


class ModelFileError(SoftmaxRegressionError):
    """A model file that is missing, corrupt or not one of ours."""

    exit_code = 4


class ImageError(SoftmaxRegressionError):
    """An image file that cannot be read or converted."""

    exit_code = 4


class ResumeError(SoftmaxRegressionError):
    """A run directory that cannot be resumed (missing checkpoint, different config)."""

    exit_code = 5


class NonFiniteLossError(SoftmaxRegressionError):
    """Training produced a nan or inf loss and was stopped."""

    exit_code = 6


class ReportError(SoftmaxRegressionError):
    """A report page that cannot be written (no such directory, nothing to report)."""


class DistributedError(SoftmaxRegressionError):
    """A multi-process run that cannot go on: a rank died or hung, or the group cannot form."""

    exit_code = 7


class RankZeroFailed(DistributedError):
    """Rank 0 could not start the run; the other ranks end with its exit status, silently
    (rank 0 has printed the error)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
