"""Shared fixtures: a small Fashion-MNIST-shaped dataset on disk, an isolated user cache, and a
loopback HTTP mirror."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from softmax_regression.data import sources
from softmax_regression.data.idx import write_idx

matplotlib.use("Agg")


@dataclass
class FakeDataset:
    """Four small IDX files in ``directory`` and the arrays they hold."""

    directory: Path
    arrays: dict[str, np.ndarray]
    files: dict[str, Path]

    def sha256(self, stem: str) -> str:
        """SHA-256 of the decompressed file, as the reader computes it."""
        arr = self.arrays[stem]
        head = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        return hashlib.sha256(head + arr.tobytes()).hexdigest()

    def publish(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make these files the 'published' ones, so that verification accepts them."""
        for stem in self.arrays:
            monkeypatch.setitem(sources.SHA256, stem, self.sha256(stem))


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., FakeDataset]:
    """``make(directory=None, n_train=30, n_test=10, compress=True, seed=0)``: write a dataset."""

    def make(
        directory: Path | None = None,
        *,
        n_train: int = 30,
        n_test: int = 10,
        compress: bool = True,
        seed: int = 0,
    ) -> FakeDataset:
        d = directory if directory is not None else tmp_path / "dataset"
        d.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        arrays, files = {}, {}
        for split, n in (("train", n_train), ("test", n_test)):
            img_stem, lbl_stem = sources.FILES[split]
            arrays[img_stem] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
            arrays[lbl_stem] = (np.arange(n) % 10).astype(np.uint8)
        for stem, arr in arrays.items():
            files[stem] = d / (stem + ".gz" if compress else stem)
            write_idx(files[stem], arr, compress=compress)
        return FakeDataset(d, arrays, files)

    return make


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh user cache; no data directory or mirror list from the environment."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv(sources.ENV_VAR, raising=False)
    monkeypatch.delenv("SOFTMAX_REGRESSION_MIRRORS", raising=False)
    return sources.cache_dir()


@dataclass
class Mirror:
    """A loopback HTTP server: ``routes`` maps a path to bytes, an int status, or a callable
    ``handler -> None`` that answers itself; ``requests`` lists the paths asked for."""

    base: str
    routes: dict[str, bytes | int | Callable] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def mirror_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Mirror]]:
    """Start loopback mirrors (127.0.0.1 only) on demand; all are shut down after the test."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    servers: list[http.server.ThreadingHTTPServer] = []

    def start() -> Mirror:
        mirror = Mirror(base="")

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                mirror.requests.append(self.path)
                route = mirror.routes.get(self.path, 404)
                if callable(route):
                    route(self)
                elif isinstance(route, int):
                    self.send_error(route)
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(route)))
                    self.end_headers()
                    self.wfile.write(route)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        mirror.base = f"http://127.0.0.1:{server.server_address[1]}/data/"
        return mirror

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def float_rounding() -> float:
    """How far two computations of the same training run may end apart in train loss (the
    fast and autograd engines, the stable and torch losses): 1e-7, three float32 ulps of a
    loss near 0.45. Measured here: at most 1e-8 with the defaults (seeds 0-2, every epoch)
    and 4.5e-8 with momentum and weight decay on 12,000 images; the margin is for CPUs whose
    kernels round in another order. Accuracies must be equal."""
    return 1e-7
