"""Downloading Fashion-MNIST into the user cache (last step of discovery)."""

from __future__ import annotations

import os

from ..errors import DataNotFoundError
from .sources import Found, locate


def ensure_dataset(data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> Found:
    """Locate the dataset; if it is nowhere and ``download`` is allowed, download it."""
    try:
        return locate(data_dir)
    except DataNotFoundError:
        # TODO(download): mirrors, progress bar, verify, atomic rename.
        raise
