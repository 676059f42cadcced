"""How a run reports itself on a console: a table row per epoch, a bar only on a terminal."""

from __future__ import annotations

import sys
from typing import IO, Any

from .train import EpochRecord

_FORMATS = {
    "epoch": ("epoch", "{:>5d}"),
    "train_loss": ("train_loss", "{:>10.4f}"),
    "train_acc": ("train_acc", "{:>9.4f}"),
    "test_acc": ("test_acc", "{:>8.4f}"),
    "val_acc": ("val_acc", "{:>7.4f}"),
    "seconds": ("seconds", "{:>7.2f}"),
}


def format_row(record: EpochRecord, columns: list[str]) -> str:
    cells = []
    for c in columns:
        v = getattr(record, c)
        head, fmt = _FORMATS[c]
        cells.append(fmt.format(v) if v is not None else f"{'-':>{len(head)}}")
    return "  ".join(cells)


def format_header(columns: list[str]) -> str:
    return "  ".join(f"{_FORMATS[c][0]:>{len(_FORMATS[c][0])}}" for c in columns)


class ConsoleProgress:
    """Prints the per-epoch table; draws a tqdm bar during each epoch when ``bar`` is true.

    By default the bar is drawn only when ``stream`` is a terminal, so that redirected output
    (log files, CI) gets exactly one plain line per epoch and no carriage-return noise.
    """

    def __init__(
        self,
        columns: list[str],
        stream: IO[str] | None = None,
        *,
        bar: bool | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.columns = columns
        isatty = getattr(self.stream, "isatty", None)
        self.bar = bool(isatty and isatty()) if bar is None else bar
        self._pbar: Any = None
        self._header_done = False
        self._rows: tuple[int, int, int] | None = None  # (rows, batch, bytes a row)
        self._done = 0

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def describe_rows(self, rows: int, batch: int, row_bytes: int) -> None:
        """What an epoch reads: the bar then counts rows and shows rows/s and MB/s."""
        self._rows = (rows, batch, row_bytes)

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        if not self._header_done:
            self._print(format_header(self.columns))
            self._header_done = True
        if self.bar:
            from tqdm import tqdm  # only on a terminal: it costs more to import than an epoch

            rows = self._rows is not None
            self._done = 0
            self._pbar = tqdm(
                total=self._rows[0] if self._rows is not None else steps,
                desc=f"epoch {epoch}/{epochs}",
                unit="row" if rows else "batch",
                unit_scale=rows,
                leave=False,
                file=self.stream,
                dynamic_ncols=True,
            )

    def advance(self, steps: int) -> None:
        if self._pbar is None:
            return
        if self._rows is None:
            self._pbar.update(steps)
            return
        total, batch, row_bytes = self._rows
        rows = min(steps * batch, total - self._done)
        self._done += rows
        self._pbar.update(rows)
        elapsed = self._pbar.format_dict.get("elapsed") or 0.0
        if elapsed > 0:
            self._pbar.set_postfix_str(f"{self._done * row_bytes / elapsed / 1e6:,.0f} MB/s")

    def epoch_end(self, record: EpochRecord) -> None:
        self.close()
        self._print(format_row(record, self.columns))

    def close(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
