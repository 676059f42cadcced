"""Everything that writes a run directory, and the files in it.

- :mod:`.directory`: where a run goes (``runs/<date-time>`` or ``--out``), its file names, and
  its JSON descriptions read back (no torch: the command line checks paths before importing it);
- :mod:`.artifacts`: the file formats (model and checkpoint as safetensors, config, status,
  history) and how they are read back;
- :mod:`.book`: the book's recipe trained into a run directory (``train_run``, resume);
- :mod:`.best_linear`: the best-linear recipe's run directory;
- :mod:`.seeds`: several seeds of a recipe, ``seed-<k>/`` and the mean ± std files;
- :mod:`.sweep`, :mod:`.numerics`: the sweep's and the numerics report's directories;
- :mod:`.liveness`: who is writing a run (pid, host, process start, heartbeat in
  ``status.json``), and whether it is still there: a reader shows a run whose writer is gone
  as ``died``;
- :mod:`.ranks`: under torchrun, rank 0 writes the directory and hands the run to the other
  ranks; an elastic restart finds its directory and continues it.

Training itself (:mod:`softmax_regression.train`, :mod:`softmax_regression.best_linear`,
:mod:`softmax_regression.sweep`) writes no file; these modules take its results to disk, every
file atomically (:mod:`softmax_regression._io`). The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import exports

if TYPE_CHECKING:
    from .book import RUN_FILES, RunOutcome, train_run
    from .directory import make_run_dir, resume_config

_EXPORTS = {
    "RUN_FILES": ".book",
    "RunOutcome": ".book",
    "train_run": ".book",
    "make_run_dir": ".directory",
    "resume_config": ".directory",
}
__all__ = ["RUN_FILES", "RunOutcome", "make_run_dir", "resume_config", "train_run"]
__getattr__, __dir__ = exports(__name__, _EXPORTS)
