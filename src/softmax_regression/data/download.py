"""Downloading Fashion-MNIST into the user cache: the last step of discovery.

Each file is streamed into a hidden temporary file in the destination directory, verified
(upstream's gz MD5, else the SHA-256 of the decompressed IDX data, read with the same bounded
reader as every load), and renamed to its final name only then: a failed, corrupt or
interrupted download never leaves a file that discovery would pick up. Mirrors are tried in
order for each file; any failure (network, HTTP status, short or corrupt payload) moves on to
the next one.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from ..errors import ConfigError, CorruptDataError, DataNotFoundError, DownloadError
from .idx import GZIP_MAGIC, read_idx
from .sources import (
    FIXES,
    SHA256,
    STEMS,
    UPSTREAM_GZ_MD5,
    Found,
    cache_dir,
    candidates,
    is_explicit,
    locate,
    tried_text,
)

# Upstream first (Zalando's S3 website, plain HTTP), then the copy Keras downloads from.
MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
)
MIRRORS_ENV = "SOFTMAX_REGRESSION_MIRRORS"
# Seconds without progress (connecting, or between two reads) before a mirror is given up.
TIMEOUT_S = 30.0
# The largest file is 26 MB gzipped: a mirror that sends more is not serving Fashion-MNIST.
MAX_DOWNLOAD_BYTES = 64 << 20
_CHUNK = 1 << 16
# Partial files older than this were left by a killed process (a live download keeps writing).
_STALE_PART_S = 3600.0
MAGICS = {"images": 2051, "labels": 2049}


def configured_mirrors() -> tuple[str, ...]:
    """The base URLs to try, in order: ``$SOFTMAX_REGRESSION_MIRRORS`` if set, else MIRRORS."""
    env = os.environ.get(MIRRORS_ENV, "").strip()
    if not env:
        return MIRRORS
    urls = tuple(u for u in re.split(r"[\s,]+", env) if u)
    for u in urls:
        if urlsplit(u).scheme not in ("http", "https") or not urlsplit(u).netloc:
            raise ConfigError(f"${MIRRORS_ENV}: {u!r} is not an http(s) URL")
    return urls


def file_url(base: str, stem: str) -> str:
    return base.rstrip("/") + "/" + stem + ".gz"


def _magic(stem: str) -> int:
    return MAGICS["images"] if "images" in stem else MAGICS["labels"]


def verify_file(path: Path, stem: str, md5: str | None = None) -> None:
    """Raise :class:`CorruptDataError` unless ``path`` is the published ``stem``.

    ``md5`` is the file's MD5 when already known (computed while downloading). Upstream's gz
    MD5 settles it at once; anything else (Debian's recompressed files, a raw file) must parse
    as IDX and hash, decompressed, to the published SHA-256.
    """
    if md5 is not None and md5 == UPSTREAM_GZ_MD5[stem]:
        return
    item = read_idx(path, expect_magic=_magic(stem))
    if item.sha256 != SHA256[stem]:
        raise CorruptDataError(
            f"{path}: SHA-256 of the decompressed data is {item.sha256[:16]}..., not the "
            f"published {stem} {SHA256[stem][:16]}..."
        )


@dataclass
class _Failure:
    url: str
    reason: str

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        r = e.reason
        if isinstance(r, (TimeoutError, socket.timeout)):
            return "timed out"
        return str(getattr(r, "strerror", None) or r)
    if isinstance(e, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(e, CorruptDataError):
        # The message starts with the temporary file's name, which means nothing to the user.
        return "corrupt payload (" + str(e).split(": ", 1)[-1] + ")"
    return str(e) or type(e).__name__


def _fetch(
    url: str,
    out,
    *,
    timeout: float,
    progress: bool | None,
    desc: str,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    digest: str = "md5",
) -> str:
    """Stream ``url`` into the open binary file ``out``; return the hex ``digest`` (MD5 by
    default) of what was written. More than ``max_bytes`` is refused."""
    req = urllib.request.Request(url, headers={"User-Agent": "softmax-regression"})
    md5 = hashlib.new(digest, usedforsecurity=False)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            raise DownloadError(f"announces {total:,} bytes, over the {max_bytes:,} limit")
        got = 0
        # disable=None turns the bar off when stderr is not a terminal (no log flooding).
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=desc,
            disable=None if progress is None else not progress,
            file=sys.stderr,
            leave=False,
        ) as bar:
            while chunk := resp.read(_CHUNK):
                got += len(chunk)
                if got > max_bytes:
                    raise DownloadError(f"sent over {max_bytes:,} bytes")
                out.write(chunk)
                md5.update(chunk)
                bar.update(len(chunk))
        if total is not None and got != total:
            raise DownloadError(f"connection closed after {got:,} of {total:,} bytes")
    return md5.hexdigest()


def _remove_stale_parts(dest: Path) -> None:
    now = time.time()
    for part in dest.glob(".*.part"):
        try:
            if now - part.stat().st_mtime > _STALE_PART_S:
                part.unlink()
        except OSError:
            pass


def download_file(
    stem: str,
    dest: Path,
    *,
    mirrors: Sequence[str],
    timeout: float = TIMEOUT_S,
    progress: bool | None = None,
) -> tuple[Path, list[_Failure]]:
    """Download one file into ``dest`` from the first mirror that serves it intact.

    Returns the final path and the mirrors that failed before it. Raises
    :class:`DownloadError` listing every mirror tried when none did.
    """
    failures: list[_Failure] = []
    for base in mirrors:
        url = file_url(base, stem)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".part", dir=dest)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                md5 = _fetch(url, out, timeout=timeout, progress=progress, desc=stem)
                out.flush()
                os.fsync(out.fileno())
            verify_file(tmp, stem, md5)
            with open(tmp, "rb") as f:
                gz = f.read(2) == GZIP_MAGIC
            final = dest / (stem + ".gz" if gz else stem)
            # The other spelling would win or clash in discovery; the verified one replaces it.
            (dest / (stem if gz else stem + ".gz")).unlink(missing_ok=True)
            os.replace(tmp, final)
            return final, failures
        except (OSError, HTTPException, ValueError, CorruptDataError, DownloadError) as e:
            failures.append(_Failure(url, _reason(e)))
        finally:
            tmp.unlink(missing_ok=True)
    tried = "; ".join(str(f) for f in failures) or "no mirrors configured"
    raise DownloadError(f"could not download {stem}: {tried}")


def download_dataset(
    dest: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    mirrors: Sequence[str] | None = None,
    timeout: float = TIMEOUT_S,
    progress: bool | None = None,
) -> Found:
    """Make ``dest`` (default: the user cache) hold the four verified files, downloading as needed.

    A file already there that verifies is kept unless ``force``; one that does not is
    replaced. Raises :class:`DownloadError` (naming the mirrors tried and why each failed) at
    the first file no mirror could provide; files completed before it stay, verified.
    """
    directory = Path(dest) if dest is not None else cache_dir()
    urls = tuple(mirrors) if mirrors is not None else configured_mirrors()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(
            f"{directory}: cannot create the directory ({e.strerror or e})"
        ) from None
    _remove_stale_parts(directory)
    files: dict[str, Path] = {}
    fetched = 0
    for stem in STEMS:
        if not force:
            existing = _existing(directory, stem)
            if existing is not None:
                files[stem] = existing
                continue
        try:
            files[stem], _ = download_file(
                stem, directory, mirrors=urls, timeout=timeout, progress=progress
            )
        except PermissionError as e:
            raise DownloadError(f"{directory}: cannot write there ({e.strerror or e})") from None
        fetched += 1
    kept = len(STEMS) - fetched
    how = f"downloaded {fetched} file(s)" + (f", {kept} already there and verified" if kept else "")
    return Found(directory=directory, how=how, files=files)


def _existing(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        p = directory / name
        if p.is_file():
            try:
                verify_file(p, stem)
            except CorruptDataError:
                return None
            return p
    return None


def ensure_dataset(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool | None = None,
) -> Found:
    """Locate the dataset; if it is nowhere and ``download`` is allowed, download it.

    A directory named by ``data_dir`` or ``$SOFTMAX_REGRESSION_DATA`` never triggers a
    download: its problem is reported as is. Otherwise, when every place is empty and every
    mirror fails, one :class:`DataNotFoundError` lists the directories searched, the mirrors
    tried and the three ways out.
    """
    try:
        return locate(data_dir)
    except DataNotFoundError:
        if is_explicit(data_dir) or not download:
            raise
    print(f"Fashion-MNIST not found locally; downloading into {cache_dir()}", file=sys.stderr)
    try:
        return download_dataset(mirrors=mirrors, progress=progress)
    except DownloadError as e:
        tried = tried_text(list(candidates(data_dir)))
        raise DataNotFoundError(
            f"Fashion-MNIST not found (looked in: {tried}) and the download failed ({e}). "
            f"Fixes: {FIXES}."
        ) from None
