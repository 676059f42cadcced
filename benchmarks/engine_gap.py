"""How far apart two computations of the same training run end: the ``fast`` and ``autograd``
engines (and the ``stable`` and ``torch`` losses), per epoch, in train loss and in images
classified differently. Not a speed benchmark: the figures behind docs/training.md's "the same
run up to float rounding" and the tolerance the tests use (``float_rounding`` in
tests/conftest.py).

    .venv/bin/python benchmarks/engine_gap.py [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse

from softmax_regression.config import TrainConfig
from softmax_regression.data import load_fashion_mnist
from softmax_regression.train import fit


def gap(a, b, n_train: int, n_test: int) -> str:
    loss = [abs(x.train_loss - y.train_loss) for x, y in zip(a.history, b.history, strict=True)]
    train = sum(
        round(abs(x.train_acc - y.train_acc) * n_train)
        for x, y in zip(a.history, b.history, strict=True)
    )
    test = sum(
        round(abs(x.test_acc - y.test_acc) * n_test)
        for x, y in zip(a.history, b.history, strict=True)
    )
    return (
        f"train loss apart: final {loss[-1]:.1e}, largest over the epochs {max(loss):.1e}; "
        f"accuracy differences summed over the epochs: {train} train, {test} test images"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    for seed in map(int, args.seeds.split(",")):
        config = TrainConfig(seed=seed)
        fast = fit(config.replace(engine="fast"), train, test)
        slow = fit(config.replace(engine="autograd"), train, test)
        print(f"defaults, seed {seed}, fast vs autograd: {gap(fast, slow, len(train), len(test))}")
    train, test = train.subset(range(12000)), test.subset(range(2000))
    for name, changes in [
        ("momentum 0.9 + weight decay 1e-3", {"momentum": 0.9, "weight_decay": 1e-3}),
        ("adam lr 1e-3", {"optimizer": "adam", "lr": 1e-3}),
    ]:
        config = TrainConfig(epochs=3, **changes)
        fast = fit(config.replace(engine="fast"), train, test)
        slow = fit(config.replace(engine="autograd"), train, test)
        print(f"12,000 images, 3 epochs, {name}, fast vs autograd: {gap(fast, slow, 12000, 2000)}")
    config = TrainConfig(epochs=3, engine="autograd")
    stable, plain = fit(config.replace(loss="stable"), train, test), fit(config, train, test)
    print(f"12,000 images, 3 epochs, stable vs torch loss: {gap(stable, plain, 12000, 2000)}")


if __name__ == "__main__":
    main()
