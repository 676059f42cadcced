"""Where Fashion-MNIST comes from: discovery in a fixed order, and what the files must hash to."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataNotFoundError

ENV_VAR = "SOFTMAX_REGRESSION_DATA"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")

# split -> (images file stem, labels file stem), as upstream names them.
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
STEMS = tuple(stem for pair in FILES.values() for stem in pair)

# SHA-256 of the decompressed files (Debian recompresses the .gz, so the gz digests differ).
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
# MD5 of upstream's .gz files, as torchvision publishes them; accepted as well.
UPSTREAM_GZ_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
COUNTS = {"train": 60_000, "test": 10_000}


def cache_dir() -> Path:
    """The user cache directory for the dataset (XDG_CACHE_HOME, else ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "softmax-regression" / "fashion-mnist"


def torchvision_roots() -> list[Path]:
    """Roots where a book reader's torchvision download may already be: ../data and ./data.

    The book runs its code with ``root="../data"``, relative to the working directory; the
    paths are made absolute here so that messages say which directory that was.
    """
    cwd = Path.cwd()
    return [(cwd / ".." / "data").resolve(), cwd / "data"]


@dataclass(frozen=True)
class Candidate:
    """A directory to look in and why it is on the list."""

    path: Path
    how: str


@dataclass(frozen=True)
class Found:
    """The four files of the dataset, found in one directory."""

    directory: Path
    how: str
    files: dict[str, Path]  # stem -> file (.gz or raw)


def _file_in(directory: Path, stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` in ``directory`` (the raw file wins: it is faster to read)."""
    for name in (stem, stem + ".gz"):
        p = directory / name
        try:
            if p.is_file():
                return p
        except OSError:
            return None
    return None


def _look(directory: Path, stems: tuple[str, ...] = STEMS) -> dict[str, Path] | None:
    files = {stem: _file_in(directory, stem) for stem in stems}
    if all(files.values()):
        return {k: v for k, v in files.items() if v is not None}
    return None


def candidates(data_dir: str | os.PathLike[str] | None = None) -> Iterator[Candidate]:
    """The directories searched, in order (explicit, torchvision layout, cache, Debian)."""
    if data_dir is not None:
        d = Path(data_dir)
        yield Candidate(d, "data_dir / --data-dir")
        yield Candidate(d / "FashionMNIST" / "raw", "data_dir / --data-dir, torchvision layout")
        return
    env = os.environ.get(ENV_VAR)
    if env:
        d = Path(env)
        yield Candidate(d, f"${ENV_VAR}")
        yield Candidate(d / "FashionMNIST" / "raw", f"${ENV_VAR}, torchvision layout")
        return
    for root in torchvision_roots():
        yield Candidate(root / "FashionMNIST" / "raw", "torchvision layout")
    yield Candidate(cache_dir(), "user cache")
    yield Candidate(DEBIAN_DIR, "Debian package dataset-fashion-mnist")


FIXES = (
    f"pass --data-dir DIR (or set ${ENV_VAR}) pointing at the four IDX files; "
    f"or `apt install dataset-fashion-mnist`; "
    f"or connect to the network and run `softmax-regression data download`"
)


def tried_text(tried: list[Candidate]) -> str:
    return "; ".join(f"{c.path} ({c.how})" for c in tried)


def not_found_message(tried: list[Candidate]) -> str:
    return f"Fashion-MNIST not found (looked in: {tried_text(tried)}). Fixes: {FIXES}."


def explicit_problem(directory: Path, how: str, stems: tuple[str, ...] = STEMS) -> str:
    """Why a directory the user named does not hold the dataset (one line, naming it)."""
    try:
        os.listdir(directory)
    except FileNotFoundError:
        return f"{directory}: data directory does not exist (given by {how})"
    except NotADirectoryError:
        return f"{directory}: not a directory (given by {how})"
    except PermissionError:
        return f"{directory}: data directory is not readable (permission denied)"
    except OSError as e:
        return f"{directory}: cannot list the data directory ({e.strerror or e})"
    missing = [s for s in stems if _file_in(directory, s) is None]
    return (
        f"{directory}: missing {', '.join(missing)} (.gz or raw); expected the four "
        f"Fashion-MNIST IDX files here or under FashionMNIST/raw/ (given by {how}; "
        f"nothing is downloaded for a directory you name)"
    )


def locate(
    data_dir: str | os.PathLike[str] | None = None, *, stems: tuple[str, ...] = STEMS
) -> Found:
    """Find the dataset files without downloading; raise :class:`DataNotFoundError` if absent.

    A directory named by ``data_dir`` or ``$SOFTMAX_REGRESSION_DATA`` is the only place
    looked in: if it lacks the files, the error names it rather than falling back elsewhere.
    """
    tried = list(candidates(data_dir))
    for cand in tried:
        files = _look(cand.path, stems)
        if files is not None:
            return Found(directory=cand.path, how=cand.how, files=files)
    if data_dir is not None or os.environ.get(ENV_VAR):
        raise DataNotFoundError(explicit_problem(tried[0].path, tried[0].how, stems))
    raise DataNotFoundError(not_found_message(tried))


def is_explicit(data_dir: str | os.PathLike[str] | None) -> bool:
    """Whether the user named the directory (then nothing is ever downloaded)."""
    return data_dir is not None or bool(os.environ.get(ENV_VAR))
