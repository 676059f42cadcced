"""The book's file downloads (``DATA_HUB``, ``download``, ``download_extract``; chapter 4.10).

Same cache as the book (``../data`` from where the code runs, the file named after the last
part of its URL) and the same SHA-1 check of a cached file. Unlike the book's, a download is
streamed into a hidden temporary file beside the target, checked against its SHA-1, and only
then renamed into place: an interrupted or corrupt download never sits under the final name
(the book writes the response straight to it, and an error page would be cached as the CSV).
Without a network the error is one line naming the URL and where to put the file by hand.
Archives are extracted with the ``data`` filter where Python has it (no paths outside the
folder, no device files).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import zipfile
from http.client import HTTPException
from pathlib import Path

from ..data.download import TIMEOUT_S, _fetch, _reason
from ..errors import ConfigError, DownloadError

DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/"
# name -> (url, SHA-1 of the file); the book's entries of chapters 2-4. Add your own as the
# book does: DATA_HUB["name"] = (url, sha1).
DATA_HUB: dict[str, tuple[str, str]] = {
    "kaggle_house_train": (
        DATA_URL + "kaggle_house_pred_train.csv",
        "585e9cc93e70b39160e7921475f9bcd7d31219ce",
    ),
    "kaggle_house_test": (
        DATA_URL + "kaggle_house_pred_test.csv",
        "fa19780a7b011d9b009e8bff8e99922a8ee2eb90",
    ),
}
# The book's default cache: ../data from where the code runs.
DEFAULT_CACHE_DIR = os.path.join("..", "data")
# The largest file of the book's hub is a few hundred MB; anything far beyond is not the file.
MAX_BYTES = 4 << 30


def _sha1(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download(name, cache_dir=DEFAULT_CACHE_DIR):
    """Download the ``DATA_HUB`` file ``name`` into ``cache_dir``; return its local path.

    A file already there with the right SHA-1 is used as it is.
    """
    if name not in DATA_HUB:
        raise ConfigError(f"{name!r} is not in DATA_HUB (it has: {', '.join(sorted(DATA_HUB))})")
    url, sha1_hash = DATA_HUB[name]
    fname = os.path.join(cache_dir, url.split("/")[-1])
    if os.path.exists(fname) and _sha1(fname) == sha1_hash:
        return fname  # Hit cache
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {cache_dir} ({e.strerror or e})") from None
    print(f"Downloading {fname} from {url}...", flush=True)
    by_hand = f"download it elsewhere and put it at {os.path.abspath(fname)} (SHA-1 {sha1_hash})"
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{Path(fname).name}.", suffix=".part", dir=cache_dir
        )
    except OSError as e:
        raise DownloadError(f"cannot write in {cache_dir} ({e.strerror or e})") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _fetch(
                url,
                out,
                timeout=TIMEOUT_S,
                progress=None,
                desc=Path(fname).name,
                max_bytes=MAX_BYTES,
                digest="sha1",
            )
            out.flush()
            os.fsync(out.fileno())
        if got != sha1_hash:
            raise DownloadError(f"{url} sent a file with SHA-1 {got}, not {sha1_hash}; {by_hand}")
        os.replace(tmp, fname)
    except (OSError, HTTPException, ValueError) as e:
        raise DownloadError(f"could not download {url} ({_reason(e)}); {by_hand}") from None
    except DownloadError as e:
        message = str(e)
        if not message.startswith(url):
            message = f"could not download {url} ({message}); {by_hand}"
        raise DownloadError(message) from None
    finally:
        tmp.unlink(missing_ok=True)
    return fname


def download_extract(name, folder=None):
    """Download and extract a zip or tar file of ``DATA_HUB`` beside it; return the folder
    (``folder`` inside the cache directory if given, else the archive's name without its
    extension)."""
    fname = download(name)
    base_dir = os.path.dirname(fname)
    data_dir, ext = os.path.splitext(fname)
    if ext == ".zip":
        with zipfile.ZipFile(fname, "r") as fp:
            fp.extractall(base_dir)  # zipfile drops absolute and ".." parts of names
    elif ext in (".tar", ".gz"):
        with tarfile.open(fname, "r") as fp:
            if hasattr(tarfile, "data_filter"):
                fp.extractall(base_dir, filter="data")
            else:  # Python without extraction filters (before 3.10.12 / 3.11.4)
                fp.extractall(base_dir)  # noqa: S202
    else:
        raise ConfigError(f"{fname}: only zip and tar files can be extracted, not {ext or 'this'}")
    return os.path.join(base_dir, folder) if folder else data_dir


def download_all():
    """Download every file of ``DATA_HUB``."""
    for name in DATA_HUB:
        download(name)
