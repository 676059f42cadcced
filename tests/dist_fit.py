"""A worker that tests/test_distributed.py starts under torchrun: ``fit`` on every rank.

    dist_fit.py OUT_DIR N_TRAIN N_TEST CONFIGS_JSON [RESUME_DIR]

Each rank trains every config of the JSON list on the first N_TRAIN training and N_TEST test
images of Fashion-MNIST. For config ``i`` rank 0 writes ``OUT_DIR/i/``: ``result.json`` (the
history), ``model.safetensors`` and the checkpoint of every completed epoch. With RESUME_DIR,
config ``i`` continues from the checkpoint in ``RESUME_DIR/i/``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

from softmax_regression import distributed
from softmax_regression.config import TrainConfig
from softmax_regression.data import load_fashion_mnist
from softmax_regression.runs import artifacts
from softmax_regression.train import fit


def main() -> int:
    out, n_train, n_test = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    configs = [TrainConfig(**c) for c in json.loads(sys.argv[4])]
    resume = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    world = distributed.init("cpu", timeout=60)
    main_rank = world is None or world.is_main
    train = load_fashion_mnist("train").subset(range(n_train))
    test = load_fashion_mnist("test").subset(range(n_test))
    for i, config in enumerate(configs):
        run_dir = out / str(i)
        run_dir.mkdir(parents=True, exist_ok=True)
        state = None if resume is None else artifacts.load_checkpoint(resume / str(i))[0]

        def on_epoch(snapshot, run_dir=run_dir, config=config) -> None:
            if main_rank:
                artifacts.save_checkpoint(run_dir, snapshot, config.to_dict())

        result = fit(config, train, test, state=state, on_epoch=on_epoch, world=world)
        if main_rank:
            size = 1 if world is None else world.size
            payload = {"world": size, **result.history.to_dict()}
            (run_dir / "result.json").write_text(json.dumps(payload))
            save_file(dict(result.model.state_dict()), run_dir / "model.safetensors")
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
